//! A real Kubernetes control plane on loopback, built from the Go module proxy
//! and run as plain processes: for integration tests (see [`harness`]) and
//! for the one-command local environment (the `kuberay-controlplane` binary).

pub mod addresses;
pub mod binaries;
pub mod controlplane;
mod error;
pub mod harness;
pub mod image;
pub mod jsondiff;
pub mod nodes;
pub mod pki;
pub mod process;
pub mod provisioner;
pub mod ray;
pub mod realnodes;
pub mod samples;

use std::path::{Path, PathBuf};

use k8s_openapi::api::core::v1::Node;

pub use controlplane::{ControlPlane, Options};
pub use error::Error;

/// The repository's root. Read at run time where cargo says (it sets
/// `CARGO_MANIFEST_DIR` for tests and `cargo run`; every crate lives two
/// levels below the root), because the compile-time value is stale when a
/// target directory is shared between checkouts, as CI's cache is: a build
/// made in another clone counts as fresh here.
pub fn repo_root() -> PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")))
        .join("../..")
}

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
