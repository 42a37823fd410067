//! The process around the controllers: HTTP endpoints, the settings,
//! leader election, and the controllers it is handed, until shutdown.

use futures::FutureExt;
use futures::future::{BoxFuture, Shared};
use kube::Client;

use crate::kit::runner::Env;
use crate::kit::scope::Scope;
use crate::runtime::config::Config;
use crate::runtime::metrics::Metrics;
use crate::runtime::server::Readiness;

/// Resolves when the controllers must stop. Cheap to clone.
pub type Stop = Shared<BoxFuture<'static, ()>>;

/// A stop signal from any future.
pub fn stop_on(f: impl std::future::Future<Output = ()> + Send + 'static) -> Stop {
    f.boxed().shared()
}

/// Starts the controllers with the process's environment and settings; the
/// returned future ends once they have stopped.
pub type Start = fn(Env, Config, Stop) -> BoxFuture<'static, ()>;

/// Why the operator stopped, besides a requested shutdown.
#[derive(Debug, thiserror::Error)]
pub enum ExitError {
    #[error("lost the leader lease {0}; exiting so a restart rejoins the election")]
    LostLease(String),
}

/// The name of the leader election Lease (KubeRay's).
pub const LEADER_LEASE: &str = "ray-operator-leader";

/// Runs the whole operator: HTTP endpoints, leader election, controllers,
/// until `shutdown` resolves (SIGTERM in production) or leadership is lost.
pub async fn run(
    opts: crate::runtime::options::Options,
    client: Client,
    events_client: Client,
    requests: crate::runtime::client::RequestCounts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    start: Start,
) -> anyhow::Result<()> {
    let metrics = Metrics::new(opts.kuberay_metrics, requests);
    let readiness = Readiness::default();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = move || {
        let mut rx = stop_rx.clone();
        async move {
            let _ = rx.wait_for(|s| *s).await;
        }
    };
    tokio::spawn(async move {
        shutdown.await;
        tracing::info!("shutdown requested");
        let _ = stop_tx.send(true);
    });
    if let Some(addr) = opts.probe_addr {
        let r = readiness.clone();
        let s = stopped();
        tokio::spawn(async move {
            if let Err(e) = crate::runtime::server::serve_health(addr, r, s).await {
                tracing::error!(%addr, error = %e, "health endpoint failed");
            }
        });
    }
    if let Some(addr) = opts.metrics_addr {
        let m = metrics.clone();
        let s = stopped();
        tokio::spawn(async move {
            if let Err(e) = crate::runtime::server::serve_metrics(addr, m, s).await {
                tracing::error!(%addr, error = %e, "metrics endpoint failed");
            }
        });
    }
    let cfg = Config::from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    let cfg = Config {
        gates: opts.gates.clone(),
        head_sidecars: opts.head_sidecars.clone(),
        worker_sidecars: opts.worker_sidecars.clone(),
        default_envs: opts.default_envs.clone(),
        default_pod_labels: opts.default_pod_labels.clone(),
        default_pod_annotations: opts.default_pod_annotations.clone(),
        delete_rayjob_after_finish: opts.delete_rayjob_after_finish
            || cfg.delete_rayjob_after_finish,
        local_time_zone: jiff::tz::TimeZone::system(),
        ..cfg
    };
    let env = Env {
        client: client.clone(),
        events_client,
        scope: Scope::parse(&opts.watch_namespace),
        concurrency: opts.concurrency,
        metrics,
        readiness: readiness.clone(),
    };
    if !opts.leader_election {
        start(env, cfg, stop_on(stopped())).await;
        return Ok(());
    }
    let namespace = leader_namespace(&opts.leader_election_namespace)?;
    let identity = std::env::var("POD_NAME")
        .unwrap_or_else(|_| format!("{}-{}", hostname(), std::process::id()));
    let mut election =
        crate::runtime::leader::Election::join(client, &namespace, LEADER_LEASE, &identity).await?;
    readiness.standing_by();
    tracing::info!(%namespace, lease = LEADER_LEASE, %identity, "waiting to lead");
    futures::select! {
        _ = election.until_leading().fuse() => {}
        _ = stopped().fuse() => {
            election.resign().await;
            return Ok(());
        }
    }
    tracing::info!(%identity, "leading; starting controllers");
    let mut lost = election.leading.clone();
    let lease_lost = async move {
        let _ = lost.wait_for(|l| !*l).await;
    }
    .shared();
    let controllers_stop = {
        let lease_lost = lease_lost.clone();
        let s = stopped();
        async move {
            futures::select! {
                _ = lease_lost.fuse() => {}
                _ = s.fuse() => {}
            }
        }
    };
    start(env, cfg, stop_on(controllers_stop)).await;
    let lost_lease = lease_lost.now_or_never().is_some() && !*election.leading.borrow();
    election.resign().await;
    if lost_lease {
        return Err(ExitError::LostLease(LEADER_LEASE.into()).into());
    }
    Ok(())
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "kuberay-operator".into())
}

/// The Lease's namespace: the flag, else the pod's own namespace.
fn leader_namespace(flag: &str) -> anyhow::Result<String> {
    if !flag.is_empty() {
        return Ok(flag.to_string());
    }
    if let Ok(ns) = std::env::var("POD_NAMESPACE") {
        return Ok(ns);
    }
    std::fs::read_to_string("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
        .map(|n| n.trim().to_string())
        .map_err(|_| {
            anyhow::anyhow!(
                "leader election needs a namespace for its Lease: set --leader-election-namespace (or POD_NAMESPACE), or run in a pod"
            )
        })
}
