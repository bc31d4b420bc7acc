//! The CoordinationCluster CRD: the committed copies (crds/ and the chart's crds/) equal what
//! `crdgen` prints, and the schema with its CEL rules rejects invalid specs the way the API
//! server would (OpenAPI constraints checked here, CEL rules evaluated with kube's CEL engine).

use kube::core::cel::Validator;
use kube::CustomResourceExt;
use paddock_operator::crd::CoordinationCluster;
use serde_json::Value;

const CRD_FILE: &str = "coordinationclusters.paddock.dev.yaml";

#[test]
fn committed_crds_are_current() {
    let generated = CoordinationCluster::crd_yaml();
    let root = paddock_testkit::package_dir(env!("CARGO_MANIFEST_DIR")).join("..");
    for dir in ["crds", "charts/paddock/crds"] {
        let path = root.join(dir).join(CRD_FILE);
        let committed = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            committed == generated,
            "{} is stale: run `cargo run -p paddock-operator --bin crdgen > crds/{CRD_FILE}` and copy it to charts/paddock/crds/",
            path.display()
        );
    }
}

fn schema() -> Value {
    let crd = CoordinationCluster::crd();
    let version = &crd.spec.versions[0];
    let schema = version.schema.as_ref().and_then(|s| s.open_api_v3_schema.as_ref()).expect("schema");
    serde_json::to_value(schema).expect("schema serializes")
}

/// Applies schema defaults the way the API server does before validating.
fn default(schema: &Value, value: &mut Value) {
    let Some(props) = schema.get("properties").and_then(Value::as_object) else { return };
    let Some(object) = value.as_object_mut() else { return };
    for (key, sub) in props {
        if !object.contains_key(key) {
            if let Some(d) = sub.get("default") {
                object.insert(key.clone(), d.clone());
            }
        }
        if let Some(child) = object.get_mut(key) {
            default(sub, child);
        }
    }
}

/// The OpenAPI constraints of a structural schema that the CRD uses: type, enum, minimum,
/// maximum, pattern, maxLength, required, nested properties, items and maps.
fn check_openapi(schema: &Value, value: &Value, path: &str, errors: &mut Vec<String>) {
    if value.is_null() && schema.get("nullable") == Some(&Value::Bool(true)) {
        return;
    }
    if schema.get("x-kubernetes-int-or-string") == Some(&Value::Bool(true)) {
        return;
    }
    let type_ok = match schema.get("type").and_then(Value::as_str) {
        Some("integer") => value.is_i64() || value.is_u64(),
        Some("number") => value.is_number(),
        Some("string") => value.is_string(),
        Some("boolean") => value.is_boolean(),
        Some("object") => value.is_object(),
        Some("array") => value.is_array(),
        _ => true,
    };
    if !type_ok {
        errors.push(format!("{path}: wrong type"));
        return;
    }
    if let Some(choices) = schema.get("enum").and_then(Value::as_array) {
        if !choices.contains(value) {
            errors.push(format!("{path}: not one of {choices:?}"));
        }
    }
    if let (Some(min), Some(n)) = (schema.get("minimum").and_then(Value::as_f64), value.as_f64()) {
        if n < min {
            errors.push(format!("{path}: below minimum {min}"));
        }
    }
    if let (Some(max), Some(n)) = (schema.get("maximum").and_then(Value::as_f64), value.as_f64()) {
        if n > max {
            errors.push(format!("{path}: above maximum {max}"));
        }
    }
    if let (Some(pattern), Some(s)) = (schema.get("pattern").and_then(Value::as_str), value.as_str()) {
        if !regex::Regex::new(pattern).expect("schema pattern compiles").is_match(s) {
            errors.push(format!("{path}: does not match {pattern}"));
        }
    }
    if let (Some(max), Some(s)) = (schema.get("maxLength").and_then(Value::as_u64), value.as_str()) {
        if s.len() as u64 > max {
            errors.push(format!("{path}: longer than {max}"));
        }
    }
    if let Some(object) = value.as_object() {
        for required in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            if let Some(key) = required.as_str() {
                if !object.contains_key(key) {
                    errors.push(format!("{path}.{key}: required"));
                }
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (key, child) in object {
            match (props.and_then(|p| p.get(key)), schema.get("additionalProperties")) {
                (Some(sub), _) => check_openapi(sub, child, &format!("{path}.{key}"), errors),
                (None, Some(sub)) if sub.is_object() => check_openapi(sub, child, &format!("{path}.{key}"), errors),
                _ => {}
            }
        }
    }
    if let (Some(items), Some(array)) = (schema.get("items"), value.as_array()) {
        for (i, item) in array.iter().enumerate() {
            check_openapi(items, item, &format!("{path}[{i}]"), errors);
        }
    }
}

/// Everything the API server would say about creating (or updating from `old`) this object.
fn admit(yaml: &str, old: Option<&str>) -> Vec<String> {
    let schema = schema();
    let parse = |y: &str| {
        let mut v: Value =
            serde_json::to_value(serde_yaml::from_str::<serde_yaml::Value>(y).expect("yaml")).expect("json");
        default(&schema, &mut v);
        v
    };
    let object = parse(yaml);
    let old = old.map(parse);
    let mut errors = Vec::new();
    check_openapi(&schema, &object, "", &mut errors);
    if let Err(cel) = Validator::new().validate(&schema, &object, old.as_ref()) {
        errors.extend(cel.into_vec().into_iter().map(|e| format!("{}: {}", e.field_path, e.message)));
    }
    errors
}

fn cr(spec: &str) -> String {
    format!("apiVersion: paddock.dev/v1alpha1\nkind: CoordinationCluster\nmetadata: {{name: zk, namespace: apps}}\nspec: {spec}\n")
}

#[test]
fn valid_specs_are_admitted() {
    for spec in [
        "{}",
        "{replicas: 1}",
        "{replicas: 9, image: 'registry.example/paddock:0.2.0', storage: {size: 10Gi, storageClassName: ssd}}",
        "{config: {tickMs: 1000, minSessionTimeoutMs: 2000, maxSessionTimeoutMs: 40000}}",
        "{metrics: {serviceMonitor: {enabled: true, interval: 30s}}, pvcRetention: Delete}",
    ] {
        assert_eq!(admit(&cr(spec), None), Vec::<String>::new(), "{spec} rejected");
    }
}

#[test]
fn invalid_specs_are_rejected_with_clear_messages() {
    let cases = [
        ("{replicas: 4}", "replicas must be odd"),
        ("{replicas: 2}", "replicas must be odd"),
        ("{replicas: 11}", "above maximum 9"),
        ("{replicas: 0}", "below minimum 1"),
        ("{storage: {size: '0'}}", "storage.size: does not match"),
        ("{storage: {size: 0Gi}}", "storage.size: does not match"),
        ("{storage: {size: -1Gi}}", "storage.size: does not match"),
        ("{image: 'Paddock Server'}", "image: does not match"),
        ("{image: 'ghcr.io/paddock:latest tag'}", "image: does not match"),
        ("{imagePullPolicy: Sometimes}", "imagePullPolicy: not one of"),
        ("{config: {minSessionTimeoutMs: 9000, maxSessionTimeoutMs: 4000}}", "minSessionTimeoutMs must not exceed"),
        ("{pvcRetention: Forever}", "pvcRetention: not one of"),
    ];
    for (spec, expected) in cases {
        let errors = admit(&cr(spec), None);
        assert!(errors.iter().any(|e| e.contains(expected)), "{spec}: expected {expected:?}, got {errors:?}");
    }
}

#[test]
fn tls_is_immutable() {
    for (old, new) in
        [("{}", "{tls: {enabled: false}}"), ("{tls: {enabled: false}}", "{}"), ("{}", "{tls: {plainClientPort: true}}")]
    {
        let errors = admit(&cr(new), Some(&cr(old)));
        assert!(errors.iter().any(|e| e.contains("tls is immutable")), "{old} -> {new}: {errors:?}");
    }
    assert_eq!(admit(&cr("{replicas: 5}"), Some(&cr("{}"))), Vec::<String>::new());
}

#[test]
fn storage_is_immutable() {
    let old = cr("{storage: {size: 10Gi, storageClassName: standard}}");
    for spec in [
        "{storage: {size: 10Gi, storageClassName: fast}}",
        "{storage: {size: 10Gi}}",
        "{storage: {size: 20Gi, storageClassName: standard}}",
    ] {
        let errors = admit(&cr(spec), Some(&old));
        assert!(errors.iter().any(|e| e.contains("storage is immutable")), "{spec}: {errors:?}");
    }
    // Setting a class where none was set is a change too.
    let errors = admit(&cr("{storage: {size: 1Gi, storageClassName: fast}}"), Some(&cr("{}")));
    assert!(errors.iter().any(|e| e.contains("storage is immutable")), "{errors:?}");
    // Other fields may change.
    assert_eq!(
        admit(&cr("{replicas: 5, storage: {size: 10Gi, storageClassName: standard}}"), Some(&old)),
        Vec::<String>::new()
    );
}
