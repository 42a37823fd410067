//! The Kubernetes client the operator uses, with every request counted by
//! verb and resource, for the request metrics and for tests that prove a
//! cluster at rest costs no writes.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use kube::client::ClientBuilder;
use tower::{Layer, Service};

/// What one request did, in the terms RBAC grants permissions in: the verb
/// (`get`, `list`, `watch`, `create`, `update`, `patch`, `delete`,
/// `deletecollection`, and `apply` for a server-side apply, which the API
/// server also counts apart because it may create the object), the API group
/// (`""` for the core group) and the resource, with its subresource when
/// there is one (`rayclusters/status`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ApiCall {
    pub verb: String,
    pub group: String,
    pub resource: String,
}

impl ApiCall {
    /// Reads a request to the API server; `None` for paths that name no
    /// resource (`/version`, discovery).
    pub fn parse(method: &str, uri: &http::Uri, content_type: Option<&str>) -> Option<ApiCall> {
        let parts: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
        let (group, rest) = match parts.as_slice() {
            ["api", _version, rest @ ..] => ("", rest),
            ["apis", group, _version, rest @ ..] => (*group, rest),
            _ => return None,
        };
        // A namespaced path, unless it is the namespace object itself.
        let rest = match rest {
            ["namespaces", _ns, tail @ ..] if !tail.is_empty() => tail,
            other => other,
        };
        let (resource, named, sub) = match rest {
            [res] => (*res, false, None),
            [res, _name] => (*res, true, None),
            [res, _name, sub, ..] => (*res, true, Some(*sub)),
            [] => return None,
        };
        let watch = uri
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|kv| kv == "watch=true" || kv == "watch=1");
        let verb = match (method, named) {
            ("GET", _) if watch => "watch",
            ("GET", true) => "get",
            ("GET", false) => "list",
            ("POST", _) => "create",
            ("PUT", _) => "update",
            ("PATCH", _)
                if content_type.is_some_and(|c| c.starts_with("application/apply-patch")) =>
            {
                "apply"
            }
            ("PATCH", _) => "patch",
            ("DELETE", true) => "delete",
            ("DELETE", false) => "deletecollection",
            _ => return None,
        };
        Some(ApiCall {
            verb: verb.to_string(),
            group: group.to_string(),
            resource: match sub {
                Some(sub) => format!("{resource}/{sub}"),
                None => resource.to_string(),
            },
        })
    }

    /// Whether the request can change anything.
    pub fn is_write(&self) -> bool {
        !matches!(self.verb.as_str(), "get" | "list" | "watch")
    }
}

/// Request counts, shared by every clone.
#[derive(Clone, Default, Debug)]
pub struct RequestCounts {
    inner: Arc<Mutex<BTreeMap<ApiCall, u64>>>,
}

impl RequestCounts {
    /// Counts by call, e.g. `create` of `pods` in the core group.
    pub fn snapshot(&self) -> BTreeMap<ApiCall, u64> {
        self.inner.lock().unwrap().clone()
    }

    /// Requests that change something.
    pub fn writes(&self) -> u64 {
        self.snapshot()
            .iter()
            .filter(|(call, _)| call.is_write())
            .map(|(_, n)| n)
            .sum()
    }

    fn record<B>(&self, req: &http::Request<B>) {
        let content_type = req
            .headers()
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok());
        if let Some(call) = ApiCall::parse(req.method().as_str(), req.uri(), content_type) {
            *self.inner.lock().unwrap().entry(call).or_default() += 1;
        }
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
        self.counts.record(&req);
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
    Ok((limited_counting(config, limit, &counts)?, counts))
}

/// A client of its own rate limit whose requests are counted in `counts`
/// (a second client, e.g. for events, counted with the first).
pub fn limited_counting(
    config: kube::Config,
    limit: Option<(f64, u32)>,
    counts: &RequestCounts,
) -> Result<kube::Client, kube::Error> {
    let builder = ClientBuilder::try_from(config)?.with_layer(&CountLayer(counts.clone()));
    let client = match limit {
        Some((qps, burst)) => builder.with_layer(&RateLimitLayer::new(qps, burst)).build(),
        None => builder.build(),
    };
    Ok(client)
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

    fn call(method: &str, uri: &str) -> Option<(String, String, String)> {
        let c = ApiCall::parse(method, &uri.parse().unwrap(), Some("application/json"))?;
        Some((c.verb, c.group, c.resource))
    }

    fn expect(verb: &str, group: &str, resource: &str) -> Option<(String, String, String)> {
        Some((verb.into(), group.into(), resource.into()))
    }

    #[test]
    fn requests_are_read_as_rbac_verbs_and_resources() {
        assert_eq!(
            call("GET", "/api/v1/namespaces/ns/pods/p"),
            expect("get", "", "pods")
        );
        assert_eq!(
            call("GET", "/api/v1/namespaces/ns/pods?labelSelector=a"),
            expect("list", "", "pods")
        );
        assert_eq!(
            call("GET", "/api/v1/pods?watch=true&resourceVersion=1"),
            expect("watch", "", "pods")
        );
        assert_eq!(
            call("DELETE", "/api/v1/namespaces/ns/pods?labelSelector=a"),
            expect("deletecollection", "", "pods")
        );
        assert_eq!(
            call("DELETE", "/api/v1/namespaces/ns/pods/p"),
            expect("delete", "", "pods")
        );
        assert_eq!(
            call(
                "PATCH",
                "/apis/ray.io/v1/namespaces/ns/rayclusters/x/status?fieldManager=f"
            ),
            expect("patch", "ray.io", "rayclusters/status")
        );
        assert_eq!(
            call("PUT", "/apis/coordination.k8s.io/v1/namespaces/ns/leases/l"),
            expect("update", "coordination.k8s.io", "leases")
        );
        assert_eq!(
            call("POST", "/apis/events.k8s.io/v1/namespaces/ns/events"),
            expect("create", "events.k8s.io", "events")
        );
        assert_eq!(
            call("GET", "/api/v1/namespaces/ns"),
            expect("get", "", "namespaces")
        );
        let apply = ApiCall::parse(
            "PATCH",
            &"/api/v1/namespaces/ns/services/s?fieldManager=f&force=true"
                .parse()
                .unwrap(),
            Some("application/apply-patch+yaml"),
        )
        .unwrap();
        assert_eq!(apply.verb, "apply");
        assert!(apply.is_write());
        assert_eq!(call("GET", "/version"), None);
        assert_eq!(call("GET", "/apis/ray.io/v1"), None);
    }
}
