//! The operator's HTTP endpoints: `/healthz` and `/readyz` on the health
//! address, `/metrics` (Prometheus text format) on the metrics address.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use crate::runtime::metrics::Metrics;
use axum::Router;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

/// What `/readyz` reports: ready once every controller's caches are synced
/// or, with leader election, while standing by as a candidate.
#[derive(Clone, Default)]
pub struct Readiness {
    standby: Arc<AtomicBool>,
    pending: Arc<AtomicUsize>,
    started: Arc<AtomicBool>,
}

impl Readiness {
    /// Controllers are starting; `n` of them must report their caches synced.
    pub fn expect(&self, n: usize) {
        self.pending.store(n, Ordering::SeqCst);
        self.started.store(true, Ordering::SeqCst);
        self.standby.store(false, Ordering::SeqCst);
    }

    /// One controller's caches are synced.
    pub fn synced(&self) {
        let _ = self
            .pending
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
    }

    /// A follower in the election is ready to take over.
    pub fn standing_by(&self) {
        self.standby.store(true, Ordering::SeqCst);
    }

    pub fn get(&self) -> bool {
        self.standby.load(Ordering::SeqCst)
            || (self.started.load(Ordering::SeqCst) && self.pending.load(Ordering::SeqCst) == 0)
    }
}

/// Serves `/healthz` (always ok while the process runs) and `/readyz`.
pub async fn serve_health(
    addr: SocketAddr,
    readiness: Readiness,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .route(
            "/readyz",
            get(move || {
                let ready = readiness.get();
                async move {
                    if ready {
                        (StatusCode::OK, "ok")
                    } else {
                        (StatusCode::SERVICE_UNAVAILABLE, "not ready")
                    }
                }
            }),
        );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

/// Serves the metrics at `/metrics`.
pub async fn serve_metrics(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new().route(
        "/metrics",
        get(move || {
            let metrics = metrics.clone();
            async move {
                match metrics.encode() {
                    Ok(body) => (
                        StatusCode::OK,
                        [(
                            header::CONTENT_TYPE,
                            "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        )],
                        body,
                    )
                        .into_response(),
                    Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()).into_response(),
                }
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind(addr).await?;
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}
