//! Reading a RayService's status in tests, and waiting for it.

use std::time::Duration;

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

/// Polls RayService `name` until it satisfies `check`; after `timeout`, an
/// error with the last status seen, for the caller's failure report.
pub async fn poll_service(
    ns: &TestNamespace,
    name: &str,
    timeout: Duration,
    check: impl Fn(&RayService) -> bool,
) -> Result<RayService, String> {
    let api = ns.api::<RayService>();
    let deadline = tokio::time::Instant::now() + timeout;
    let mut last = None;
    loop {
        if let Ok(s) = api.get(name).await {
            if check(&s) {
                return Ok(s);
            }
            last = Some(s.status);
        }
        if tokio::time::Instant::now() > deadline {
            return Err(format!("last status: {last:#?}"));
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// [`poll_service`] within the suite's [`super::TIMEOUT`], panicking with
/// `what` and the last status.
pub async fn wait_service(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&RayService) -> bool,
) -> RayService {
    poll_service(ns, name, super::TIMEOUT, check)
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
