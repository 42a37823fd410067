//! The operator's command line and configuration file, with KubeRay's flag
//! names and defaults (and its controller-runtime logging flags), so the
//! arguments of an existing Deployment or Helm release work unchanged.
//!
//! As in KubeRay, a `--config` file replaces the flags it covers; only
//! `--feature-gates`, the log encoders and the deprecated
//! `--forced-cluster-upgrade` still come from the command line. Unknown flags
//! and unknown configuration fields are errors at start.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{ArgAction, Parser};
use k8s_openapi::api::core::v1::{Container, EnvVar};
use kuberay_api::features::FeatureGates;
use serde::Deserialize;
use std::collections::BTreeMap;

/// Batch schedulers KubeRay accepts.
pub const BATCH_SCHEDULERS: &[&str] =
    &["volcano", "yunikorn", "scheduler-plugins", "kai-scheduler"];

#[derive(Parser, Debug, Clone)]
#[command(
    name = "kuberay-operator",
    version,
    about = "KubeRay operator for Ray on Kubernetes"
)]
pub struct Flags {
    /// The address the metric endpoint binds to ("0" disables it).
    #[arg(long, default_value = ":8080")]
    pub metrics_addr: String,
    /// The address the probe endpoint binds to.
    #[arg(long, default_value = ":8082")]
    pub health_probe_bind_address: String,
    /// Enable leader election, so only one replica reconciles.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set, default_value_t = true)]
    pub enable_leader_election: bool,
    /// Namespace of the leader election Lease; the pod's namespace if unset.
    #[arg(long, default_value = "")]
    pub leader_election_namespace: String,
    /// Objects of one kind reconciled in parallel.
    #[arg(long, default_value_t = 10)]
    pub reconcile_concurrency: u16,
    /// Namespaces to watch, comma-separated; all namespaces when empty.
    #[arg(long, default_value = "")]
    pub watch_namespace: String,
    /// (Deprecated) Has no effect.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub forced_cluster_upgrade: bool,
    /// Also write logs to this file.
    #[arg(long, default_value = "")]
    pub log_file_path: String,
    /// Encoder of the log file: json or console.
    #[arg(long, default_value = "json")]
    pub log_file_encoder: String,
    /// Encoder of stdout logs: json or console.
    #[arg(long, default_value = "json")]
    pub log_stdout_encoder: String,
    /// (Deprecated) Use --batch-scheduler.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub enable_batch_scheduler: bool,
    /// Batch scheduler name: volcano, yunikorn, scheduler-plugins or kai-scheduler.
    #[arg(long, default_value = "")]
    pub batch_scheduler: String,
    /// Path to a Configuration file; flags it covers are then ignored.
    #[arg(long, default_value = "")]
    pub config: String,
    /// Reach Ray heads through the Kubernetes API server's proxy.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub use_kubernetes_proxy: bool,
    /// Feature gates, e.g. RayCronJob=true,RayClusterNetworkPolicy=false.
    #[arg(long, default_value = "")]
    pub feature_gates: String,
    /// Export KubeRay's kuberay_* metrics.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub enable_metrics: bool,
    /// Requests per second to the Kubernetes API server.
    #[arg(long, default_value_t = 100.0)]
    pub qps: f64,
    /// Request burst above --qps.
    #[arg(long, default_value_t = 200)]
    pub burst: u32,
    /// Kubeconfig to use out of cluster (else $KUBECONFIG or in-cluster).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// Log level: debug, info, error, or a number (higher is more verbose).
    #[arg(long, default_value = "info")]
    pub zap_log_level: String,
    /// Development logging: console encoder and debug level.
    #[arg(long, num_args = 0..=1, default_missing_value = "true", action = ArgAction::Set, default_value_t = false)]
    pub zap_devel: bool,
    /// Accepted for compatibility; --log-stdout-encoder decides.
    #[arg(long)]
    pub zap_encoder: Option<String>,
    /// Accepted for compatibility; no effect.
    #[arg(long)]
    pub zap_stacktrace_level: Option<String>,
    /// Accepted for compatibility; times are always ISO 8601.
    #[arg(long)]
    pub zap_time_encoding: Option<String>,
}

/// KubeRay's `config.ray.io/v1alpha1` Configuration.
#[derive(Deserialize, Debug, Default, Clone)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Configuration {
    pub api_version: String,
    pub kind: String,
    pub metrics_addr: Option<String>,
    pub probe_addr: Option<String>,
    pub enable_leader_election: Option<bool>,
    pub leader_election_namespace: Option<String>,
    pub reconcile_concurrency: Option<u16>,
    pub watch_namespace: Option<String>,
    pub log_file: Option<String>,
    pub log_stdout_encoder: Option<String>,
    pub log_file_encoder: Option<String>,
    pub batch_scheduler: Option<String>,
    pub enable_batch_scheduler: Option<bool>,
    pub use_kubernetes_proxy: Option<bool>,
    pub delete_ray_job_after_job_finishes: Option<bool>,
    pub enable_metrics: Option<bool>,
    pub qps: Option<f64>,
    pub burst: Option<u32>,
    pub head_sidecar_containers: Option<Vec<Container>>,
    pub worker_sidecar_containers: Option<Vec<Container>>,
    pub default_container_envs: Option<Vec<EnvVar>>,
    pub default_pod_annotations: Option<BTreeMap<String, String>>,
    pub default_pod_labels: Option<BTreeMap<String, String>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    Json,
    Console,
}

/// Everything the process needs, validated.
#[derive(Debug, Clone)]
pub struct Options {
    pub metrics_addr: Option<SocketAddr>,
    pub probe_addr: Option<SocketAddr>,
    pub leader_election: bool,
    pub leader_election_namespace: String,
    pub concurrency: u16,
    pub watch_namespace: String,
    pub log_file: Option<PathBuf>,
    pub stdout_encoder: Encoder,
    pub file_encoder: Encoder,
    pub log_level: String,
    pub batch_scheduler: Option<String>,
    pub use_kubernetes_proxy: bool,
    pub delete_rayjob_after_finish: bool,
    pub kuberay_metrics: bool,
    pub qps: f64,
    pub burst: u32,
    pub gates: FeatureGates,
    pub kubeconfig: Option<PathBuf>,
    pub head_sidecars: Vec<Container>,
    pub worker_sidecars: Vec<Container>,
    pub default_envs: Vec<EnvVar>,
    pub default_pod_annotations: BTreeMap<String, String>,
    pub default_pod_labels: BTreeMap<String, String>,
}

/// `:8080` (any interface), `host:port`, or `0` (disabled).
pub fn parse_addr(flag: &str, value: &str) -> Result<Option<SocketAddr>, String> {
    if value == "0" {
        return Ok(None);
    }
    let full = if value.starts_with(':') {
        format!("0.0.0.0{value}")
    } else {
        value.to_string()
    };
    full.parse()
        .map(Some)
        .map_err(|_| format!("--{flag}={value:?} is not an address like :8080 or 127.0.0.1:8080"))
}

fn parse_encoder(flag: &str, value: &str) -> Result<Encoder, String> {
    match value {
        "" | "json" => Ok(Encoder::Json),
        "console" => Ok(Encoder::Console),
        other => Err(format!(
            "invalid encoder {other:?} for {flag} (must be 'json' or 'console')"
        )),
    }
}

impl Options {
    /// Validates flags, reading the configuration file through `read` when
    /// `--config` is set.
    pub fn from_flags(
        f: Flags,
        read: impl Fn(&str) -> std::io::Result<String>,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, String> {
        let gates =
            FeatureGates::parse(&f.feature_gates).map_err(|e| format!("--feature-gates: {e}"))?;
        let stdout_encoder = parse_encoder("--log-stdout-encoder", &f.log_stdout_encoder)?;
        let file_encoder = parse_encoder("--log-file-encoder", &f.log_file_encoder)?;
        let log_level = if f.zap_devel {
            "debug".to_string()
        } else {
            f.zap_log_level.clone()
        };
        let stdout_encoder = if f.zap_devel {
            Encoder::Console
        } else {
            stdout_encoder
        };
        let mut o = if f.config.is_empty() {
            Self {
                metrics_addr: parse_addr("metrics-addr", &f.metrics_addr)?,
                probe_addr: parse_addr("health-probe-bind-address", &f.health_probe_bind_address)?,
                leader_election: f.enable_leader_election,
                leader_election_namespace: f.leader_election_namespace.clone(),
                concurrency: f.reconcile_concurrency,
                watch_namespace: f.watch_namespace.clone(),
                log_file: Some(PathBuf::from(&f.log_file_path))
                    .filter(|p| !p.as_os_str().is_empty()),
                stdout_encoder,
                file_encoder,
                log_level,
                batch_scheduler: batch_scheduler(f.enable_batch_scheduler, &f.batch_scheduler)?,
                use_kubernetes_proxy: f.use_kubernetes_proxy,
                delete_rayjob_after_finish: env("DELETE_RAYJOB_CR_AFTER_JOB_FINISHES").as_deref()
                    == Some("true"),
                kuberay_metrics: f.enable_metrics,
                qps: f.qps,
                burst: f.burst,
                gates,
                kubeconfig: f.kubeconfig.clone(),
                head_sidecars: Vec::new(),
                worker_sidecars: Vec::new(),
                default_envs: Vec::new(),
                default_pod_annotations: BTreeMap::new(),
                default_pod_labels: BTreeMap::new(),
            }
        } else {
            let text = read(&f.config)
                .map_err(|e| format!("failed to read config file {}: {e}", f.config))?;
            let c: Configuration = serde_yaml::from_str(&text)
                .map_err(|e| format!("failed to decode config file {}: {e}", f.config))?;
            if c.api_version != "config.ray.io/v1alpha1" || c.kind != "Configuration" {
                return Err(format!(
                    "config file {}: expected apiVersion config.ray.io/v1alpha1 and kind Configuration, got {} {}",
                    f.config, c.api_version, c.kind
                ));
            }
            Self {
                metrics_addr: parse_addr(
                    "metricsAddr",
                    c.metrics_addr.as_deref().unwrap_or(":8080"),
                )?,
                probe_addr: parse_addr("probeAddr", c.probe_addr.as_deref().unwrap_or(":8082"))?,
                leader_election: c.enable_leader_election.unwrap_or(true),
                leader_election_namespace: c.leader_election_namespace.unwrap_or_default(),
                concurrency: c.reconcile_concurrency.filter(|n| *n > 0).unwrap_or(1),
                watch_namespace: c.watch_namespace.unwrap_or_default(),
                log_file: c.log_file.filter(|p| !p.is_empty()).map(PathBuf::from),
                stdout_encoder,
                file_encoder,
                log_level,
                batch_scheduler: batch_scheduler(
                    c.enable_batch_scheduler.unwrap_or(false),
                    c.batch_scheduler.as_deref().unwrap_or(""),
                )?,
                use_kubernetes_proxy: c.use_kubernetes_proxy.unwrap_or(false),
                delete_rayjob_after_finish: c.delete_ray_job_after_job_finishes.unwrap_or(false),
                kuberay_metrics: c.enable_metrics.unwrap_or(false),
                qps: c.qps.unwrap_or(100.0),
                burst: c.burst.unwrap_or(200),
                gates,
                kubeconfig: f.kubeconfig.clone(),
                head_sidecars: c.head_sidecar_containers.unwrap_or_default(),
                worker_sidecars: c.worker_sidecar_containers.unwrap_or_default(),
                default_envs: c.default_container_envs.unwrap_or_default(),
                default_pod_annotations: c.default_pod_annotations.unwrap_or_default(),
                default_pod_labels: c.default_pod_labels.unwrap_or_default(),
            }
        };
        if o.concurrency == 0 {
            return Err("--reconcile-concurrency must be at least 1".into());
        }
        if o.qps.is_nan() || o.qps <= 0.0 || o.burst == 0 {
            return Err(format!(
                "--qps ({}) and --burst ({}) must be positive",
                o.qps, o.burst
            ));
        }
        o.log_level = o.log_level.trim().to_string();
        Ok(o)
    }
}

fn batch_scheduler(deprecated_flag: bool, name: &str) -> Result<Option<String>, String> {
    if deprecated_flag && !name.is_empty() {
        return Err("both feature flags enable-batch-scheduler (deprecated) and batch-scheduler are set. Please use batch-scheduler only".into());
    }
    if deprecated_flag {
        return Ok(Some("volcano".into()));
    }
    match name {
        "" => Ok(None),
        n if BATCH_SCHEDULERS.contains(&n) => Ok(Some(n.to_string())),
        n => Err(format!(
            "scheduler is not supported, name={n} (supported: {})",
            BATCH_SCHEDULERS.join(", ")
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(args: &[&str]) -> Result<Flags, clap::Error> {
        Flags::try_parse_from(std::iter::once("kuberay-operator").chain(args.iter().copied()))
    }

    fn options(args: &[&str]) -> Result<Options, String> {
        Options::from_flags(
            flags(args).unwrap(),
            |_| Err(std::io::ErrorKind::NotFound.into()),
            |_| None,
        )
    }

    #[test]
    fn kuberays_helm_arguments_parse() {
        let o = options(&[
            "--watch-namespace",
            "a,b",
            "--log-stdout-encoder",
            "console",
            "--enable-leader-election=false",
            "--enable-metrics=true",
            "--reconcile-concurrency=4",
            "--qps=50",
            "--burst=100",
            "--feature-gates=RayCronJob=true,",
        ])
        .unwrap();
        assert_eq!(o.watch_namespace, "a,b");
        assert_eq!(o.stdout_encoder, Encoder::Console);
        assert!(!o.leader_election && o.kuberay_metrics);
        assert_eq!((o.concurrency, o.qps, o.burst), (4, 50.0, 100));
        assert!(o.gates.enabled("RayCronJob"));
        assert_eq!(o.metrics_addr.unwrap().to_string(), "0.0.0.0:8080");
        assert!(
            options(&["--enable-leader-election"])
                .unwrap()
                .leader_election
        );
    }

    #[test]
    fn bad_input_fails_with_a_clear_message() {
        assert!(
            flags(&["--no-such-flag"])
                .unwrap_err()
                .to_string()
                .contains("--no-such-flag")
        );
        assert!(
            options(&["--log-stdout-encoder=xml"])
                .unwrap_err()
                .contains("must be 'json' or 'console'")
        );
        assert!(
            options(&["--feature-gates=Nope=true"])
                .unwrap_err()
                .contains("unknown feature gate")
        );
        assert!(
            options(&["--batch-scheduler=slurm"])
                .unwrap_err()
                .contains("scheduler is not supported, name=slurm")
        );
        assert!(
            options(&["--metrics-addr=eighty"])
                .unwrap_err()
                .contains("--metrics-addr")
        );
        assert!(
            options(&["--config=/nope"])
                .unwrap_err()
                .contains("failed to read config file /nope")
        );
    }

    #[test]
    fn a_config_file_replaces_the_flags_it_covers() {
        let file = "apiVersion: config.ray.io/v1alpha1\nkind: Configuration\nenableLeaderElection: false\nreconcileConcurrency: 3\nwatchNamespace: x\nenableMetrics: true\ndefaultPodLabels: {team: ml}\n";
        let f = flags(&[
            "--config=/etc/kuberay/config.yaml",
            "--reconcile-concurrency=9",
            "--feature-gates=RayCronJob=true",
        ])
        .unwrap();
        let o = Options::from_flags(f, |_| Ok(file.to_string()), |_| None).unwrap();
        assert_eq!(o.concurrency, 3);
        assert!(!o.leader_election && o.kuberay_metrics);
        assert_eq!(o.default_pod_labels["team"], "ml");
        assert!(
            o.gates.enabled("RayCronJob"),
            "feature gates still come from the flag"
        );
        let typo = "apiVersion: config.ray.io/v1alpha1\nkind: Configuration\nenableMetric: true\n";
        let f = flags(&["--config=c.yaml"]).unwrap();
        let err = Options::from_flags(f, |_| Ok(typo.to_string()), |_| None).unwrap_err();
        assert!(err.contains("unknown field `enableMetric`"), "{err}");
    }
}
