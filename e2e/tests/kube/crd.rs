//! The CoordinationCluster CRD as the real API server enforces it.

use paddock_testkit::kube::ControlPlane;

use crate::harness::root;

fn cr(name: &str, spec: &str) -> String {
    format!("apiVersion: paddock.dev/v1alpha1\nkind: CoordinationCluster\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n")
}

fn install_crd(plane: &ControlPlane) {
    let crd = std::fs::read_to_string(root().join("crds/coordinationclusters.paddock.dev.yaml")).expect("CRD file");
    plane.apply(&crd).expect("the API server takes the CRD (a structural schema, CEL rules that compile)");
    plane
        .kubectl(&["wait", "--for=condition=Established", "--timeout=60s", "crd/coordinationclusters.paddock.dev"])
        .expect("the CRD is established");
}

#[test]
fn the_api_server_rejects_invalid_specs_with_the_crd_messages() {
    let plane = ControlPlane::start(&[]).expect("control plane");
    install_crd(&plane);
    let cases = [
        ("{replicas: 4}", "replicas must be odd"),
        ("{replicas: 2}", "replicas must be odd"),
        ("{replicas: 11}", "should be less than or equal to 9"),
        ("{replicas: 0}", "should be greater than or equal to 1"),
        ("{storage: {size: '0'}}", "spec.storage.size in body should match"),
        ("{storage: {size: 0Gi}}", "spec.storage.size in body should match"),
        ("{image: 'Paddock Server'}", "spec.image in body should match"),
        ("{imagePullPolicy: Sometimes}", "Unsupported value: \"Sometimes\""),
        ("{config: {minSessionTimeoutMs: 9000, maxSessionTimeoutMs: 4000}}", "minSessionTimeoutMs must not exceed"),
        ("{pvcRetention: Forever}", "Unsupported value: \"Forever\""),
    ];
    for (i, (spec, expected)) in cases.iter().enumerate() {
        let err = plane.apply(&cr(&format!("bad{i}"), spec)).expect_err(&format!("{spec} was admitted"));
        assert!(err.contains(expected), "{spec}: expected {expected:?} in: {err}");
    }
    // Nothing of them was stored.
    let listed = plane.kubectl(&["get", "pcc", "-o", "name"]).expect("list");
    assert_eq!(listed.trim(), "", "rejected objects were stored");
}

#[test]
fn storage_cannot_change_and_printer_columns_show_the_spec() {
    let plane = ControlPlane::start(&[]).expect("control plane");
    install_crd(&plane);
    plane.apply(&cr("zk", "{replicas: 5, storage: {size: 10Gi, storageClassName: standard}}")).expect("a valid spec");
    for spec in [
        "{replicas: 5, storage: {size: 10Gi, storageClassName: fast}}",
        "{replicas: 5, storage: {size: 20Gi, storageClassName: standard}}",
    ] {
        let err = plane.apply(&cr("zk", spec)).expect_err(&format!("{spec} changed the storage"));
        assert!(err.contains("storage is immutable"), "{spec}: {err}");
    }
    plane
        .apply(&cr("zk", "{replicas: 3, storage: {size: 10Gi, storageClassName: standard}}"))
        .expect("replicas may change");
    let table = plane.kubectl(&["get", "pcc", "zk"]).expect("get pcc");
    let mut lines = table.lines();
    let header: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    let row: Vec<&str> = lines.next().unwrap_or_default().split_whitespace().collect();
    assert_eq!(header.first(), Some(&"NAME"), "{table}");
    assert!(header.contains(&"REPLICAS"), "no REPLICAS column: {table}");
    let replicas = header.iter().position(|h| *h == "REPLICAS").and_then(|i| row.get(i));
    assert_eq!(replicas, Some(&"3"), "{table}");
    // Defaults are the API server's, from the schema.
    let image = plane.kubectl(&["get", "pcc", "zk", "-o", "jsonpath={.spec.image}"]).expect("image");
    assert_eq!(image, format!("paddock:{}", env!("CARGO_PKG_VERSION")));
}
