//! Port-forwarding to a service's pod over the API server, as
//! `kubectl port-forward service/...` does, in-process. The pod is looked up
//! for every new connection, so a restarted head is picked up without
//! restarting the forward (what KubeRay's `session` loops `kubectl` for).

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use tokio::net::TcpListener;

use crate::connect::describe;

/// A local listener forwarding to one port of a service.
pub struct Forward {
    pub client: kube::Client,
    pub namespace: String,
    pub service: String,
    pub service_port: u16,
    pub verbose: bool,
}

/// Listens on localhost:`port`; with `or_any`, on a free port if it is taken.
pub async fn listen(port: u16, or_any: bool) -> Result<TcpListener> {
    match TcpListener::bind(("127.0.0.1", port)).await {
        Ok(l) => Ok(l),
        Err(_) if or_any => TcpListener::bind(("127.0.0.1", 0))
            .await
            .context("cannot listen on a local port"),
        Err(e) => bail!("cannot listen on localhost:{port}: {e} (is another session running?)"),
    }
}

impl Forward {
    /// The pod behind the service and its port for the service port.
    pub async fn resolve(&self) -> Result<(String, u16)> {
        let svc = Api::<Service>::namespaced(self.client.clone(), &self.namespace)
            .get(&self.service)
            .await
            .map_err(|e| anyhow!("service {}: {}", self.service, describe(&e)))?;
        let spec = svc.spec.unwrap_or_default();
        let selector = spec
            .selector
            .filter(|s| !s.is_empty())
            .ok_or_else(|| anyhow!("service {} has no pod selector", self.service))?;
        let labels: Vec<String> = selector.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace)
            .list(&ListParams::default().labels(&labels.join(",")))
            .await
            .map_err(|e| anyhow!("{}", describe(&e)))?;
        let pod = pods
            .items
            .into_iter()
            .find(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
            })
            .ok_or_else(|| anyhow!("no running pod behind service {}", self.service))?;
        let target = spec
            .ports
            .iter()
            .flatten()
            .find(|p| p.port == i32::from(self.service_port))
            .and_then(|p| p.target_port.clone());
        let port = match target {
            Some(IntOrString::Int(n)) => n,
            Some(IntOrString::String(name)) => pod
                .spec
                .iter()
                .flat_map(|s| &s.containers)
                .flat_map(|c| c.ports.iter().flatten())
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .map(|p| p.container_port)
                .ok_or_else(|| anyhow!("pod {} has no port named {name}", pod.name_any()))?,
            None => i32::from(self.service_port),
        };
        Ok((
            pod.name_any(),
            u16::try_from(port).context("port out of range")?,
        ))
    }

    /// Serves connections until the process ends; a failed connection is
    /// reported and the next one tries again.
    pub async fn serve(self, listener: TcpListener) -> Result<()> {
        let this = std::sync::Arc::new(self);
        loop {
            let (mut conn, _) = listener.accept().await?;
            let this = this.clone();
            let local = listener.local_addr()?.port();
            tokio::spawn(async move {
                if this.verbose {
                    println!("Handling connection for {local}");
                }
                if let Err(e) = this.connect(&mut conn).await {
                    eprintln!("failed to port-forward {local}: {e:#}");
                }
            });
        }
    }

    async fn connect(&self, conn: &mut tokio::net::TcpStream) -> Result<()> {
        let (pod, port) = self.resolve().await?;
        let pods = Api::<Pod>::namespaced(self.client.clone(), &self.namespace);
        let mut pf = pods
            .portforward(&pod, &[port])
            .await
            .map_err(|e| anyhow!("pod {pod}: {}", describe(&e)))?;
        let mut upstream = pf
            .take_stream(port)
            .ok_or_else(|| anyhow!("pod {pod}: no stream for port {port}"))?;
        // A connection closed by either side ends normally.
        let _ = tokio::io::copy_bidirectional(conn, &mut upstream).await;
        drop(upstream);
        pf.abort();
        Ok(())
    }
}
