//! RayJob validation: submission modes, cluster choice, deadlines, retries
//! and deletion rules.

use std::collections::{BTreeMap, HashMap};

use super::raycluster::{
    ClusterContext, MAX_RAYCLUSTER_NAME_LENGTH, cluster_spec, is_autoscaling_enabled, object_name,
};
use super::{Errors, Invalid, check_known};
use crate::features::{FeatureGates, RAY_JOB_DELETION_POLICY};
use crate::rayjob::{
    DeletionPolicyType, DeletionStrategy, JobDeploymentStatus, JobSubmissionMode, RayJob,
    RayJobSpec,
};

/// The longest RayJob name: its cluster is named `<job>-<5 random chars>`
/// and must fit [`MAX_RAYCLUSTER_NAME_LENGTH`].
pub const MAX_RAYJOB_NAME_LENGTH: usize = MAX_RAYCLUSTER_NAME_LENGTH - 6;

/// The label of `clusterSelector` that names the cluster to use.
pub const CLUSTER_SELECTOR_KEY: &str = "ray.io/cluster";

/// Validates a RayJob's name and spec.
pub fn validate_rayjob(job: &RayJob, gates: &FeatureGates) -> Result<(), Invalid> {
    let mut errs = Errors::default();
    let name = job.metadata.name.as_deref().unwrap_or_default();
    object_name(&mut errs, "RayJob", name, MAX_RAYJOB_NAME_LENGTH);
    let empty = BTreeMap::new();
    let annotations = job.metadata.annotations.as_ref().unwrap_or(&empty);
    job_spec(&mut errs, &job.spec, "spec", annotations, gates);
    errs.into_result()
}

/// A status the operator itself must never have written.
pub fn validate_rayjob_status(job: &RayJob) -> Result<(), Invalid> {
    let mut errs = Errors::default();
    let waiting = job
        .status
        .as_ref()
        .and_then(|s| s.job_deployment_status.as_ref())
        == Some(&JobDeploymentStatus::Waiting);
    if waiting && job.spec.submission_mode != Some(JobSubmissionMode::InteractiveMode) {
        errs.add(
            "status.jobDeploymentStatus",
            "Waiting is only valid in InteractiveMode",
        );
    }
    errs.into_result()
}

pub(crate) fn job_spec(
    errs: &mut Errors,
    spec: &RayJobSpec,
    p: &str,
    annotations: &BTreeMap<String, String>,
    gates: &FeatureGates,
) {
    let mode = spec
        .submission_mode
        .clone()
        .unwrap_or(JobSubmissionMode::K8sJobMode);
    check_known(
        errs,
        &format!("{p}.submissionMode"),
        spec.submission_mode.as_ref(),
    );
    let selector = spec.cluster_selector.as_ref().filter(|s| !s.is_empty());
    let shutdown = spec.shutdown_after_job_finishes == Some(true);

    if spec.suspend == Some(true) {
        if !shutdown {
            errs.add(
                format!("{p}.suspend"),
                "a RayJob can be suspended only with shutdownAfterJobFinishes: true",
            );
        }
        if selector.is_some() {
            errs.add(
                format!("{p}.suspend"),
                "a RayJob using clusterSelector cannot be suspended",
            );
        }
    }
    match spec.ttl_seconds_after_finished {
        Some(t) if t < 0 => errs.add(
            format!("{p}.ttlSecondsAfterFinished"),
            format!("{t} is negative"),
        ),
        Some(t) if t > 0 && !shutdown => errs.add(
            format!("{p}.ttlSecondsAfterFinished"),
            "only applies with shutdownAfterJobFinishes: true",
        ),
        _ => {}
    }
    if let Some(ds) = &spec.deletion_strategy {
        deletion_strategy(errs, spec, ds, p, gates);
    }

    match (&spec.ray_cluster_spec, selector) {
        (None, None) => errs.add(p.to_string(), "one of rayClusterSpec and clusterSelector must be set"),
        (Some(_), Some(_)) => errs.add(
            format!("{p}.clusterSelector"),
            "cannot be combined with rayClusterSpec: the job either creates its cluster or uses an existing one",
        ),
        _ => {}
    }
    if let Some(sel) = selector {
        if sel.get(CLUSTER_SELECTOR_KEY).is_none_or(|v| v.is_empty()) {
            errs.add(
                format!("{p}.clusterSelector"),
                format!("must name the cluster with the {CLUSTER_SELECTOR_KEY:?} key"),
            );
        }
        if mode == JobSubmissionMode::SidecarMode {
            errs.add(
                format!("{p}.clusterSelector"),
                "is not supported in SidecarMode",
            );
        }
        if spec.backoff_limit.is_some_and(|b| b > 0) {
            errs.add(
                format!("{p}.backoffLimit"),
                "retries need a cluster per attempt and are not supported with clusterSelector",
            );
        }
    }
    if mode == JobSubmissionMode::InteractiveMode && spec.backoff_limit.is_some_and(|b| b > 0) {
        errs.add(
            format!("{p}.backoffLimit"),
            "retries are not supported in InteractiveMode",
        );
    }
    if mode == JobSubmissionMode::SidecarMode {
        if spec.submitter_pod_template.is_some() {
            errs.add(
                format!("{p}.submitterPodTemplate"),
                "is not supported in SidecarMode",
            );
        }
        if spec.submitter_config.is_some() {
            errs.add(
                format!("{p}.submitterConfig"),
                "is not supported in SidecarMode",
            );
        }
        let restart = spec
            .ray_cluster_spec
            .as_ref()
            .and_then(|c| c.head_group_spec.template.spec.as_ref())
            .and_then(|s| s.restart_policy.as_deref());
        if restart.is_some_and(|r| !r.is_empty() && r != "Never") {
            errs.add(
                format!("{p}.rayClusterSpec.headGroupSpec.template.spec.restartPolicy"),
                "must be Never or unset in SidecarMode",
            );
        }
    }
    // A custom submitter that brings its own command may carry the
    // entrypoint itself (KubeRay's light-weight submitter does).
    let own_submitter = spec
        .submitter_pod_template
        .as_ref()
        .and_then(|t| t.spec.as_ref())
        .and_then(|s| s.containers.first())
        .is_some_and(|c| c.command.as_ref().is_some_and(|c| !c.is_empty()));
    let needs_entrypoint = match mode {
        JobSubmissionMode::InteractiveMode => false,
        JobSubmissionMode::K8sJobMode => !own_submitter,
        _ => true,
    };
    if needs_entrypoint && spec.entrypoint.as_ref().is_none_or(|e| e.trim().is_empty()) {
        errs.add(format!("{p}.entrypoint"), format!("must be set in {mode}"));
    }
    if let Some(c) = &spec.ray_cluster_spec {
        if c.auth_options
            .as_ref()
            .and_then(|a| a.enable_k8s_token_auth)
            == Some(true)
        {
            errs.add(
                format!("{p}.rayClusterSpec.authOptions.enableK8sTokenAuth"),
                "is not supported for RayJob clusters",
            );
        }
        let ctx = ClusterContext {
            path: &format!("{p}.rayClusterSpec"),
            annotations,
            gates,
        };
        cluster_spec(errs, c, &ctx);
    }
    if let Some(yaml) = spec
        .runtime_env_yaml
        .as_deref()
        .filter(|y| !y.trim().is_empty())
    {
        match serde_yaml::from_str::<serde_yaml::Value>(yaml) {
            Ok(serde_yaml::Value::Mapping(_)) => {}
            Ok(_) => errs.add(
                format!("{p}.runtimeEnvYAML"),
                "must be a YAML mapping (e.g. `pip: [requests]`)",
            ),
            Err(e) => errs.add(
                format!("{p}.runtimeEnvYAML"),
                format!("is not valid YAML: {e}"),
            ),
        }
    }
    if let Some(r) = spec
        .entrypoint_resources
        .as_deref()
        .filter(|r| !r.trim().is_empty())
    {
        match serde_json::from_str::<serde_json::Value>(r) {
            Ok(serde_json::Value::Object(m)) => {
                for (k, v) in m.iter().filter(|(_, v)| !v.is_number()) {
                    errs.add(
                        format!("{p}.entrypointResources"),
                        format!("resource {k:?} has {v}, which is not a number"),
                    );
                }
            }
            _ => errs.add(
                format!("{p}.entrypointResources"),
                "must be a JSON object of resource names to numbers, e.g. {\"my_resource\": 1}",
            ),
        }
    }
    for (field, value) in [
        ("activeDeadlineSeconds", spec.active_deadline_seconds),
        (
            "preRunningDeadlineSeconds",
            spec.pre_running_deadline_seconds,
        ),
    ] {
        if let Some(v) = value.filter(|v| *v <= 0) {
            errs.add(
                format!("{p}.{field}"),
                format!("{v} is not a positive number of seconds"),
            );
        }
    }
    if let Some(b) = spec.backoff_limit.filter(|b| *b < 0) {
        errs.add(format!("{p}.backoffLimit"), format!("{b} is negative"));
    }
    if let Some(b) = spec
        .submitter_config
        .as_ref()
        .and_then(|c| c.backoff_limit)
        .filter(|b| *b < 0)
    {
        errs.add(
            format!("{p}.submitterConfig.backoffLimit"),
            format!("{b} is negative"),
        );
    }
}

/// Whether a policy removes cluster resources, which a job that does not own
/// its cluster (clusterSelector) must never do.
fn touches_cluster(p: &DeletionPolicyType) -> bool {
    matches!(
        p,
        DeletionPolicyType::DeleteCluster | DeletionPolicyType::DeleteWorkers
    )
}

fn deletion_strategy(
    errs: &mut Errors,
    spec: &RayJobSpec,
    ds: &DeletionStrategy,
    p: &str,
    gates: &FeatureGates,
) {
    let dp = format!("{p}.deletionStrategy");
    if !gates.enabled(RAY_JOB_DELETION_POLICY) {
        errs.add(
            dp.clone(),
            format!("needs the {RAY_JOB_DELETION_POLICY} feature gate"),
        );
    }
    let selector = spec
        .cluster_selector
        .as_ref()
        .is_some_and(|s| !s.is_empty());
    let autoscaling = spec
        .ray_cluster_spec
        .as_ref()
        .is_some_and(is_autoscaling_enabled);
    let shutdown = spec.shutdown_after_job_finishes == Some(true);
    let legacy = ds.on_success.is_some() || ds.on_failure.is_some();
    let rules = ds.deletion_rules.as_ref().filter(|r| !r.is_empty());

    if rules.is_some() && shutdown {
        errs.add(
            format!("{dp}.deletionRules"),
            "cannot be combined with shutdownAfterJobFinishes: true",
        );
    }
    if rules.is_some() && legacy {
        errs.add(
            dp.clone(),
            "use either onSuccess/onFailure or deletionRules, not both",
        );
    }
    if legacy {
        for (field, policy) in [("onSuccess", &ds.on_success), ("onFailure", &ds.on_failure)] {
            let Some(policy) = policy.as_ref().and_then(|x| x.policy.as_ref()) else {
                errs.add(
                    format!("{dp}.{field}.policy"),
                    "must be set (the legacy form needs both onSuccess and onFailure)",
                );
                continue;
            };
            check_known(errs, &format!("{dp}.{field}.policy"), Some(policy));
            if selector && touches_cluster(policy) {
                errs.add(
                    format!("{dp}.{field}.policy"),
                    format!("{policy} is not supported with clusterSelector"),
                );
            }
            if autoscaling && *policy == DeletionPolicyType::DeleteWorkers {
                errs.add(
                    format!("{dp}.{field}.policy"),
                    "DeleteWorkers is not supported while the autoscaler manages the workers",
                );
            }
            if shutdown && *policy == DeletionPolicyType::DeleteNone {
                errs.add(
                    format!("{dp}.{field}.policy"),
                    "DeleteNone contradicts shutdownAfterJobFinishes: true",
                );
            }
        }
    } else if rules.is_none() {
        errs.add(
            dp.clone(),
            "needs both onSuccess and onFailure, or a non-empty deletionRules list",
        );
    }
    let Some(rules) = rules else { return };

    // Per condition: policy -> TTL, to find duplicates and TTL order.
    let mut by_condition: BTreeMap<String, HashMap<String, (usize, i32)>> = BTreeMap::new();
    for (i, rule) in rules.iter().enumerate() {
        let rp = format!("{dp}.deletionRules[{i}]");
        let c = &rule.condition;
        check_known(errs, &format!("{rp}.policy"), Some(&rule.policy));
        let condition = match (&c.job_status, &c.job_deployment_status) {
            (Some(_), Some(_)) => {
                errs.add(
                    format!("{rp}.condition"),
                    "set jobStatus or jobDeploymentStatus, not both",
                );
                continue;
            }
            (None, None) => {
                errs.add(
                    format!("{rp}.condition"),
                    "must set jobStatus or jobDeploymentStatus",
                );
                continue;
            }
            (Some(s), None) => format!("jobStatus {s}"),
            (None, Some(d)) => format!("jobDeploymentStatus {d}"),
        };
        let ttl = c.ttl_seconds.unwrap_or(0);
        if ttl < 0 {
            errs.add(
                format!("{rp}.condition.ttlSeconds"),
                format!("{ttl} is negative"),
            );
        }
        if selector && touches_cluster(&rule.policy) {
            errs.add(
                format!("{rp}.policy"),
                format!("{} is not supported with clusterSelector", rule.policy),
            );
        }
        if autoscaling && rule.policy == DeletionPolicyType::DeleteWorkers {
            errs.add(
                format!("{rp}.policy"),
                "DeleteWorkers is not supported while the autoscaler manages the workers",
            );
        }
        let seen = by_condition.entry(condition.clone()).or_default();
        if let Some((first, _)) = seen.get(rule.policy.as_str()) {
            errs.add(
                rp.clone(),
                format!(
                    "duplicates deletionRules[{first}] ({} on {condition})",
                    rule.policy
                ),
            );
        } else {
            seen.insert(rule.policy.as_str().to_string(), (i, ttl));
        }
    }
    // Deleting workers, then the cluster, then the RayJob only makes sense in
    // that order; a later step with a shorter TTL would never see the
    // earlier one happen.
    for (condition, ttls) in &by_condition {
        let mut previous: Option<(&str, i32)> = None;
        for policy in ["DeleteWorkers", "DeleteCluster", "DeleteSelf"] {
            let Some((i, ttl)) = ttls.get(policy) else {
                continue;
            };
            if let Some((prev, prev_ttl)) = previous
                && *ttl < prev_ttl
            {
                errs.add(
                    format!("{dp}.deletionRules[{i}].condition.ttlSeconds"),
                    format!("{policy} on {condition} after {ttl}s would come before {prev} (after {prev_ttl}s); TTLs must not decrease from DeleteWorkers to DeleteCluster to DeleteSelf"),
                );
            }
            previous = Some((policy, *ttl));
        }
    }
}
