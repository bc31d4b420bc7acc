"""Renders charts/paddock with the helm binary (`helm template`, built by scripts/kube-tools.sh
and named by PADDOCK_HELM), lints it (`helm lint --strict`), and validates every rendered
object — and the operator's golden objects and the CRD — against the Kubernetes OpenAPI schemas
(kubernetes-validate) of the oldest and newest Kubernetes the chart supports. The chart's
installation on a real control plane is e2e/tests/kube.

Run: PADDOCK_HELM=$(scripts/kube-tools.sh)/helm python -m pytest -q charts/paddock/tests
"""

import base64
import json
import os
import pathlib
import subprocess

import kubernetes_validate
import pytest
import yaml

ROOT = pathlib.Path(__file__).resolve().parents[3]
CHART = ROOT / "charts" / "paddock"
KUBE_VERSIONS = ["1.30.0", kubernetes_validate.latest_version()]
# Kinds from CRDs that kubernetes-validate has no schema for.
CUSTOM_KINDS = {"ServiceMonitor", "CoordinationCluster"}


def helm(*args, values=None):
    binary = os.environ.get("PADDOCK_HELM")
    if not binary:
        pytest.fail("PADDOCK_HELM names no helm binary (make chart-test sets it)")
    command = [binary, *args]
    if values:
        command += ["--values", "-"]
    # helm keeps its caches and settings under HOME-derived directories; a test leaves none.
    env = {"PATH": os.environ.get("PATH", ""), "HOME": "/nonexistent", "HELM_CACHE_HOME": "/tmp/paddock-helm/cache",
           "HELM_CONFIG_HOME": "/tmp/paddock-helm/config", "HELM_DATA_HOME": "/tmp/paddock-helm/data"}
    return subprocess.run(command, input=json.dumps(values or {}), capture_output=True, text=True, env=env)


def render(values=None):
    out = helm("template", "paddock", str(CHART), "--namespace", "paddock-system", values=values)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def by_kind(objects, kind):
    return [o for o in objects if o["kind"] == kind]


def validate(obj):
    if obj["kind"] in CUSTOM_KINDS:
        return
    for version in KUBE_VERSIONS:
        kubernetes_validate.validate(obj, version, strict=True)


def test_lint_is_clean():
    out = helm("lint", "--strict", "--namespace", "paddock-system", "--kube-version", "v1.30.0", str(CHART))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "0 chart(s) failed" in out.stdout, out.stdout


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
            "ClusterRole", "ClusterRole", "ClusterRoleBinding", "ClusterRoleBinding", "Deployment",
            "MutatingWebhookConfiguration", "Role", "RoleBinding", "Secret", "Service", "ServiceAccount",
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
    assert container["image"] == "paddock:0.1.0"
    # Helm renders large numbers as floats unless told: the operator's flag wants an integer.
    lifetime = {e["name"]: e.get("value") for e in container["env"]}["PADDOCK_OPERATOR_CERTIFICATE_LIFETIME_SECS"]
    assert lifetime == "7776000"
    # The operator keeps clusters' certificates in Secrets and their NetworkPolicies.
    rules = by_kind(objects, "ClusterRole")[0]["rules"]
    assert any("secrets" in r["resources"] and "patch" in r["verbs"] for r in rules)
    assert any("networkpolicies" in r["resources"] and "delete" in r["verbs"] for r in rules)
    # Where cert-manager runs it asks it for the servers' certificates.
    assert {"apiGroups": ["cert-manager.io"], "resources": ["certificates", "issuers"],
            "verbs": ["get", "create", "patch"]} in rules
    # Namespace isolation: it binds system:auth-delegator, and no other role, to servers.
    token_review = next(r for r in by_kind(objects, "ClusterRole") if r["metadata"]["name"].endswith("-token-review"))
    bind = [r for r in token_review["rules"] if "bind" in r["verbs"]]
    assert bind == [{"apiGroups": ["rbac.authorization.k8s.io"], "resources": ["clusterroles"],
                     "resourceNames": ["system:auth-delegator"], "verbs": ["bind"]}]


def test_a_namespaced_operator_still_binds_token_reviewers():
    objects = render({"watchNamespace": "apps"})
    names = sorted(o["metadata"]["name"] for o in by_kind(objects, "ClusterRole"))
    assert names == ["paddock-token-review"]


def test_chart_crd_is_the_generated_one():
    chart_crd = (CHART / "crds" / "coordinationclusters.paddock.dev.yaml").read_text()
    assert chart_crd == (ROOT / "crds" / "coordinationclusters.paddock.dev.yaml").read_text()
    validate(yaml.safe_load(chart_crd))


@pytest.mark.parametrize("golden", sorted((ROOT / "operator" / "tests" / "golden").glob("*.yaml")), ids=lambda p: p.stem)
def test_operator_built_objects_are_valid(golden):
    for obj in yaml.safe_load_all(golden.read_text()):
        if obj:
            validate(obj)
