//! RayCluster validation, and the cluster-spec rules RayJob and RayService
//! apply to the cluster they embed.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::PodTemplateSpec;

use super::cluster_options;
use super::{
    Errors, Invalid, check_known, dns1035_label_problem, env_var, label_key_problem,
    label_value_problem, parse_ray_version,
};
use crate::features::{FeatureGates, RAY_JOB_DELETION_POLICY};
use crate::raycluster::{RayCluster, RayClusterSpec, WorkerGroupSpec};
use crate::schema::{MANAGED_BY_KUBERAY, MANAGED_BY_MULTIKUEUE};

/// The longest RayCluster name: 63 minus the longest generated service
/// suffix, `-serve-svc`, so every generated name is a valid DNS label.
pub const MAX_RAYCLUSTER_NAME_LENGTH: usize = 53;

/// Annotation that turns on GCS fault tolerance the old way.
pub const FT_ENABLED_ANNOTATION: &str = "ray.io/ft-enabled";
/// Annotation naming the external storage namespace the old way.
pub const EXTERNAL_STORAGE_NAMESPACE_ANNOTATION: &str = "ray.io/external-storage-namespace";
/// Label naming the kind that created a RayCluster (RayJob, RayService).
pub const ORIGINATED_FROM_CRD_LABEL: &str = "ray.io/originated-from-crd";

pub(crate) const ENABLE_AUTOSCALER_V2_ENV: &str = "RAY_enable_autoscaler_v2";

/// The first Ray release whose autoscaler v2 runs on KubeRay.
const AUTOSCALER_V2_MIN_RAY: (u64, u64, u64) = (2, 10, 0);

/// What a cluster spec is validated against besides itself.
pub(crate) struct ClusterContext<'a> {
    /// Path of the spec: `spec`, `spec.rayClusterSpec`, ...
    pub path: &'a str,
    /// Annotations of the object that carries the spec.
    pub annotations: &'a BTreeMap<String, String>,
    pub gates: &'a FeatureGates,
}

/// Validates a RayCluster's name and spec.
pub fn validate_raycluster(rc: &RayCluster, gates: &FeatureGates) -> Result<(), Invalid> {
    let mut errs = Errors::default();
    let name = rc.metadata.name.as_deref().unwrap_or_default();
    object_name(&mut errs, "RayCluster", name, MAX_RAYCLUSTER_NAME_LENGTH);
    let empty = BTreeMap::new();
    let annotations = rc.metadata.annotations.as_ref().unwrap_or(&empty);
    let ctx = ClusterContext {
        path: "spec",
        annotations,
        gates,
    };
    cluster_spec(&mut errs, &rc.spec, &ctx);
    if rc
        .spec
        .upgrade_strategy
        .as_ref()
        .and_then(|u| u.type_.as_ref())
        .is_some()
    {
        let creator = rc
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ORIGINATED_FROM_CRD_LABEL))
            .filter(|k| matches!(k.as_str(), "RayJob" | "RayService"));
        if let Some(kind) = creator {
            errs.add(
                "spec.upgradeStrategy",
                format!("must not be set on a RayCluster created by a {kind}; the {kind} decides how its cluster is replaced"),
            );
        }
    }
    errs.into_result()
}

/// The status conditions a RayCluster may never have together.
pub fn validate_raycluster_status(rc: &RayCluster) -> Result<(), Invalid> {
    let mut errs = Errors::default();
    let is_true = |t: &str| {
        rc.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == t && c.status == "True"))
    };
    if is_true("RayClusterSuspending") && is_true("RayClusterSuspended") {
        errs.add(
            "status.conditions",
            "RayClusterSuspending and RayClusterSuspended are both True",
        );
    }
    errs.into_result()
}

/// The length and DNS-1035 rules of an object whose name becomes part of
/// generated names.
pub(crate) fn object_name(errs: &mut Errors, kind: &str, name: &str, max: usize) {
    // A manifest with only `generateName` gets its name from the API
    // server; the operator always sees the assigned one.
    if name.is_empty() {
        return;
    }
    if name.len() > max {
        errs.add(
            "metadata.name",
            format!(
                "{name:?} has {} characters; a {kind} name may have at most {max} so that the names generated from it stay within 63",
                name.len()
            ),
        );
    } else if let Some(p) = dns1035_label_problem(name) {
        errs.add("metadata.name", format!("must be a DNS-1035 label: {p}"));
    }
}

pub(crate) fn is_autoscaling_enabled(spec: &RayClusterSpec) -> bool {
    spec.enable_in_tree_autoscaling == Some(true)
}

/// Whether the Ray autoscaler v2 runs: asked for in `autoscalerOptions`, or
/// the old way through the head's environment.
pub(crate) fn is_autoscaler_v2(spec: &RayClusterSpec) -> bool {
    use crate::raycluster::AutoscalerVersion;
    let by_option = spec
        .autoscaler_options
        .as_ref()
        .and_then(|o| o.version.as_ref())
        == Some(&AutoscalerVersion::V2);
    let by_env = head_container(spec)
        .and_then(|c| env_var(c, ENABLE_AUTOSCALER_V2_ENV))
        .and_then(|e| e.value.as_deref())
        .is_some_and(|v| v == "1" || v == "true");
    by_option || by_env
}

pub(crate) fn head_container(
    spec: &RayClusterSpec,
) -> Option<&k8s_openapi::api::core::v1::Container> {
    first_container(&spec.head_group_spec.template)
}

pub(crate) fn first_container(
    t: &PodTemplateSpec,
) -> Option<&k8s_openapi::api::core::v1::Container> {
    t.spec.as_ref()?.containers.first()
}

/// Every rule on a cluster spec, wherever it is embedded.
pub(crate) fn cluster_spec(errs: &mut Errors, spec: &RayClusterSpec, ctx: &ClusterContext) {
    let p = ctx.path;
    let head = &spec.head_group_spec;
    if head_container(spec).is_none() {
        errs.add(
            format!("{p}.headGroupSpec.template.spec.containers"),
            "at least one container is required; the first one runs Ray",
        );
    }
    group_params(
        errs,
        &format!("{p}.headGroupSpec"),
        head.ray_start_params.as_ref(),
        head.resources.as_ref(),
        head.labels.as_ref(),
    );
    if let Some(m) = &spec.managed_by
        && m != MANAGED_BY_KUBERAY
        && m != MANAGED_BY_MULTIKUEUE
    {
        errs.add(
            format!("{p}.managedBy"),
            format!(
                "{m:?} is not supported; use {MANAGED_BY_KUBERAY:?} or {MANAGED_BY_MULTIKUEUE:?}"
            ),
        );
    }
    check_known(
        errs,
        &format!("{p}.upgradeStrategy.type"),
        spec.upgrade_strategy
            .as_ref()
            .and_then(|u| u.type_.as_ref()),
    );
    if let Some(i) = &head.ingress_options {
        check_known(
            errs,
            &format!("{p}.headGroupSpec.ingressOptions.pathType"),
            i.path_type.as_ref(),
        );
    }
    worker_groups(errs, spec, ctx);
    autoscaling(errs, spec, ctx);
    cluster_options::gcs_fault_tolerance(errs, spec, ctx);
    cluster_options::auth(errs, spec, p);
    cluster_options::history_server(errs, spec, ctx);
    cluster_options::network_policy(errs, spec, ctx);
    cluster_options::tls(errs, spec, ctx);
}

/// `rayStartParams` must not also carry what `resources` or `labels` say.
fn group_params(
    errs: &mut Errors,
    path: &str,
    params: Option<&BTreeMap<String, String>>,
    resources: Option<&BTreeMap<String, String>>,
    labels: Option<&BTreeMap<String, String>>,
) {
    let empty = BTreeMap::new();
    let params = params.unwrap_or(&empty);
    if resources.is_some_and(|r| !r.is_empty()) {
        let clash: Vec<&str> = ["num-cpus", "num-gpus", "memory", "resources"]
            .into_iter()
            .filter(|k| params.get(*k).is_some_and(|v| !v.is_empty()))
            .collect();
        if !clash.is_empty() {
            errs.add(
                format!("{path}.resources"),
                format!(
                    "cannot be combined with rayStartParams {}; set resources in one place only",
                    clash.join(", ")
                ),
            );
        }
    }
    if params.contains_key("labels") {
        errs.add(
            format!("{path}.rayStartParams.labels"),
            "is not supported; use the group's `labels` field instead",
        );
    }
    for (k, v) in labels.unwrap_or(&empty) {
        if let Some(problem) = label_key_problem(k) {
            errs.add(
                format!("{path}.labels[{k:?}]"),
                format!("invalid label key: {problem}"),
            );
        }
        if let Some(problem) = label_value_problem(v) {
            errs.add(
                format!("{path}.labels[{k:?}]"),
                format!("invalid label value: {problem}"),
            );
        }
    }
}

fn worker_groups(errs: &mut Errors, spec: &RayClusterSpec, ctx: &ClusterContext) {
    let p = ctx.path;
    let autoscaling = is_autoscaling_enabled(spec);
    let mut seen: HashMap<&str, usize> = HashMap::new();
    for (i, wg) in spec.worker_group_specs.iter().flatten().enumerate() {
        let gp = format!("{p}.workerGroupSpecs[{i}]");
        if wg.group_name.is_empty() {
            errs.add(format!("{gp}.groupName"), "must not be empty");
        } else if let Some(first) = seen.insert(&wg.group_name, i) {
            errs.add(
                format!("{gp}.groupName"),
                format!("{:?} is already the name of workerGroupSpecs[{first}]; group names must be unique", wg.group_name),
            );
            seen.insert(&wg.group_name, first);
        }
        if first_container(&wg.template).is_none() {
            errs.add(
                format!("{gp}.template.spec.containers"),
                "at least one container is required; the first one runs Ray",
            );
        }
        replica_bounds(errs, &gp, wg, autoscaling);
        group_params(
            errs,
            &gp,
            wg.ray_start_params.as_ref(),
            wg.resources.as_ref(),
            wg.labels.as_ref(),
        );
        if let Some(t) = wg.idle_timeout_seconds {
            if t < 0 {
                errs.add(
                    format!("{gp}.idleTimeoutSeconds"),
                    format!("{t} is negative"),
                );
            } else if !is_autoscaler_v2(spec) {
                errs.add(
                    format!("{gp}.idleTimeoutSeconds"),
                    "needs the Ray autoscaler v2; set spec.autoscalerOptions.version to v2",
                );
            }
        }
        if let Some(prio) = wg.priority.filter(|p| *p != 0) {
            cluster_options::require_ray_version(
                errs,
                spec,
                &format!("{gp}.priority"),
                (2, 56, 0),
                "a worker group priority",
            );
            if !is_autoscaler_v2(spec) {
                errs.add(
                    format!("{gp}.priority"),
                    format!("is {prio}, but priorities need the Ray autoscaler v2; set spec.autoscalerOptions.version to v2"),
                );
            }
        }
        if wg.suspend == Some(true) {
            if !ctx.gates.enabled(RAY_JOB_DELETION_POLICY) {
                errs.add(
                    format!("{gp}.suspend"),
                    format!("needs the {RAY_JOB_DELETION_POLICY} feature gate"),
                );
            }
            if autoscaling {
                errs.add(
                    format!("{gp}.suspend"),
                    "a worker group cannot be suspended while the autoscaler manages it",
                );
            }
        }
    }
}

fn replica_bounds(errs: &mut Errors, gp: &str, wg: &WorkerGroupSpec, autoscaling: bool) {
    if !autoscaling && (wg.min_replicas.is_none() || wg.max_replicas.is_none()) {
        errs.add(
            gp.to_string(),
            "minReplicas and maxReplicas must both be set when autoscaling is off",
        );
    }
    if let Some(min) = wg.min_replicas.filter(|m| *m < 0) {
        errs.add(format!("{gp}.minReplicas"), format!("{min} is negative"));
    }
    if let Some(max) = wg.max_replicas.filter(|m| *m < 0) {
        errs.add(format!("{gp}.maxReplicas"), format!("{max} is negative"));
    }
    if let (Some(min), Some(max)) = (wg.min_replicas, wg.max_replicas)
        && min >= 0
        && max >= 0
        && min > max
    {
        errs.add(
            format!("{gp}.minReplicas"),
            format!("{min} is greater than maxReplicas ({max})"),
        );
    }
    if let Some(n) = wg.num_of_hosts.filter(|n| *n < 1) {
        errs.add(
            format!("{gp}.numOfHosts"),
            format!("{n} is less than 1; every replica needs at least one pod"),
        );
    }
}

fn autoscaling(errs: &mut Errors, spec: &RayClusterSpec, ctx: &ClusterContext) {
    let p = ctx.path;
    let head_env = head_container(spec).and_then(|c| env_var(c, ENABLE_AUTOSCALER_V2_ENV));
    if !is_autoscaling_enabled(spec) {
        if let Some(v) = head_env
            .and_then(|e| e.value.as_deref())
            .filter(|v| *v == "1" || *v == "true")
        {
            errs.add(
                format!("{p}.headGroupSpec.template.spec.containers[0].env"),
                format!("{ENABLE_AUTOSCALER_V2_ENV}={v} needs enableInTreeAutoscaling: true"),
            );
        }
    } else {
        let opts = spec.autoscaler_options.as_ref();
        if opts.and_then(|o| o.version.as_ref()).is_some() && head_env.is_some() {
            errs.add(
                format!("{p}.autoscalerOptions.version"),
                format!("cannot be combined with the head's {ENABLE_AUTOSCALER_V2_ENV} env var; use only autoscalerOptions.version"),
            );
        }
        if is_autoscaler_v2(spec) {
            // Beyond KubeRay, which starts a v2 sidecar that cannot work:
            // Ray has the v2 autoscaler for KubeRay since 2.10.0. An unset
            // or unparsable rayVersion says nothing and is let through.
            if let Some(v) = spec.ray_version.as_deref()
                && parse_ray_version(v).is_some_and(|have| have < AUTOSCALER_V2_MIN_RAY)
            {
                let (a, b, c) = AUTOSCALER_V2_MIN_RAY;
                errs.add(
                    format!("{p}.rayVersion"),
                    format!("is {v}, but the Ray autoscaler v2 needs Ray {a}.{b}.{c} or later; use autoscaler v1 or a newer Ray"),
                );
            }
            let not_never = |t: &PodTemplateSpec| {
                t.spec
                    .as_ref()
                    .and_then(|s| s.restart_policy.as_deref())
                    .is_some_and(|r| !r.is_empty() && r != "Never")
            };
            if not_never(&spec.head_group_spec.template) {
                errs.add(
                    format!("{p}.headGroupSpec.template.spec.restartPolicy"),
                    "must be Never or unset with the Ray autoscaler v2",
                );
            }
            for (i, wg) in spec.worker_group_specs.iter().flatten().enumerate() {
                if not_never(&wg.template) {
                    errs.add(
                        format!("{p}.workerGroupSpecs[{i}].template.spec.restartPolicy"),
                        "must be Never or unset with the Ray autoscaler v2",
                    );
                }
            }
        }
    }
    if let Some(o) = &spec.autoscaler_options {
        check_known(
            errs,
            &format!("{p}.autoscalerOptions.version"),
            o.version.as_ref(),
        );
        check_known(
            errs,
            &format!("{p}.autoscalerOptions.upscalingMode"),
            o.upscaling_mode.as_ref(),
        );
        if let Some(t) = o.idle_timeout_seconds.filter(|t| *t < 0) {
            errs.add(
                format!("{p}.autoscalerOptions.idleTimeoutSeconds"),
                format!("{t} is negative"),
            );
        }
        if o.env
            .iter()
            .flatten()
            .any(|e| e.name == "KUBERAY_GEN_AUTOSCALER_START_CMD")
        {
            errs.add(
                format!("{p}.autoscalerOptions.env"),
                "must not set KUBERAY_GEN_AUTOSCALER_START_CMD; the operator generates it",
            );
        }
    }
}
