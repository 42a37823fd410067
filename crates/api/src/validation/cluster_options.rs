//! Rules for a cluster's optional features: GCS fault tolerance, auth, the
//! history server collector, network policies and TLS.

use super::raycluster::{
    ClusterContext, EXTERNAL_STORAGE_NAMESPACE_ANNOTATION, FT_ENABLED_ANNOTATION, first_container,
    head_container,
};
use super::{Errors, check_known, dns1123_label_problem, env_var, parse_ray_version};
use crate::features::{
    GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE, RAY_CLUSTER_HISTORY_SERVER, RAY_CLUSTER_MTLS,
    RAY_CLUSTER_NETWORK_POLICY,
};
use crate::names::{
    GCS_FT_DELETION_TIMEOUT_ANNOTATION, GCS_STORAGE_MOUNT_PATH, GCS_STORAGE_VOLUME,
};
use crate::raycluster::{AuthMode, GcsBackend, NetworkPolicyMode, RayClusterSpec};

/// Environment variables the operator sets for GCS fault tolerance.
const REDIS_ADDRESS_ENV: &str = "RAY_REDIS_ADDRESS";
const REDIS_PASSWORD_ENV: &str = "REDIS_PASSWORD";
const REDIS_USERNAME_ENV: &str = "REDIS_USERNAME";
const GCS_STORAGE_ENVS: [&str; 2] = ["RAY_gcs_storage", "RAY_gcs_storage_path"];
/// Environment variables the operator sets when TLS is on.
const TLS_ENVS: [&str; 4] = [
    "RAY_USE_TLS",
    "RAY_TLS_SERVER_CERT",
    "RAY_TLS_SERVER_KEY",
    "RAY_TLS_CA_CERT",
];

/// Errors unless the cluster's `rayVersion` is at least `min`.
pub(crate) fn require_ray_version(
    errs: &mut Errors,
    spec: &RayClusterSpec,
    field: &str,
    min: (u64, u64, u64),
    what: &str,
) {
    let want = format!("{}.{}.{}", min.0, min.1, min.2);
    match spec.ray_version.as_deref().filter(|v| !v.is_empty()) {
        None => errs.add(
            field,
            format!("{what} needs Ray {want} or later, but rayVersion is not set"),
        ),
        Some(v) => match parse_ray_version(v) {
            None => errs.add(
                field,
                format!("{what} needs Ray {want} or later, but rayVersion {v:?} is not a version"),
            ),
            Some(have) if have < min => errs.add(
                field,
                format!("{what} needs Ray {want} or later, but rayVersion is {v}"),
            ),
            Some(_) => {}
        },
    }
}

/// The cluster's `rayVersion` when it is set, readable, and older than
/// `min`. Unlike [`require_ray_version`], an unset version passes: KubeRay
/// never required one for GCS fault tolerance.
fn older_than(spec: &RayClusterSpec, min: (u64, u64, u64)) -> Option<&str> {
    let v = spec.ray_version.as_deref()?;
    parse_ray_version(v).filter(|have| *have < min).map(|_| v)
}

/// Ray reads its GCS storage from `RAY_REDIS_ADDRESS` since 2.0.
const GCS_FT_MIN_RAY: (u64, u64, u64) = (2, 0, 0);
/// `ray start --redis-username` exists since Ray 2.41.
const REDIS_USERNAME_MIN_RAY: (u64, u64, u64) = (2, 41, 0);
/// The GCS of older Ray exits on `RAY_gcs_storage=rocksdb` ("Unsupported
/// GCS storage type"); KubeRay's sample of the embedded store uses 2.57.
const ROCKSDB_MIN_RAY: (u64, u64, u64) = (2, 57, 0);

pub(crate) fn gcs_fault_tolerance(errs: &mut Errors, spec: &RayClusterSpec, ctx: &ClusterContext) {
    let p = ctx.path;
    let head = &spec.head_group_spec;
    let head_c = head_container(spec);
    let head_env = |name: &str| head_c.and_then(|c| env_var(c, name)).is_some();
    let env_path = format!("{p}.headGroupSpec.template.spec.containers[0].env");
    let annotation = ctx.annotations.get(FT_ENABLED_ANNOTATION);
    let params = head.ray_start_params.as_ref();
    let param = |k: &str| params.and_then(|m| m.get(k)).is_some_and(|v| !v.is_empty());

    // KubeRay falls back to its default on a bad value, so a typo would
    // silently keep a deleted cluster 5 minutes instead of the 5 hours meant.
    if let Some(v) = ctx.annotations.get(GCS_FT_DELETION_TIMEOUT_ANNOTATION)
        && !v.trim().parse::<u32>().is_ok_and(|s| s > 0)
    {
        errs.add(
            format!("metadata.annotations[{GCS_FT_DELETION_TIMEOUT_ANNOTATION:?}]"),
            format!("{v:?} is not a positive whole number of seconds"),
        );
    }
    let enabled = spec.gcs_fault_tolerance_options.is_some()
        || annotation.is_some_and(|v| v.eq_ignore_ascii_case("true"));
    if enabled && let Some(v) = older_than(spec, GCS_FT_MIN_RAY) {
        errs.add(
            format!("{p}.rayVersion"),
            format!("GCS fault tolerance needs Ray 2.0.0 or later, but rayVersion is {v}"),
        );
    }

    if param("redis-username") || head_env(REDIS_USERNAME_ENV) {
        errs.add(
            format!("{p}.headGroupSpec"),
            format!("set the Redis username in {p}.gcsFaultToleranceOptions.redisUsername, not in rayStartParams or {REDIS_USERNAME_ENV}"),
        );
    }
    let Some(opts) = &spec.gcs_fault_tolerance_options else {
        let enabled = annotation.is_some_and(|v| v.eq_ignore_ascii_case("true"));
        if !enabled && head_env(REDIS_ADDRESS_ENV) {
            errs.add(
                env_path,
                format!("{REDIS_ADDRESS_ENV} turns on GCS fault tolerance implicitly; set {p}.gcsFaultToleranceOptions instead"),
            );
        }
        return;
    };
    let op = format!("{p}.gcsFaultToleranceOptions");
    if opts.redis_username.is_some()
        && let Some(v) = older_than(spec, REDIS_USERNAME_MIN_RAY)
    {
        errs.add(
            format!("{op}.redisUsername"),
            format!(
                "needs Ray 2.41.0 or later (ray start --redis-username), but rayVersion is {v}"
            ),
        );
    }
    if annotation.is_some_and(|v| !v.is_empty()) {
        errs.add(
            format!("metadata.annotations[{FT_ENABLED_ANNOTATION:?}]"),
            format!("cannot be combined with {op}; use only gcsFaultToleranceOptions"),
        );
    }
    if param("redis-password") {
        errs.add(
            format!("{p}.headGroupSpec.rayStartParams.redis-password"),
            format!("use {op}.redisPassword instead"),
        );
    }
    if head_env(REDIS_PASSWORD_ENV) {
        errs.add(
            env_path.clone(),
            format!("{REDIS_PASSWORD_ENV} conflicts with {op}; use {op}.redisPassword"),
        );
    }
    if head_env(REDIS_ADDRESS_ENV) {
        errs.add(
            env_path.clone(),
            format!("{REDIS_ADDRESS_ENV} conflicts with {op}; use {op}.redisAddress"),
        );
    }
    if ctx
        .annotations
        .get(EXTERNAL_STORAGE_NAMESPACE_ANNOTATION)
        .is_some_and(|v| !v.is_empty())
    {
        errs.add(
            format!("metadata.annotations[{EXTERNAL_STORAGE_NAMESPACE_ANNOTATION:?}]"),
            format!("conflicts with {op}; use {op}.externalStorageNamespace"),
        );
    }
    check_known(errs, &format!("{op}.backend"), opts.backend.as_ref());
    if let Some(s) = &opts.storage {
        check_known(
            errs,
            &format!("{op}.storage.deletionPolicy"),
            s.deletion_policy.as_ref(),
        );
    }
    match opts.backend.as_ref().unwrap_or(&GcsBackend::Redis) {
        GcsBackend::Rocksdb => {
            if let Some(v) = older_than(spec, ROCKSDB_MIN_RAY) {
                errs.add(
                    format!("{p}.rayVersion"),
                    format!("the embedded rocksdb GCS store needs Ray 2.57.0 or later, but rayVersion is {v}"),
                );
            }
            if !ctx.gates.enabled(GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE) {
                errs.add(
                    format!("{op}.backend"),
                    format!(
                        "rocksdb needs the {GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE} feature gate"
                    ),
                );
            }
            let redis_fields = [
                (
                    "redisAddress",
                    opts.redis_address.as_ref().is_some_and(|a| !a.is_empty()),
                ),
                ("redisUsername", opts.redis_username.is_some()),
                ("redisPassword", opts.redis_password.is_some()),
                (
                    "externalStorageNamespace",
                    opts.external_storage_namespace
                        .as_ref()
                        .is_some_and(|n| !n.is_empty()),
                ),
            ];
            for (field, set) in redis_fields {
                if set {
                    errs.add(
                        format!("{op}.{field}"),
                        "applies only to the redis backend, not rocksdb",
                    );
                }
            }
            if let Some(s) = &opts.storage
                && s.claim_name.as_ref().is_some_and(|c| !c.is_empty())
                && (s.size.is_some() || s.storage_class_name.is_some() || s.access_modes.is_some())
            {
                errs.add(format!("{op}.storage.claimName"), "an existing claim cannot be combined with size, storageClassName or accessModes");
            }
            for env in GCS_STORAGE_ENVS {
                if head_env(env) {
                    errs.add(
                        env_path.clone(),
                        format!("{env} is set by the operator for the rocksdb backend"),
                    );
                }
            }
            if let Some(c) = head_c
                && c.volume_mounts
                    .iter()
                    .flatten()
                    .any(|m| m.mount_path == GCS_STORAGE_MOUNT_PATH || m.name == GCS_STORAGE_VOLUME)
            {
                errs.add(
                    format!("{p}.headGroupSpec.template.spec.containers[0].volumeMounts"),
                    format!("the volume {GCS_STORAGE_VOLUME:?} at {GCS_STORAGE_MOUNT_PATH} is managed by the operator for the rocksdb backend"),
                );
            }
            let volumes = head.template.spec.as_ref().and_then(|s| s.volumes.as_ref());
            if volumes.is_some_and(|vs| vs.iter().any(|v| v.name == GCS_STORAGE_VOLUME)) {
                errs.add(
                    format!("{p}.headGroupSpec.template.spec.volumes"),
                    format!("the volume {GCS_STORAGE_VOLUME:?} is managed by the operator for the rocksdb backend"),
                );
            }
        }
        _ => {
            if opts.storage.is_some() {
                errs.add(
                    format!("{op}.storage"),
                    "applies only to the rocksdb backend, not redis",
                );
            }
        }
    }
}

pub(crate) fn auth(errs: &mut Errors, spec: &RayClusterSpec, p: &str) {
    let Some(a) = &spec.auth_options else { return };
    check_known(errs, &format!("{p}.authOptions.mode"), a.mode.as_ref());
    let k8s_auth = a.enable_k8s_token_auth == Some(true);
    if a.mode == Some(AuthMode::Token) {
        require_ray_version(
            errs,
            spec,
            &format!("{p}.authOptions.mode"),
            (2, 52, 0),
            "token authentication",
        );
        if k8s_auth {
            require_ray_version(
                errs,
                spec,
                &format!("{p}.authOptions.enableK8sTokenAuth"),
                (2, 55, 0),
                "Kubernetes token authentication",
            );
            if a.secret_name.as_ref().is_some_and(|s| !s.is_empty()) {
                errs.add(
                    format!("{p}.authOptions.secretName"),
                    "cannot be combined with enableK8sTokenAuth",
                );
            }
        }
    } else if k8s_auth {
        errs.add(
            format!("{p}.authOptions.enableK8sTokenAuth"),
            "needs authOptions.mode: token",
        );
    }
}

pub(crate) fn history_server(errs: &mut Errors, spec: &RayClusterSpec, ctx: &ClusterContext) {
    let Some(h) = &spec.history_server_options else {
        return;
    };
    let hp = format!("{}.historyServerOptions", ctx.path);
    if !ctx.gates.enabled(RAY_CLUSTER_HISTORY_SERVER) {
        errs.add(
            hp.clone(),
            format!("needs the {RAY_CLUSTER_HISTORY_SERVER} feature gate"),
        );
    }
    match &h.collector_options {
        None => errs.add(format!("{hp}.collectorOptions"), "must be set"),
        Some(c) if c.image.as_ref().is_none_or(|i| i.is_empty()) => {
            errs.add(format!("{hp}.collectorOptions.image"), "must be set")
        }
        Some(_) => {}
    }
}

pub(crate) fn network_policy(errs: &mut Errors, spec: &RayClusterSpec, ctx: &ClusterContext) {
    let Some(np) = &spec.network_policy else {
        return;
    };
    let p = format!("{}.networkPolicy", ctx.path);
    if !ctx.gates.enabled(RAY_CLUSTER_NETWORK_POLICY) {
        errs.add(
            p.clone(),
            format!("needs the {RAY_CLUSTER_NETWORK_POLICY} feature gate"),
        );
    }
    check_known(errs, &format!("{p}.mode"), np.mode.as_ref());
    let mode = np.mode.clone().unwrap_or(NetworkPolicyMode::DenyAll);
    // Rules only make sense for the direction the mode restricts.
    let check = |errs: &mut Errors, at: &str, ingress: bool, egress: bool| {
        if ingress && mode == NetworkPolicyMode::DenyAllEgress {
            errs.add(format!("{at}.ingressRules"), "ingress is not restricted in mode DenyAllEgress; remove these rules or change the mode");
        }
        if egress && mode == NetworkPolicyMode::DenyAllIngress {
            errs.add(format!("{at}.egressRules"), "egress is not restricted in mode DenyAllIngress; remove these rules or change the mode");
        }
    };
    if let Some(h) = &np.head {
        check(
            errs,
            &format!("{p}.head"),
            has(&h.ingress_rules),
            has(&h.egress_rules),
        );
    }
    if let Some(w) = &np.worker {
        check(
            errs,
            &format!("{p}.worker"),
            has(&w.ingress_rules),
            has(&w.egress_rules),
        );
    }
    let groups: Vec<&str> = spec
        .worker_group_specs
        .iter()
        .flatten()
        .map(|g| g.group_name.as_str())
        .collect();
    for (i, g) in groups.iter().enumerate() {
        if let Some(problem) = dns1123_label_problem(g) {
            errs.add(
                format!("{}.workerGroupSpecs[{i}].groupName", ctx.path),
                format!("must be a DNS-1123 label when networkPolicy is set (it is part of the NetworkPolicy's name): {problem}"),
            );
        }
    }
    for (i, wg) in np.worker_groups.iter().flatten().enumerate() {
        let at = format!("{p}.workerGroups[{i}]");
        check(errs, &at, has(&wg.ingress_rules), has(&wg.egress_rules));
        if !groups.contains(&wg.group_name.as_str()) {
            errs.add(
                format!("{at}.groupName"),
                format!("{:?} is not the name of any worker group", wg.group_name),
            );
        }
    }
}

fn has<T>(v: &Option<Vec<T>>) -> bool {
    v.as_ref().is_some_and(|r| !r.is_empty())
}

pub(crate) fn tls(errs: &mut Errors, spec: &RayClusterSpec, ctx: &ClusterContext) {
    let Some(t) = &spec.tls_options else { return };
    let p = ctx.path;
    if !ctx.gates.enabled(RAY_CLUSTER_MTLS) {
        errs.add(
            format!("{p}.tlsOptions"),
            format!("needs the {RAY_CLUSTER_MTLS} feature gate"),
        );
    }
    if t.enabled != Some(true) {
        return;
    }
    let mut containers = vec![(
        format!("{p}.headGroupSpec.template.spec.containers[0].env"),
        head_container(spec),
    )];
    for (i, wg) in spec.worker_group_specs.iter().flatten().enumerate() {
        containers.push((
            format!("{p}.workerGroupSpecs[{i}].template.spec.containers[0].env"),
            first_container(&wg.template),
        ));
    }
    for (path, c) in containers {
        for env in TLS_ENVS {
            if c.and_then(|c| env_var(c, env)).is_some() {
                errs.add(
                    path.clone(),
                    format!("{env} is managed by the operator when tlsOptions.enabled is true"),
                );
            }
        }
    }
    if let Some(a) = &spec.autoscaler_options {
        for env in TLS_ENVS {
            if a.env.iter().flatten().any(|e| e.name == env) {
                errs.add(
                    format!("{p}.autoscalerOptions.env"),
                    format!("{env} is managed by the operator when tlsOptions.enabled is true"),
                );
            }
        }
    }
}
