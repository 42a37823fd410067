//! Every Ray object in KubeRay's sample manifests parses into our types and
//! serialises back to the same JSON: no field lost, none invented.

use kuberay_api::{RayCluster, RayCronJob, RayJob, RayService};
use kuberay_testenv::jsondiff::first_difference;
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

#[test]
fn every_ray_sample_round_trips_without_losing_or_inventing_fields() {
    let samples = samples::ray_objects();
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
fn every_ray_sample_passes_validation() {
    use kuberay_api::features::{DEFAULTS, FeatureGates};
    use kuberay_api::validation::*;
    let samples = samples::ray_objects();
    // Some samples show alpha features (network policy, TLS, embedded GCS).
    let mut gates = FeatureGates::default();
    for (name, _) in DEFAULTS {
        gates.set(name, true).unwrap();
    }
    let failures: Vec<String> = samples
        .iter()
        .filter_map(|s| {
            // The API server applies the CRD defaults before anyone sees
            // the object; so do we.
            use kuberay_api::defaults;
            let v = s.value.clone();
            let result = match s.kind() {
                "RayCluster" => {
                    let mut o: kuberay_api::RayCluster = serde_json::from_value(v).unwrap();
                    defaults::cluster_spec(&mut o.spec);
                    validate_raycluster(&o, &gates)
                }
                "RayJob" => {
                    let mut o: kuberay_api::RayJob = serde_json::from_value(v).unwrap();
                    defaults::job_spec(&mut o.spec);
                    validate_rayjob(&o, &gates)
                }
                "RayService" => {
                    let mut o: kuberay_api::RayService = serde_json::from_value(v).unwrap();
                    defaults::service_spec(&mut o.spec);
                    validate_rayservice(&o, &gates)
                }
                "RayCronJob" => {
                    let mut o: kuberay_api::RayCronJob = serde_json::from_value(v).unwrap();
                    defaults::job_spec(&mut o.spec.job_template);
                    validate_raycronjob(&o, &gates)
                }
                _ => Ok(()),
            };
            result.err().map(|e| format!("{}: {e}", s.id()))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "valid samples rejected:\n{}",
        failures.join("\n")
    );
}
