//! The hash of what shapes a cluster's pods, for `upgradeStrategy:
//! Recreate`: everything in the spec except what changes without touching
//! pods (replica counts, workers to delete, tolerations and scheduling
//! gates, which Kueue edits, and the strategy itself).

use kuberay_api::RayClusterSpec;
use sha2::{Digest, Sha256};

pub fn pod_spec_hash(spec: &RayClusterSpec) -> String {
    let mut s = spec.clone();
    let strip = |t: &mut k8s_openapi::api::core::v1::PodTemplateSpec| {
        if let Some(p) = t.spec.as_mut() {
            p.tolerations = None;
            p.scheduling_gates = None;
        }
    };
    strip(&mut s.head_group_spec.template);
    for g in s.worker_group_specs.iter_mut().flatten() {
        g.replicas = None;
        g.min_replicas = None;
        g.max_replicas = None;
        g.scale_strategy = None;
        strip(&mut g.template);
    }
    s.upgrade_strategy = None;
    let bytes = serde_json::to_vec(&s).expect("spec serialises");
    let digest = Sha256::digest(&bytes);
    digest[..16].iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuberay_api::raycluster::WorkerGroupSpec;

    #[test]
    fn replicas_do_not_change_the_hash_but_templates_do() {
        let mut spec = RayClusterSpec {
            worker_group_specs: Some(vec![WorkerGroupSpec {
                group_name: "g".into(),
                replicas: Some(1),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let h = pod_spec_hash(&spec);
        spec.worker_group_specs.as_mut().unwrap()[0].replicas = Some(9);
        assert_eq!(pod_spec_hash(&spec), h);
        spec.worker_group_specs.as_mut().unwrap()[0].ray_start_params =
            Some([("num-cpus".to_string(), "2".to_string())].into());
        assert_ne!(pod_spec_hash(&spec), h);
        assert_eq!(h.len(), 32);
    }
}
