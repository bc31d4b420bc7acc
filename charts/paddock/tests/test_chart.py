"""Renders charts/paddock with Helm's own template engine (helm-python-sdk binds the Helm Go
SDK, no helm binary needed), lints it, and validates every rendered object — and the operator's
golden objects and the CRD — against the Kubernetes OpenAPI schemas (kubernetes-validate) of the
oldest and newest Kubernetes the chart supports.

Run: python -m pytest -q charts/paddock/tests
"""

import base64
import pathlib

import helm_python as helm
import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "paddock"
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
# Kinds from CRDs that kubernetes-validate has no schema for.
CUSTOM_KINDS = {"ServiceMonitor", "CoordinationCluster"}


def render(values=None):
    chart = helm.Chart.load(CHART)
    manifests = chart.render(values or {}, name="paddock", namespace="paddock-system", is_install=True)
    objects = []
    for path, text in sorted(manifests.items()):
        if not path.endswith(".yaml"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc:
                objects.append(doc)
    return objects


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def validate(obj):
    if obj["kind"] in CUSTOM_KINDS:
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_lint_is_clean():
    report = helm.lint(CHART, strict=True, namespace="paddock-system", kube_version="v1.30.0")
    errors = [m for m in report.get("messages", []) if m.get("severity", 0) >= 2]
    assert not errors and not report.get("errors"), report


@pytest.mark.parametrize(
    "values",
    [
        {},
        {"watchNamespace": "apps", "serviceMonitor": {"enabled": True}},
        {"webhook": {"enabled": False}, "replicaCount": 1},
    ],
    ids=["defaults", "namespaced-with-servicemonitor", "no-webhook"],
)
def test_rendered_objects_are_valid(values):
    objects = render(values)
    assert objects
    for obj in objects:
        validate(obj)


def test_default_objects():
    objects = render()
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(
        [
            "ClusterRole", "ClusterRoleBinding", "Deployment", "MutatingWebhookConfiguration", "Role",
            "RoleBinding", "Secret", "Service", "ServiceAccount",
        ]
    )
    # Least privilege: no wildcards anywhere.
    for role in by_kind(objects, "ClusterRole") + by_kind(objects, "Role"):
        for rule in role["rules"]:
            for field in ("apiGroups", "resources", "verbs"):
                assert "*" not in rule[field], rule
    # The webhook trusts the CA that signed the serving certificate.
    secret = by_kind(objects, "Secret")[0]
    hook = by_kind(objects, "MutatingWebhookConfiguration")[0]["webhooks"][0]
    assert hook["clientConfig"]["caBundle"] == secret["data"]["ca.crt"]
    assert base64.b64decode(secret["data"]["tls.crt"]).startswith(b"-----BEGIN CERTIFICATE-----")
    assert hook["clientConfig"]["service"] == {
        "name": "paddock", "namespace": "paddock-system", "path": "/mutate", "port": 443,
    }
    assert "paddock.dev/inject" in hook["matchConditions"][0]["expression"]
    # The operator gets the flags it reads (env names from operator/src/main.rs).
    deployment = by_kind(objects, "Deployment")[0]
    container = deployment["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"] for e in container["env"]}
    assert {"POD_NAME", "POD_NAMESPACE", "PADDOCK_OPERATOR_WEBHOOK_CERT", "PADDOCK_OPERATOR_WEBHOOK_KEY",
            "PADDOCK_OPERATOR_SIDECAR_IMAGE"} <= env
    assert container["image"] == "ghcr.io/paddock-dev/paddock-operator:0.1.0"


def test_chart_crd_is_the_generated_one():
    chart_crd = (CHART / "crds" / "coordinationclusters.paddock.dev.yaml").read_text()
    assert chart_crd == (ROOT / "crds" / "coordinationclusters.paddock.dev.yaml").read_text()
    validate(yaml.safe_load(chart_crd))


@pytest.mark.parametrize("golden", sorted((ROOT / "operator" / "tests" / "golden").glob("*.yaml")), ids=lambda p: p.stem)
def test_operator_built_objects_are_valid(golden):
    for obj in yaml.safe_load_all(golden.read_text()):
        if obj:
            validate(obj)
