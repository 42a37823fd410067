//! A real Kubernetes control plane on loopback, built from the Go module proxy
//! and run as plain processes: for integration tests (see [`harness`]) and
//! for the one-command local environment (the `kuberay-controlplane` binary).

pub mod binaries;
pub mod controlplane;
mod error;
pub mod harness;
pub mod jsondiff;
pub mod nodes;
pub mod pki;
pub mod process;
pub mod ray;
pub mod samples;

use std::path::Path;

use k8s_openapi::api::core::v1::Node;

pub use controlplane::{ControlPlane, Options};
pub use error::Error;

/// A client for the cluster a kubeconfig file points at (its current context).
pub async fn client_from_kubeconfig(path: &Path) -> Result<kube::Client, Error> {
    let kubeconfig =
        kube::config::Kubeconfig::read_from(path).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .map_err(|e| Error::Kubeconfig(e.to_string()))?;
    Ok(kube::Client::try_from(config)?)
}

/// Whether a node reports the Ready condition as True.
pub fn node_is_ready(node: &Node) -> bool {
    node.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}
