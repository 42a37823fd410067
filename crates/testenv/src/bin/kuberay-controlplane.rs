//! `kuberay-controlplane up`: runs the local control plane in the foreground
//! until Ctrl-C, for the local environment and for scripts that want one
//! control plane shared by several test binaries.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand};
use kuberay_testenv::realnodes::RealNodeOptions;
use kuberay_testenv::realnodes::images::operator_image;
use kuberay_testenv::{ControlPlane, Options, binaries::Binaries, nodes::SimNode};

#[derive(Parser)]
#[command(about = "A local Kubernetes control plane with simulated nodes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Build (once) and start the control plane; stop it with Ctrl-C or SIGTERM.
    Up {
        /// Where to write the admin kubeconfig.
        #[arg(long, default_value = "kubeconfig")]
        kubeconfig: PathBuf,
        /// Directory for data, certificates and logs (a temporary one if unset).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Number of general-purpose simulated nodes; with any, a simulated
        /// GPU node is added too.
        #[arg(long, default_value_t = 3)]
        nodes: usize,
        /// Number of real nodes (kubelet, containerd; pods really run).
        /// Needs root. Beside real nodes, simulated ones are tainted.
        #[arg(long, default_value_t = 0)]
        real_nodes: u8,
        /// Also import this operator binary as the image
        /// `kuberay-operator:v1.7.0-rs` into the real nodes.
        #[arg(long)]
        operator_image_from: Option<PathBuf>,
        /// File to create once the control plane is ready (for scripts).
        #[arg(long)]
        ready_file: Option<PathBuf>,
    },
    /// Print where the binaries are, building them first if needed.
    Binaries,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Command::Binaries => {
            let b = Binaries::ensure()?;
            println!("{b:#?}");
        }
        Command::Up {
            kubeconfig,
            dir,
            nodes,
            real_nodes,
            operator_image_from,
            ready_file,
        } => {
            let mut fleet: Vec<SimNode> = (0..nodes)
                .map(|i| SimNode::new(&format!("kwok-node-{i}"), "64", "256Gi"))
                .collect();
            if nodes > 0 {
                fleet.push(
                    SimNode::new("kwok-gpu-node-0", "128", "1Ti")
                        .with_gpus(8)
                        .with_label("cloud.google.com/gke-accelerator", "nvidia-tesla-t4"),
                );
            }
            let real = (real_nodes > 0)
                .then(|| -> anyhow::Result<RealNodeOptions> {
                    let extra_images = match &operator_image_from {
                        Some(bin) => vec![operator_image(bin)?],
                        None => Vec::new(),
                    };
                    Ok(RealNodeOptions {
                        count: real_nodes,
                        extra_images,
                    })
                })
                .transpose()?;
            let started = std::time::Instant::now();
            let plane = ControlPlane::start(Options {
                dir,
                kubeconfig: Some(kubeconfig.clone()),
                nodes: fleet,
                real_nodes: real,
                ..Options::default()
            })?;
            eprintln!(
                "control plane {} ready in {:.1}s at {}\n  kubeconfig: {}\n  logs:       {}",
                ControlPlane::kubernetes_version(),
                started.elapsed().as_secs_f64(),
                plane.server(),
                kubeconfig.display(),
                plane.dir().join("logs").display(),
            );
            if let Some(f) = &ready_file {
                std::fs::write(f, plane.server())?;
            }
            wait_for_signal_or_failure(&plane);
            eprintln!("stopping the control plane");
            plane.stop();
            if let Some(f) = &ready_file {
                let _ = std::fs::remove_file(f);
            }
        }
    }
    Ok(())
}

/// Blocks until SIGINT/SIGTERM, or until a component dies (reported with the
/// tail of its log, then everything is stopped).
fn wait_for_signal_or_failure(plane: &ControlPlane) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("SIGTERM handler");
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => return,
                _ = term.recv() => return,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    if let Err(e) = plane.check() {
                        eprintln!("{e}");
                        return;
                    }
                }
            }
        }
    });
}
