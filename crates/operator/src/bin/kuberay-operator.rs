//! The `kuberay-operator` binary: parses flags, then runs the controllers.

use clap::Parser;
use kuberay_operator::config::Config;
use kuberay_operator::raycluster;

#[derive(Parser, Debug)]
#[command(
    name = "kuberay-operator",
    about = "KubeRay operator for Ray on Kubernetes",
    version
)]
struct Flags {
    /// Namespace to watch; all namespaces when empty.
    #[arg(long, default_value = "")]
    watch_namespace: String,
    /// RayClusters reconciled in parallel.
    #[arg(long, default_value_t = 10)]
    reconcile_concurrency: u16,
    /// `Name=true,...`: KubeRay's feature gates.
    #[arg(long, default_value = "")]
    feature_gates: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .init();
    let flags = Flags::parse();
    let mut cfg = Config::from_env(|k| std::env::var(k).ok()).map_err(anyhow::Error::msg)?;
    cfg.gates = kuberay_api::features::FeatureGates::parse(&flags.feature_gates)
        .map_err(anyhow::Error::msg)?;
    let client = kube::Client::try_default().await?;
    let scope = kuberay_operator::scope::Scope::parse(&flags.watch_namespace);
    let shutdown = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    raycluster::run(client, cfg, scope, flags.reconcile_concurrency, shutdown).await;
    Ok(())
}
