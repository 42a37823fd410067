//! Schema pieces shared by the CRD types, and the post-processing that makes
//! the generated CRDs fit the API server (and `kubectl apply`).

use std::collections::HashSet;

use schemars::JsonSchema;
use serde_json::Value;

/// The controllers allowed in `spec.managedBy`.
pub const MANAGED_BY_KUBERAY: &str = "ray.io/kuberay-operator";
pub const MANAGED_BY_MULTIKUEUE: &str = "kueue.x-k8s.io/multikueue";

/// CEL rules of every `managedBy` field: set once, to one of two values.
pub fn managed_by_rules() -> Value {
    serde_json::json!([
        {"rule": "self == oldSelf", "message": "the managedBy field is immutable"},
        {
            "rule": format!("self in ['{MANAGED_BY_KUBERAY}', '{MANAGED_BY_MULTIKUEUE}']"),
            "message": format!("the managedBy field value must be either '{MANAGED_BY_KUBERAY}' or '{MANAGED_BY_MULTIKUEUE}'"),
        }
    ])
}

/// Every description text in the schemas of the Kubernetes types our CRDs
/// embed (pod templates, services, env vars, ...).
fn kubernetes_descriptions() -> HashSet<String> {
    use k8s_openapi::api::core::v1 as core;
    use k8s_openapi::api::networking::v1 as net;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1 as meta;

    fn collect<T: JsonSchema>(out: &mut HashSet<String>) {
        let schema = schemars::SchemaGenerator::default().into_root_schema_for::<T>();
        walk(
            &serde_json::to_value(schema).unwrap_or_default(),
            &mut |v| {
                if let Some(Value::String(d)) = v.get("description") {
                    out.insert(d.clone());
                }
            },
        );
    }
    let mut out = HashSet::new();
    collect::<core::PodTemplateSpec>(&mut out);
    collect::<core::Service>(&mut out);
    collect::<meta::ObjectMeta>(&mut out);
    collect::<core::EnvVar>(&mut out);
    collect::<core::EnvFromSource>(&mut out);
    collect::<core::ResourceRequirements>(&mut out);
    collect::<core::SecurityContext>(&mut out);
    collect::<core::VolumeMount>(&mut out);
    collect::<net::IngressTLS>(&mut out);
    collect::<net::NetworkPolicyEgressRule>(&mut out);
    collect::<net::NetworkPolicyIngressRule>(&mut out);
    collect::<meta::Condition>(&mut out);
    collect::<meta::Time>(&mut out);
    collect::<k8s_openapi::apimachinery::pkg::api::resource::Quantity>(&mut out);
    out
}

fn walk(v: &Value, f: &mut impl FnMut(&Value)) {
    f(v);
    match v {
        Value::Object(m) => m.values().for_each(|c| walk(c, f)),
        Value::Array(a) => a.iter().for_each(|c| walk(c, f)),
        _ => {}
    }
}

/// Drops the descriptions that come from embedded Kubernetes types. With
/// them, a RayJob CRD (three pod templates) exceeds etcd's object size limit
/// and every CRD exceeds the annotation limit of client-side `kubectl apply`;
/// `kubectl explain` still documents those types under their own names,
/// while the descriptions of Ray's own fields stay.
pub fn strip_kubernetes_descriptions(schema: &mut Value) {
    let known = kubernetes_descriptions();
    strip(schema, &known);
}

fn strip(v: &mut Value, known: &HashSet<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(d)) = m.get("description")
                && known.contains(d)
            {
                m.remove("description");
            }
            // `properties` maps field names to schemas; a field may be
            // called `description` and must not be mistaken for one.
            m.values_mut().for_each(|c| strip(c, known));
        }
        Value::Array(a) => a.iter_mut().for_each(|c| strip(c, known)),
        _ => {}
    }
}

/// kube-derive marks every `Option` field `nullable`, which makes the API
/// server store an explicit `null` instead of pruning it, and adds `null` to
/// enums. KubeRay's CRDs do neither, so writes would behave differently; this
/// removes both. The one field KubeRay does declare nullable,
/// `RayClusterStatus.lastUpdateTime` (wherever that status is embedded), gets
/// it back: it is recognised by its sibling `desiredWorkerReplicas`, because
/// schema extensions do not survive kube-derive's typed CRD.
pub fn drop_implicit_nullable(v: &mut Value) {
    match v {
        Value::Object(m) => {
            if m.get("nullable") == Some(&Value::Bool(true)) {
                m.remove("nullable");
                if let Some(Value::Array(e)) = m.get_mut("enum") {
                    e.retain(|x| !x.is_null());
                }
            }
            m.values_mut().for_each(drop_implicit_nullable);
            if let Some(Value::Object(props)) = m.get_mut("properties")
                && props.contains_key("desiredWorkerReplicas")
                && let Some(Value::Object(t)) = props.get_mut("lastUpdateTime")
            {
                t.insert("nullable".into(), Value::Bool(true));
            }
        }
        Value::Array(a) => a.iter_mut().for_each(drop_implicit_nullable),
        _ => {}
    }
}
