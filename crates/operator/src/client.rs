//! The Kubernetes client the operator uses, with every request counted by
//! verb and resource, for the request metrics and for tests that prove a
//! cluster at rest costs no writes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use kube::client::ClientBuilder;
use tower::{Layer, Service};

/// Request counts, shared by every clone.
#[derive(Clone, Default, Debug)]
pub struct RequestCounts {
    inner: Arc<Mutex<BTreeMap<(String, String), u64>>>,
}

impl RequestCounts {
    /// Counts by (HTTP method, resource), e.g. ("POST", "pods").
    pub fn snapshot(&self) -> BTreeMap<(String, String), u64> {
        self.inner.lock().unwrap().clone()
    }

    /// Requests that change something: everything but GET.
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|((m, _), _)| m != "GET")
            .map(|(_, n)| n)
            .sum()
    }

    fn record(&self, method: &str, path: &str) {
        *self
            .inner
            .lock()
            .unwrap()
            .entry((method.to_string(), resource(path)))
            .or_default() += 1;
    }
}

/// The resource of an API path: `/api/v1/namespaces/ns/pods/p` -> `pods`,
/// `/apis/ray.io/v1/namespaces/ns/rayclusters/x/status` -> `rayclusters`.
pub fn resource(path: &str) -> String {
    let parts: Vec<&str> = path
        .split('?')
        .next()
        .unwrap_or_default()
        .split('/')
        .filter(|s| !s.is_empty())
        .collect();
    let rest = match parts.first() {
        Some(&"api") => parts.get(2..),
        Some(&"apis") => parts.get(3..),
        _ => None,
    }
    .unwrap_or_default();
    match rest {
        ["namespaces", _, res, ..] => res.to_string(),
        [res, ..] => res.to_string(),
        [] => "other".into(),
    }
}

#[derive(Clone)]
pub struct CountLayer(pub RequestCounts);

impl<S> Layer<S> for CountLayer {
    type Service = Counted<S>;
    fn layer(&self, inner: S) -> Counted<S> {
        Counted {
            inner,
            counts: self.0.clone(),
        }
    }
}

#[derive(Clone)]
pub struct Counted<S> {
    inner: S,
    counts: RequestCounts,
}

impl<S, B> Service<http::Request<B>> for Counted<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.counts.record(req.method().as_str(), req.uri().path());
        self.inner.call(req)
    }
}

/// A client for `config` whose requests are counted in the returned counts.
pub fn counted(config: kube::Config) -> Result<(kube::Client, RequestCounts), kube::Error> {
    let counts = RequestCounts::default();
    let client = ClientBuilder::try_from(config)?
        .with_layer(&CountLayer(counts.clone()))
        .build();
    Ok((client, counts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resources_are_read_from_paths() {
        assert_eq!(resource("/api/v1/namespaces/ns/pods/p"), "pods");
        assert_eq!(resource("/api/v1/namespaces/ns/pods"), "pods");
        assert_eq!(
            resource("/apis/ray.io/v1/namespaces/ns/rayclusters/x/status"),
            "rayclusters"
        );
        assert_eq!(
            resource("/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"),
            "leases"
        );
        assert_eq!(resource("/api/v1/nodes?watch=true"), "nodes");
        assert_eq!(resource("/version"), "other");
    }
}
