//! Every Ray object in KubeRay's sample manifests parses into our types and
//! serialises back to the same JSON: no field lost, none invented.

use kuberay_api::{RayCluster, RayCronJob, RayJob, RayService};
use kuberay_testenv::samples;
use serde_json::Value;

/// Parses `value` as its kind and serialises it back.
fn round_trip(value: &Value) -> Result<Value, String> {
    fn via<K: serde::de::DeserializeOwned + serde::Serialize>(v: &Value) -> Result<Value, String> {
        let typed: K = serde_json::from_value(v.clone()).map_err(|e| e.to_string())?;
        serde_json::to_value(typed).map_err(|e| e.to_string())
    }
    match value["kind"].as_str() {
        Some("RayCluster") => via::<RayCluster>(value),
        Some("RayJob") => via::<RayJob>(value),
        Some("RayService") => via::<RayService>(value),
        Some("RayCronJob") => via::<RayCronJob>(value),
        other => Err(format!("unexpected kind {other:?}")),
    }
}

/// The first difference between two JSON values, ignoring what does not
/// change meaning: absent versus null, and a number versus the same number
/// written as a string (Kubernetes quantities accept both).
fn first_difference(path: &str, a: &Value, b: &Value) -> Option<String> {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter().find_map(|k| {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                first_difference(&format!("{path}.{k}"), va, vb)
            })
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .enumerate()
            .find_map(|(i, (va, vb))| first_difference(&format!("{path}[{i}]"), va, vb)),
        (Value::Number(x), Value::Number(y)) if x.as_f64() == y.as_f64() => None,
        (Value::Number(n), Value::String(s)) | (Value::String(s), Value::Number(n))
            if s.parse::<f64>().ok() == n.as_f64() =>
        {
            None
        }
        _ if a == b => None,
        _ => Some(format!("{path}: input {a} != output {b}")),
    }
}

#[test]
fn every_ray_sample_round_trips_without_losing_or_inventing_fields() {
    let Some(samples) = samples::ray_objects() else {
        return;
    };
    assert!(
        samples.len() >= 40,
        "expected every Ray sample, got {}",
        samples.len()
    );
    let failures: Vec<String> = samples
        .iter()
        .filter_map(|s| match round_trip(&s.value) {
            Err(e) => Some(format!("{}: does not parse: {e}", s.id())),
            Ok(out) => first_difference("", &s.value, &out).map(|d| format!("{}: {d}", s.id())),
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} samples differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn the_comparison_catches_a_dropped_field() {
    let input = serde_json::json!({"spec": {"a": 1, "b": {"c": [1, 2]}}});
    let output = serde_json::json!({"spec": {"a": "1", "b": {"c": [1]}}});
    assert_eq!(
        first_difference("", &input, &output).unwrap(),
        ".spec.b.c: input [1,2] != output [1]"
    );
}
