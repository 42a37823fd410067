//! The defaults KubeRay's CRDs declare, as pure functions. The API server
//! applies them to v1 writes; the operator applies them again to what it
//! reads, so objects written through the free-form v1alpha1 schema (or
//! built in tests) behave the same.

use crate::raycluster::{NetworkPolicyMode, RayClusterSpec};
use crate::rayjob::{JobSubmissionMode, RayJobSpec};
use crate::rayservice::RayServiceSpec;

pub fn cluster_spec(spec: &mut RayClusterSpec) {
    for wg in spec.worker_group_specs.iter_mut().flatten() {
        wg.min_replicas.get_or_insert(0);
        wg.max_replicas.get_or_insert(i32::MAX);
        wg.num_of_hosts.get_or_insert(1);
        wg.priority.get_or_insert(0);
        wg.replicas.get_or_insert(0);
    }
    if let Some(np) = &mut spec.network_policy {
        np.mode.get_or_insert(NetworkPolicyMode::DenyAll);
    }
}

pub fn job_spec(spec: &mut RayJobSpec) {
    spec.backoff_limit.get_or_insert(0);
    spec.ttl_seconds_after_finished.get_or_insert(0);
    spec.submission_mode
        .get_or_insert(JobSubmissionMode::K8sJobMode);
    for rule in spec
        .deletion_strategy
        .iter_mut()
        .flat_map(|d| d.deletion_rules.iter_mut().flatten())
    {
        rule.condition.ttl_seconds.get_or_insert(0);
    }
    if let Some(c) = &mut spec.ray_cluster_spec {
        cluster_spec(c);
    }
}

pub fn service_spec(spec: &mut RayServiceSpec) {
    cluster_spec(&mut spec.ray_cluster_config);
    if let Some(o) = spec
        .upgrade_strategy
        .as_mut()
        .and_then(|u| u.cluster_upgrade_options.as_mut())
    {
        o.max_surge_percent.get_or_insert(100);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::raycluster::WorkerGroupSpec;

    #[test]
    fn worker_groups_get_the_crd_defaults_and_set_values_stay() {
        let mut spec = RayClusterSpec {
            worker_group_specs: Some(vec![WorkerGroupSpec {
                replicas: Some(3),
                ..Default::default()
            }]),
            ..Default::default()
        };
        cluster_spec(&mut spec);
        let wg = &spec.worker_group_specs.unwrap()[0];
        assert_eq!(
            (
                wg.min_replicas,
                wg.max_replicas,
                wg.num_of_hosts,
                wg.replicas
            ),
            (Some(0), Some(i32::MAX), Some(1), Some(3))
        );
    }

    #[test]
    fn jobs_default_to_k8s_job_mode() {
        let mut spec = RayJobSpec::default();
        job_spec(&mut spec);
        assert_eq!(spec.submission_mode, Some(JobSubmissionMode::K8sJobMode));
        assert_eq!(spec.backoff_limit, Some(0));
    }
}
