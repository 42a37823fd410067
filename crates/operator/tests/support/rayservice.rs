//! Reading a RayService's status in tests, and waiting for it.

use std::time::Duration;

use futures::StreamExt;
use kube::runtime::{WatchStreamExt, watcher};
use kuberay_api::{RayService, RayServiceStatuses};
use kuberay_operator::controllers::rayservice::gateway::HTTPRoute;
use kuberay_testenv::harness::TestNamespace;

/// The status, empty when there is none yet.
pub fn status(s: &RayService) -> RayServiceStatuses {
    s.status.clone().unwrap_or_default()
}

/// A condition as (status, reason, message).
pub fn condition(s: &RayService, type_: &str) -> Option<(String, String, String)> {
    let c = status(s)
        .conditions?
        .into_iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status, c.reason, c.message))
}

/// The active cluster's name.
pub fn active(s: &RayService) -> Option<String> {
    status(s).active_service_status?.ray_cluster_name
}

/// The pending cluster's name.
pub fn pending(s: &RayService) -> Option<String> {
    status(s).pending_service_status?.ray_cluster_name
}

/// Watches RayService `name` until a version of it satisfies `check`;
/// after `timeout`, an error with the last status seen, for the caller's
/// failure report. A watch hands over every version the API server
/// stores, so a state that lasts a moment (an upgrade finished between
/// two polls on a busy machine) is still seen.
pub async fn watch_service(
    ns: &TestNamespace,
    name: &str,
    timeout: Duration,
    check: impl Fn(&RayService) -> bool,
) -> Result<RayService, String> {
    // The watch runs as a task of its own, polled from the runtime's loop
    // rather than from inside the test's (large, debug-built) future: the
    // watcher's decoding needs more stack than is left there on a test
    // thread.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let api = ns.api::<RayService>();
    let watched = name.to_string();
    let watch = tokio::spawn(async move {
        let mut versions = watcher::watch_object(api, &watched)
            .default_backoff()
            .boxed();
        while let Some(v) = versions.next().await {
            if let Ok(Some(s)) = v
                && tx.send(s).is_err()
            {
                break;
            }
        }
    });
    let mut last = None;
    let found = tokio::time::timeout(timeout, async {
        while let Some(s) = rx.recv().await {
            if check(&s) {
                return Some(s);
            }
            last = Some(s.status);
        }
        None
    })
    .await;
    watch.abort();
    match found {
        Ok(Some(s)) => Ok(s),
        _ => Err(format!("last status: {last:#?}")),
    }
}

/// [`watch_service`] within the suite's [`super::TIMEOUT`], panicking with
/// `what` and the last status.
pub async fn wait_service(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&RayService) -> bool,
) -> RayService {
    watch_service(ns, name, super::TIMEOUT, check)
        .await
        .unwrap_or_else(|last| panic!("timed out waiting for {what}; {last}"))
}

/// An HTTPRoute's backends as (service name, weight).
pub fn route_backends(r: &HTTPRoute) -> Vec<(String, i32)> {
    r.spec.rules[0]
        .backend_refs
        .iter()
        .flatten()
        .map(|b| (b.name.clone(), b.weight.unwrap_or(1)))
        .collect()
}
