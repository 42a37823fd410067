//! Our CRDs accept every field KubeRay's v1 CRDs accept, and the committed
//! CRD files are exactly what `crdgen` generates.

use std::collections::BTreeSet;

use kuberay_api::crd;
use kuberay_testenv::samples;
use serde_json::Value;

/// Every property path of a schema: `.spec.headGroupSpec.template...`,
/// with `[]` for array items and `{}` for map values.
fn paths(schema: &Value, prefix: &str, out: &mut BTreeSet<String>) {
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            let p = format!("{prefix}.{k}");
            out.insert(p.clone());
            paths(v, &p, out);
        }
    }
    if let Some(items) = schema.get("items") {
        paths(items, &format!("{prefix}[]"), out);
    }
    if let Some(ap) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        paths(ap, &format!("{prefix}{{}}"), out);
    }
}

fn v1_schema(crd: &Value) -> &Value {
    crd["spec"]["versions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["name"] == "v1")
        .map(|v| &v["schema"]["openAPIV3Schema"])
        .expect("a v1 version")
}

#[test]
fn every_kuberay_field_exists_in_our_crds() {
    let mut missing = Vec::new();
    for file in crd::all() {
        let plural = file.crd.spec.names.plural.clone();
        let theirs = samples::kuberay_crd(&plural);
        let ours = serde_json::to_value(&file.crd).unwrap();
        let (mut want, mut have) = (BTreeSet::new(), BTreeSet::new());
        paths(v1_schema(&theirs), "", &mut want);
        paths(v1_schema(&ours), "", &mut have);
        missing.extend(want.difference(&have).map(|p| format!("{plural}: {p}")));
    }
    assert!(
        missing.is_empty(),
        "{} fields missing:\n{}",
        missing.len(),
        missing.join("\n")
    );
}

#[test]
fn printer_columns_and_categories_match_kuberay() {
    for file in crd::all() {
        let plural = file.crd.spec.names.plural.clone();
        let theirs = samples::kuberay_crd(&plural);
        let ours = serde_json::to_value(&file.crd).unwrap();
        let cols = |crd: &Value| {
            let v1 = crd["spec"]["versions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|v| v["name"] == "v1")
                .unwrap();
            v1["additionalPrinterColumns"].clone()
        };
        assert_eq!(cols(&ours), cols(&theirs), "{plural} printer columns");
        assert_eq!(
            ours["spec"]["names"]["categories"],
            theirs["spec"]["names"]["categories"]
        );
        let served = |crd: &Value| -> Vec<String> {
            crd["spec"]["versions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|v| v["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(served(&ours), served(&theirs), "{plural} versions");
    }
}

#[test]
fn committed_crds_are_up_to_date() {
    let root = kuberay_testenv::repo_root();
    for (dir, file) in ["config/crd/bases", "helm-chart/kuberay-operator/crds"]
        .iter()
        .flat_map(|d| {
            let dir = root.join(d);
            crd::all().into_iter().map(move |f| (dir.clone(), f))
        })
    {
        let path = dir.join(&file.file_name);
        let committed = std::fs::read_to_string(&path).unwrap_or_else(|e| {
            panic!(
                "{}: {e}; run `cargo run -p kuberay-api --bin crdgen`",
                path.display()
            )
        });
        assert!(
            committed == crd::to_yaml(&file.crd),
            "{} is stale; run `cargo run -p kuberay-api --bin crdgen`",
            path.display()
        );
    }
}

/// Path segments below which the schema is an embedded Kubernetes type,
/// whose details follow k8s-openapi's Kubernetes version, not KubeRay's.
const EMBEDDED: &[&str] = &[
    "template",
    "submitterPodTemplate",
    "headService",
    "serveService",
    "env",
    "envFrom",
    "securityContext",
    "volumeMounts",
    "valueFrom",
    "egressRules",
    "ingressRules",
    "tls",
    "conditions",
    "metadata",
    "claims",
];

/// The validation keywords of every Ray-owned property, by path.
fn constraints(schema: &Value, prefix: &str, out: &mut std::collections::BTreeMap<String, Value>) {
    const KEYWORDS: &[&str] = &[
        "type",
        "enum",
        "default",
        "minimum",
        "maximum",
        "minLength",
        "maxLength",
        "required",
        "x-kubernetes-validations",
        "x-kubernetes-list-type",
        "x-kubernetes-list-map-keys",
        "x-kubernetes-int-or-string",
        "x-kubernetes-preserve-unknown-fields",
        "nullable",
    ];
    let last = prefix.rsplit(['.', '[', '{']).next().unwrap_or_default();
    if EMBEDDED.contains(&last) {
        return;
    }
    let mut picked = serde_json::Map::new();
    for k in KEYWORDS {
        if let Some(v) = schema.get(*k) {
            let mut v = v.clone();
            // Bounds are floats in the typed CRD (`minimum: 1.0`); compare values.
            if let Some(f) = v.as_f64().filter(|_| v.is_number()) {
                v = serde_json::json!(f);
            }
            if let Value::Array(a) = &mut v
                && *k == "required"
            {
                a.sort_by_key(|x| x.to_string());
            }
            picked.insert(k.to_string(), v);
        }
    }
    out.insert(prefix.to_string(), Value::Object(picked));
    if let Some(props) = schema.get("properties").and_then(Value::as_object) {
        for (k, v) in props {
            constraints(v, &format!("{prefix}.{k}"), out);
        }
    }
    if let Some(items) = schema.get("items") {
        constraints(items, &format!("{prefix}[]"), out);
    }
    if let Some(ap) = schema.get("additionalProperties").filter(|v| v.is_object()) {
        constraints(ap, &format!("{prefix}{{}}"), out);
    }
}

#[test]
fn ray_fields_have_kuberays_types_defaults_enums_and_rules() {
    let mut diffs = Vec::new();
    for file in crd::all() {
        let plural = file.crd.spec.names.plural.clone();
        let theirs = samples::kuberay_crd(&plural);
        let ours = serde_json::to_value(&file.crd).unwrap();
        let (mut want, mut have) = (Default::default(), Default::default());
        constraints(v1_schema(&theirs), "", &mut want);
        constraints(v1_schema(&ours), "", &mut have);
        for (path, w) in &want {
            let h = have.get(path).cloned().unwrap_or(Value::Null);
            if &h != w {
                diffs.push(format!("{plural} {path}:\n  kuberay {w}\n  ours    {h}"));
            }
        }
    }
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}
