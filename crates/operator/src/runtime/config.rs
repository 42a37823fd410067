//! Operator-wide settings: the environment variables KubeRay reads (with
//! KubeRay's names and defaults) and the feature gates. Built once at start;
//! builders and controllers read it, never the environment directly, so tests
//! can set any combination.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Container, EnvVar};

use kuberay_api::features::FeatureGates;

/// The version written to pods (`ray.io/kuberay-version`) and to Ray's usage
/// tags. Differs from every Go release on purpose: a head pod made by the Go
/// operator is recognised as foreign and only re-annotated, never recreated,
/// when this operator takes over (see the Recreate upgrade).
pub const KUBERAY_VERSION: &str = concat!("v1.7.0-rs.", env!("CARGO_PKG_VERSION"));

#[derive(Clone, Debug)]
pub struct Config {
    /// `CLUSTER_DOMAIN`: the DNS domain of services.
    pub cluster_domain: String,
    /// `ENABLE_PROBES_INJECTION` (default true).
    pub probes_injection: bool,
    /// `ENABLE_INIT_CONTAINER_INJECTION` (default true).
    pub init_container_injection: bool,
    /// `ENABLE_RANDOM_POD_DELETE`: let the operator pick workers to remove
    /// when the autoscaler is on (default false).
    pub random_pod_delete: bool,
    /// `ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE`: give the head service a cluster
    /// IP instead of making it headless (default false).
    pub head_cluster_ip_service: bool,
    /// `ENABLE_LOGIN_SHELL`: run Ray under `bash -l` (default false).
    pub login_shell: bool,
    /// `ENABLE_DETERMINISTIC_HEAD_POD_NAME`: name the head `<cluster>-head`.
    pub deterministic_head_pod_name: bool,
    /// `RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV`: periodic resync of a healthy cluster.
    pub resync: Duration,
    pub gates: FeatureGates,
    /// Configuration file: containers added to every head / worker pod.
    pub head_sidecars: Vec<Container>,
    pub worker_sidecars: Vec<Container>,
    /// Configuration file: env vars every Ray container gets unless it sets them.
    pub default_envs: Vec<EnvVar>,
    /// Configuration file: labels and annotations of every Ray pod, where
    /// the pod template does not set them.
    pub default_pod_labels: BTreeMap<String, String>,
    pub default_pod_annotations: BTreeMap<String, String>,
    /// `DELETE_RAYJOB_CR_AFTER_JOB_FINISHES`: delete a finished RayJob itself.
    pub delete_rayjob_after_finish: bool,
    /// `RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS`: how long a
    /// RayJob may stay Running after Ray reported its job finished.
    pub job_transition_grace: Duration,
    /// `RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS`: how long the dashboard may
    /// fail to answer before the RayJob fails.
    pub job_status_check_timeout: Duration,
    /// `POD_NAME`: this replica, the reporting instance of its events.
    pub instance: String,
    /// The operator's own time zone (`TZ`, else the system's): the zone of
    /// a RayCronJob schedule without `timeZone`.
    pub local_time_zone: jiff::tz::TimeZone,
    /// RayService upgrades by a new cluster unless `upgradeStrategy` says
    /// otherwise (`ENABLE_ZERO_DOWNTIME`, true unless "false").
    pub zero_downtime: bool,
    /// Clusters with Redis-backed GCS fault tolerance get the clean-up
    /// finalizer and Job (`ENABLE_GCS_FT_REDIS_CLEANUP`, true unless "false").
    pub redis_cleanup: bool,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            cluster_domain: "cluster.local".into(),
            probes_injection: true,
            init_container_injection: true,
            random_pod_delete: false,
            head_cluster_ip_service: false,
            login_shell: false,
            deterministic_head_pod_name: false,
            resync: Duration::from_secs(300),
            gates: FeatureGates::default(),
            head_sidecars: Vec::new(),
            worker_sidecars: Vec::new(),
            default_envs: Vec::new(),
            default_pod_labels: BTreeMap::new(),
            default_pod_annotations: BTreeMap::new(),
            delete_rayjob_after_finish: false,
            job_transition_grace: Duration::from_secs(300),
            job_status_check_timeout: Duration::from_secs(300),
            instance: "kuberay-operator".into(),
            local_time_zone: jiff::tz::TimeZone::UTC,
            zero_downtime: true,
            redis_cleanup: true,
        }
    }
}

impl Config {
    /// Reads KubeRay's environment variables through `get`; malformed values
    /// are errors naming the variable.
    pub fn from_env(get: impl Fn(&str) -> Option<String>) -> Result<Self, String> {
        let mut c = Self::default();
        let flag = |name: &str, default: bool| -> bool {
            match get(name) {
                None => default,
                Some(v) if default => !v.eq_ignore_ascii_case("false"),
                Some(v) => v.eq_ignore_ascii_case("true"),
            }
        };
        if let Some(d) = get("CLUSTER_DOMAIN").filter(|d| !d.is_empty()) {
            c.cluster_domain = d;
        }
        c.probes_injection = flag("ENABLE_PROBES_INJECTION", true);
        c.init_container_injection = flag("ENABLE_INIT_CONTAINER_INJECTION", true);
        c.random_pod_delete = flag("ENABLE_RANDOM_POD_DELETE", false);
        c.head_cluster_ip_service = flag("ENABLE_RAY_HEAD_CLUSTER_IP_SERVICE", false);
        c.login_shell = flag("ENABLE_LOGIN_SHELL", false);
        c.deterministic_head_pod_name = flag("ENABLE_DETERMINISTIC_HEAD_POD_NAME", false);
        c.zero_downtime = flag("ENABLE_ZERO_DOWNTIME", true);
        c.redis_cleanup = flag("ENABLE_GCS_FT_REDIS_CLEANUP", true);
        // Like KubeRay, anything but a positive number keeps the default.
        let seconds = |name: &str, default: Duration| {
            get(name)
                .and_then(|v| v.parse::<u64>().ok())
                .filter(|v| *v > 0)
                .map_or(default, Duration::from_secs)
        };
        c.job_transition_grace = seconds(
            "RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS",
            c.job_transition_grace,
        );
        c.job_status_check_timeout = seconds(
            "RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS",
            c.job_status_check_timeout,
        );
        if let Some(name) = get("POD_NAME").filter(|n| !n.is_empty()) {
            c.instance = name;
        }
        if let Some(s) = get("RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV") {
            let secs: u64 = s.parse().map_err(|_| {
                format!("RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV={s:?} is not a number of seconds")
            })?;
            c.resync = Duration::from_secs(secs.max(1));
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_kuberay_env_vars_with_their_defaults() {
        let c = Config::from_env(|k| match k {
            "ENABLE_PROBES_INJECTION" => Some("FALSE".into()),
            "ENABLE_RANDOM_POD_DELETE" => Some("true".into()),
            "ENABLE_GCS_FT_REDIS_CLEANUP" => Some("False".into()),
            "CLUSTER_DOMAIN" => Some("corp.local".into()),
            _ => None,
        })
        .unwrap();
        assert!(!c.probes_injection);
        assert!(c.init_container_injection);
        assert!(c.random_pod_delete);
        assert!(!c.redis_cleanup);
        assert_eq!(c.cluster_domain, "corp.local");
        let c = Config::from_env(|k| match k {
            "RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS" => Some("20".into()),
            "RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS" => Some("-1".into()),
            "POD_NAME" => Some("op-1".into()),
            _ => None,
        })
        .unwrap();
        assert_eq!(c.job_status_check_timeout, Duration::from_secs(20));
        assert_eq!(c.job_transition_grace, Duration::from_secs(300));
        assert_eq!(c.instance, "op-1");
        let bad = Config::from_env(|k| {
            (k == "RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV").then(|| "soon".into())
        });
        assert!(
            bad.unwrap_err()
                .contains("RAYCLUSTER_DEFAULT_REQUEUE_SECONDS_ENV")
        );
    }
}
