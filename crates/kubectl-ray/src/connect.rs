//! The kubeconfig flags every command takes (`--kubeconfig`, `--context`,
//! `--cluster`, `--user`, `-n/--namespace`), as kubectl reads them, and the
//! client they lead to.

use std::path::PathBuf;

use anyhow::{Context as _, Result};
use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};

#[derive(Args, Clone, Debug, Default)]
pub struct KubeFlags {
    /// Path to the kubeconfig file to use for CLI requests.
    #[arg(long, global = true, value_name = "PATH")]
    pub kubeconfig: Option<PathBuf>,
    /// The name of the kubeconfig context to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub context: Option<String>,
    /// The name of the kubeconfig cluster to use.
    #[arg(long = "cluster", global = true, value_name = "NAME")]
    pub kube_cluster: Option<String>,
    /// The name of the kubeconfig user to use.
    #[arg(long, global = true, value_name = "NAME")]
    pub user: Option<String>,
    /// If present, the namespace scope for this CLI request.
    #[arg(short = 'n', long, global = true, value_name = "NAME")]
    pub namespace: Option<String>,
}

/// A client and the namespace a command works in.
pub struct Kube {
    pub client: kube::Client,
    /// `-n`, else the context's namespace, else `default`.
    pub namespace: String,
    /// Whether the namespace was given with `-n`.
    pub namespace_from_flag: bool,
    /// The kubeconfig context in use (empty in-cluster).
    pub context: String,
}

impl KubeFlags {
    fn kubeconfig(&self) -> Result<Option<Kubeconfig>> {
        match &self.kubeconfig {
            Some(path) => Kubeconfig::read_from(path)
                .map(Some)
                .with_context(|| format!("cannot read kubeconfig {}", path.display())),
            None => Ok(Kubeconfig::read().ok()),
        }
    }

    /// The context a command runs in, without talking to the API server.
    pub fn context_name(&self) -> Result<String> {
        if let Some(c) = &self.context {
            return Ok(c.clone());
        }
        Ok(self
            .kubeconfig()?
            .and_then(|k| k.current_context)
            .unwrap_or_default())
    }

    pub async fn connect(&self) -> Result<Kube> {
        let options = KubeConfigOptions {
            context: self.context.clone(),
            cluster: self.kube_cluster.clone(),
            user: self.user.clone(),
        };
        let config = match self.kubeconfig()? {
            Some(kc) => kube::Config::from_custom_kubeconfig(kc, &options)
                .await
                .context("invalid kubeconfig")?,
            None => kube::Config::incluster().context(
                "no kubeconfig found (set --kubeconfig or KUBECONFIG, or run inside a cluster)",
            )?,
        };
        let namespace = self
            .namespace
            .clone()
            .unwrap_or_else(|| config.default_namespace.clone());
        let client = kube::Client::try_from(config).context("cannot build a Kubernetes client")?;
        Ok(Kube {
            client,
            namespace,
            namespace_from_flag: self.namespace.is_some(),
            context: self.context_name().unwrap_or_default(),
        })
    }
}

/// A Kubernetes API error as one line: the API server's message when it
/// sent one, else the transport error and its causes.
pub fn describe(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(status) => status.message.clone(),
        other => {
            let mut msg = other.to_string();
            let mut source = std::error::Error::source(other);
            while let Some(s) = source {
                let s_text = s.to_string();
                if !msg.contains(&s_text) {
                    msg = format!("{msg}: {s_text}");
                }
                source = s.source();
            }
            msg
        }
    }
}

/// Whether the API server answered 404.
pub fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}
