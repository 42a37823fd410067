//! The `kuberay-operator` binary: parses KubeRay's flags, sets up logging
//! and the Kubernetes client, then runs the operator until SIGTERM.

use clap::Parser;
use kuberay_operator::runtime::options::{Encoder, Flags, Options};
use tracing_subscriber::prelude::*;

fn init_logging(o: &Options) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        // zap's numeric levels: higher is more verbose.
        let level = match o.log_level.as_str() {
            "debug" => "debug",
            "error" => "error",
            "info" | "" => "info",
            n => match n.parse::<u8>() {
                Ok(0) | Err(_) => "info",
                Ok(1) => "debug",
                Ok(_) => "trace",
            },
        };
        tracing_subscriber::EnvFilter::new(level)
    });
    let stdout = match o.stdout_encoder {
        Encoder::Json => tracing_subscriber::fmt::layer().json().boxed(),
        Encoder::Console => tracing_subscriber::fmt::layer().boxed(),
    };
    let file = match &o.log_file {
        Some(path) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|e| anyhow::anyhow!("log file {}: {e}", path.display()))?;
            let layer = tracing_subscriber::fmt::layer()
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(f));
            Some(match o.file_encoder {
                Encoder::Json => layer.json().boxed(),
                Encoder::Console => layer.boxed(),
            })
        }
        None => None,
    };
    tracing_subscriber::registry()
        .with(filter)
        .with(stdout)
        .with(file)
        .init();
    Ok(())
}

/// How long after SIGTERM in-flight work may take before the process exits.
const SHUTDOWN_LIMIT: std::time::Duration = std::time::Duration::from_secs(20);

async fn signal() {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let flags = Flags::parse();
    let opts = Options::from_flags(
        flags,
        |p| std::fs::read_to_string(p),
        |k| std::env::var(k).ok(),
    )
    .map_err(|e| anyhow::anyhow!("invalid configuration: {e}"))?;
    init_logging(&opts)?;
    if let Some(s) = &opts.batch_scheduler {
        tracing::warn!(scheduler = %s, "batch scheduler integration is not implemented yet; pods are created without gang scheduling");
    }
    if opts.use_kubernetes_proxy {
        tracing::warn!(
            "--use-kubernetes-proxy is not implemented yet; Ray heads are reached directly"
        );
    }
    tracing::info!(gates = ?opts.gates.iter().collect::<Vec<_>>(), "loaded feature gates");
    let config = match &opts.kubeconfig {
        Some(path) => {
            let kc = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    let limit = Some((opts.qps, opts.burst));
    let (client, requests) = kuberay_operator::runtime::client::limited(config.clone(), limit)?;
    let events_client =
        kuberay_operator::runtime::client::limited_counting(config, limit, &requests)?;
    // One signal, seen twice: the operator stops taking work, and a timer
    // makes sure the process is gone before the kubelet's SIGKILL (pods get
    // 30 s by default), whatever a reconcile is doing. Reconciles are
    // bounded (pods are created in paced batches), so the timer is a
    // backstop; what it cuts short, the next leader picks up from the
    // cluster's state (expectations live only in memory).
    let stop = futures::FutureExt::shared(signal());
    let backstop = stop.clone();
    tokio::spawn(async move {
        backstop.await;
        tokio::time::sleep(SHUTDOWN_LIMIT).await;
        tracing::warn!(
            seconds = SHUTDOWN_LIMIT.as_secs(),
            "in-flight reconciles did not finish in time; exiting without them"
        );
        std::process::exit(0);
    });
    if let Err(e) = kuberay_operator::run(opts, client, events_client, requests, stop).await {
        tracing::error!(error = %e, "operator stopped");
        return Err(e);
    }
    tracing::info!("operator stopped");
    Ok(())
}
