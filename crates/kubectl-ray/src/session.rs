//! `kubectl ray session`: forwards the dashboard (and the client or serve
//! port) of a cluster, job or service to localhost until interrupted.

use anyhow::{Result, bail};
use kuberay_api::names::{CLIENT_PORT, DASHBOARD_PORT, SERVE_PORT};

use crate::cli::SessionArgs;
use crate::connect::KubeFlags;
use crate::portforward::{Forward, listen};
use crate::resource::{self, Kind};

/// The ports KubeRay forwards for each kind, with the names it prints.
pub fn ports(kind: Kind) -> Vec<(&'static str, u16)> {
    let port = |p: (&str, i32)| u16::try_from(p.1).expect("Ray's ports fit in u16");
    let dashboard = ("Ray Dashboard", port(DASHBOARD_PORT));
    match kind {
        Kind::RayCluster => vec![dashboard, ("Ray Interactive Client", port(CLIENT_PORT))],
        Kind::RayJob => vec![dashboard],
        Kind::RayService => vec![dashboard, ("Ray Serve", port(SERVE_PORT))],
    }
}

pub async fn run(flags: &KubeFlags, a: SessionArgs) -> Result<()> {
    let (kind, name) = resource::parse(&a.resource, false)?;
    let kube = flags.connect().await?;
    let target = resource::target(&kube, kind, &name).await?;
    if target.head_service.is_empty() {
        bail!(
            "{}/{name} in namespace {} has no head service yet (its status names none): check that the KubeRay operator runs and see 'kubectl ray get cluster'",
            kind.as_str(),
            kube.namespace
        );
    }
    println!("Forwarding ports to service {}", target.head_service);
    let mut listeners = Vec::new();
    for (label, port) in ports(kind) {
        listeners.push((port, listen(port, false).await?));
        println!("{label}: http://localhost:{port}");
    }
    println!();
    let mut tasks = tokio::task::JoinSet::new();
    for (port, listener) in listeners {
        println!("Forwarding from 127.0.0.1:{port} -> {port}");
        let forward = Forward {
            client: kube.client.clone(),
            namespace: kube.namespace.clone(),
            service: target.head_service.clone(),
            service_port: port,
            verbose: a.verbose,
        };
        tasks.spawn(forward.serve(listener));
    }
    tokio::select! {
        _ = tokio::signal::ctrl_c() => Ok(()),
        Some(r) = tasks.join_next() => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(e) => bail!("port-forward stopped: {e}"),
        },
    }
}
