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
    limited(config, None)
}

/// Like [`counted`], and at most `qps` requests per second with bursts of
/// `burst` (KubeRay's `--qps` and `--burst`) when `limit` is given.
pub fn limited(
    config: kube::Config,
    limit: Option<(f64, u32)>,
) -> Result<(kube::Client, RequestCounts), kube::Error> {
    let counts = RequestCounts::default();
    let builder = ClientBuilder::try_from(config)?.with_layer(&CountLayer(counts.clone()));
    let client = match limit {
        Some((qps, burst)) => builder.with_layer(&RateLimitLayer::new(qps, burst)).build(),
        None => builder.build(),
    };
    Ok((client, counts))
}

/// A token bucket: `burst` tokens, refilled at `qps` per second.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    burst: f64,
    qps: f64,
    last: std::time::Instant,
}

impl Bucket {
    /// Takes a token, or says how long until one is there.
    fn take(&mut self) -> Result<(), std::time::Duration> {
        let now = std::time::Instant::now();
        self.tokens =
            (self.tokens + now.duration_since(self.last).as_secs_f64() * self.qps).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            Ok(())
        } else {
            Err(std::time::Duration::from_secs_f64(
                (1.0 - self.tokens) / self.qps,
            ))
        }
    }
}

#[derive(Clone)]
pub struct RateLimitLayer {
    bucket: Arc<Mutex<Bucket>>,
}

impl RateLimitLayer {
    pub fn new(qps: f64, burst: u32) -> Self {
        Self {
            bucket: Arc::new(Mutex::new(Bucket {
                tokens: f64::from(burst),
                burst: f64::from(burst.max(1)),
                qps: qps.max(0.001),
                last: std::time::Instant::now(),
            })),
        }
    }
}

impl<S> Layer<S> for RateLimitLayer {
    type Service = RateLimited<S>;
    fn layer(&self, inner: S) -> RateLimited<S> {
        RateLimited {
            inner,
            bucket: self.bucket.clone(),
            sleep: None,
            reserved: false,
        }
    }
}

/// Holds requests back (in `poll_ready`, as tower intends) until the bucket
/// has a token. The client's buffer drives all requests through one
/// instance, so the limit is global.
pub struct RateLimited<S> {
    inner: S,
    bucket: Arc<Mutex<Bucket>>,
    sleep: Option<std::pin::Pin<Box<tokio::time::Sleep>>>,
    reserved: bool,
}

impl<S, B> Service<http::Request<B>> for RateLimited<S>
where
    S: Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        while !self.reserved {
            if let Some(sleep) = self.sleep.as_mut() {
                if sleep.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
                self.sleep = None;
            }
            let taken = self.bucket.lock().unwrap().take();
            match taken {
                Ok(()) => self.reserved = true,
                Err(wait) => self.sleep = Some(Box::pin(tokio::time::sleep(wait))),
            }
        }
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: http::Request<B>) -> Self::Future {
        self.reserved = false;
        self.inner.call(req)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bucket_allows_bursts_then_the_rate() {
        let mut b = Bucket {
            tokens: 2.0,
            burst: 2.0,
            qps: 10.0,
            last: std::time::Instant::now(),
        };
        assert!(b.take().is_ok() && b.take().is_ok());
        let wait = b.take().unwrap_err();
        assert!(wait <= std::time::Duration::from_millis(100), "{wait:?}");
    }

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
