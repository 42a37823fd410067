//! The KubeRay operator in Rust, in four layers, each depending only on
//! the ones before it:
//!
//! - [`runtime`]: the process (flags, config, client, metrics, HTTP
//!   endpoints, leader election); no Ray knowledge.
//! - [`kit`]: a generic controller toolkit (the one controller runner,
//!   caches, expectations, the applier, events, conditions, backoff).
//! - [`ray`]: what several controllers share about Ray (pods, services,
//!   auth, quantities, the dashboard client).
//! - [`controllers`]: one folder per kind, and the list of them.

pub mod controllers;
pub mod kit;
pub mod ray;
pub mod rbac;
pub mod runtime;

/// Runs the operator with every controller of [`controllers::ALL`] until
/// `shutdown` resolves (SIGTERM in production) or leadership is lost.
pub async fn run(
    opts: runtime::options::Options,
    client: kube::Client,
    events_client: kube::Client,
    requests: runtime::client::RequestCounts,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    runtime::manager::run(
        opts,
        client,
        events_client,
        requests,
        shutdown,
        controllers::start,
    )
    .await
}
