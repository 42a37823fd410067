//! Why a control plane could not start or stopped working, each case with the
//! cause and what to do about it, so a failed test run explains itself.

use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(
        "control-plane binaries are missing ({missing}). Build them with `hack/build-control-plane.sh` \
         (it needs Go 1.26+ and access to the Go module proxy; first run takes 15-25 minutes)"
    )]
    BinariesMissing { missing: String },

    #[error("building the control-plane binaries failed: {0}")]
    BuildFailed(String),

    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    #[error("could not start {component}: {source}")]
    Spawn {
        component: String,
        source: std::io::Error,
    },

    #[error(
        "{component} could not bind its port {port}: another process took it. Free the port or run again \
         (ports are chosen at random on each start)"
    )]
    PortClash { component: String, port: u16 },

    #[error("{component} exited ({status}); last lines of {log}:\n{tail}")]
    ComponentDied {
        component: String,
        status: String,
        log: PathBuf,
        tail: String,
    },

    #[error("timed out after {seconds}s waiting for {what}{detail}")]
    Timeout {
        what: String,
        seconds: u64,
        detail: String,
    },

    #[error("certificate generation failed: {0}")]
    Certificate(#[from] rcgen::Error),

    #[error("Kubernetes API: {0}")]
    Kube(#[from] kube::Error),

    #[error("kubeconfig: {0}")]
    Kubeconfig(String),

    /// Something the machine must provide for real nodes is missing; the
    /// message says what and how to get it.
    #[error("real nodes cannot start: {0}")]
    Prerequisite(String),

    #[error("setting up the real nodes' {what} failed: {detail}")]
    Setup { what: String, detail: String },
}

impl Error {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }
}
