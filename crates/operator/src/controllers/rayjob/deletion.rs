//! What to clean up after a RayJob finishes, and when: the
//! `deletionStrategy` rules, the legacy onSuccess/onFailure policies, or
//! `shutdownAfterJobFinishes` with its TTL. Pure: the caller carries it out.

use jiff::{SignedDuration, Timestamp};
use kuberay_api::features::{FeatureGates, RAY_JOB_DELETION_POLICY};
use kuberay_api::rayjob::{DeletionPolicyType, JobDeploymentStatus, JobStatus};
use kuberay_api::{RayCluster, RayJob};

/// A cleanup step.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Cleanup {
    /// Suspend every worker group (the head stays, for logs and the dashboard).
    DeleteWorkers,
    DeleteCluster,
    DeleteSelf,
}

/// Cleanup now, and when to look again.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Decision {
    pub now: Option<Cleanup>,
    pub next: Option<Timestamp>,
}

fn done(action: Cleanup, cluster: Option<&RayCluster>) -> bool {
    let gone = |c: &RayCluster| c.metadata.deletion_timestamp.is_some();
    match action {
        Cleanup::DeleteCluster => cluster.is_none_or(gone),
        Cleanup::DeleteWorkers => cluster.is_none_or(|c| {
            gone(c)
                || c.spec
                    .worker_group_specs
                    .iter()
                    .flatten()
                    .all(|g| g.suspend == Some(true))
        }),
        Cleanup::DeleteSelf => false,
    }
}

fn policy(p: &DeletionPolicyType) -> Option<Cleanup> {
    match p {
        DeletionPolicyType::DeleteCluster => Some(Cleanup::DeleteCluster),
        DeletionPolicyType::DeleteWorkers => Some(Cleanup::DeleteWorkers),
        DeletionPolicyType::DeleteSelf => Some(Cleanup::DeleteSelf),
        _ => None,
    }
}

/// Decides the cleanup of a finished (Complete or Failed) RayJob whose
/// deployment ended at `ended`. `cluster` is the job's RayCluster if it
/// still exists; `delete_self` is KubeRay's DELETE_RAYJOB_CR_AFTER_JOB_FINISHES.
pub fn decide(
    job: &RayJob,
    ended: Timestamp,
    now: Timestamp,
    cluster: Option<&RayCluster>,
    gates: &FeatureGates,
    delete_self: bool,
) -> Decision {
    let spec = &job.spec;
    // A job that borrowed an existing cluster never removes it.
    if spec
        .cluster_selector
        .as_ref()
        .is_some_and(|s| !s.is_empty())
    {
        return Decision::default();
    }
    let status = job.status.clone().unwrap_or_default();
    let at = |secs: i32| ended + SignedDuration::from_secs(i64::from(secs.max(0)));
    let single = |action: Option<Cleanup>, when: Timestamp| -> Decision {
        match action {
            Some(a) if done(a, cluster) => Decision::default(),
            Some(a) if now >= when => Decision {
                now: Some(a),
                next: None,
            },
            Some(_) => Decision {
                now: None,
                next: Some(when),
            },
            None => Decision::default(),
        }
    };
    if let Some(ds) = spec
        .deletion_strategy
        .as_ref()
        .filter(|_| gates.enabled(RAY_JOB_DELETION_POLICY))
    {
        if let Some(rules) = &ds.deletion_rules {
            let job_status = status.job_status.clone().unwrap_or(JobStatus::New);
            let deployment = status
                .job_deployment_status
                .clone()
                .unwrap_or(JobDeploymentStatus::New);
            let mut due: Option<Cleanup> = None;
            let mut next: Option<Timestamp> = None;
            for r in rules {
                let c = &r.condition;
                let matches = match (&c.job_status, &c.job_deployment_status) {
                    (Some(s), _) => *s == job_status,
                    (None, Some(d)) => *d == deployment,
                    _ => false,
                };
                let Some(action) = policy(&r.policy).filter(|_| matches) else {
                    continue;
                };
                let when = at(c.ttl_seconds.unwrap_or(0));
                if now < when {
                    next = Some(next.map_or(when, |n| n.min(when)));
                } else if !done(action, cluster) {
                    // Only the most far-reaching due rule acts; it covers the others.
                    due = Some(due.map_or(action, |d| d.max(action)));
                }
            }
            return Decision { now: due, next };
        }
        let legacy = match status.job_status {
            Some(JobStatus::Succeeded) => ds.on_success.as_ref(),
            Some(JobStatus::Failed) => ds.on_failure.as_ref(),
            _ => None,
        };
        let action = legacy.and_then(|p| p.policy.as_ref()).and_then(policy);
        return single(action, at(spec.ttl_seconds_after_finished.unwrap_or(0)));
    }
    if spec.shutdown_after_job_finishes == Some(true) {
        let action = if delete_self {
            Cleanup::DeleteSelf
        } else {
            Cleanup::DeleteCluster
        };
        return single(
            Some(action),
            at(spec.ttl_seconds_after_finished.unwrap_or(0)),
        );
    }
    Decision::default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(spec: serde_json::Value, status: serde_json::Value) -> RayJob {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j"},
            "spec": spec, "status": status
        }))
        .unwrap()
    }

    fn t(s: i64) -> Timestamp {
        Timestamp::from_second(1_800_000_000 + s).unwrap()
    }

    fn cluster() -> RayCluster {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "c"},
            "spec": {"headGroupSpec": {"template": {}}, "workerGroupSpecs": [{"groupName": "g", "template": {}}]}
        }))
        .unwrap()
    }

    #[test]
    fn shutdown_waits_for_the_ttl_then_deletes_the_cluster() {
        let j = job(
            serde_json::json!({"shutdownAfterJobFinishes": true, "ttlSecondsAfterFinished": 10}),
            serde_json::json!({}),
        );
        let g = FeatureGates::default();
        let c = cluster();
        assert_eq!(
            decide(&j, t(0), t(5), Some(&c), &g, false),
            Decision {
                now: None,
                next: Some(t(10))
            }
        );
        assert_eq!(
            decide(&j, t(0), t(10), Some(&c), &g, false).now,
            Some(Cleanup::DeleteCluster)
        );
        assert_eq!(
            decide(&j, t(0), t(10), Some(&c), &g, true).now,
            Some(Cleanup::DeleteSelf)
        );
        assert_eq!(
            decide(&j, t(0), t(10), None, &g, false),
            Decision::default(),
            "already gone"
        );
    }

    #[test]
    fn rules_act_in_order_of_their_ttls_and_the_widest_due_rule_wins() {
        let rules = serde_json::json!({"deletionStrategy": {"deletionRules": [
            {"condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 5}, "policy": "DeleteWorkers"},
            {"condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 20}, "policy": "DeleteCluster"},
            {"condition": {"jobStatus": "FAILED", "ttlSeconds": 0}, "policy": "DeleteSelf"}
        ]}});
        let j = job(
            rules.clone(),
            serde_json::json!({"jobStatus": "SUCCEEDED", "jobDeploymentStatus": "Complete"}),
        );
        let g = FeatureGates::default();
        let c = cluster();
        assert_eq!(
            decide(&j, t(0), t(1), Some(&c), &g, false),
            Decision {
                now: None,
                next: Some(t(5))
            }
        );
        assert_eq!(
            decide(&j, t(0), t(6), Some(&c), &g, false),
            Decision {
                now: Some(Cleanup::DeleteWorkers),
                next: Some(t(20))
            }
        );
        let mut suspended = c.clone();
        suspended.spec.worker_group_specs.as_mut().unwrap()[0].suspend = Some(true);
        assert_eq!(
            decide(&j, t(0), t(6), Some(&suspended), &g, false),
            Decision {
                now: None,
                next: Some(t(20))
            }
        );
        assert_eq!(
            decide(&j, t(0), t(30), Some(&c), &g, false).now,
            Some(Cleanup::DeleteCluster)
        );
        let failed = job(
            rules,
            serde_json::json!({"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"}),
        );
        assert_eq!(
            decide(&failed, t(0), t(0), Some(&c), &g, false).now,
            Some(Cleanup::DeleteSelf)
        );
    }

    #[test]
    fn legacy_policies_follow_the_job_status() {
        let j = job(
            serde_json::json!({"deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteNone"}}}),
            serde_json::json!({"jobStatus": "FAILED"}),
        );
        assert_eq!(
            decide(
                &j,
                t(0),
                t(100),
                Some(&cluster()),
                &FeatureGates::default(),
                false
            ),
            Decision::default()
        );
    }

    #[test]
    fn borrowed_clusters_are_never_cleaned_up() {
        let j = job(
            serde_json::json!({"clusterSelector": {"ray.io/cluster": "x"}, "shutdownAfterJobFinishes": true}),
            serde_json::json!({}),
        );
        assert_eq!(
            decide(
                &j,
                t(0),
                t(100),
                Some(&cluster()),
                &FeatureGates::default(),
                false
            ),
            Decision::default()
        );
    }
}
