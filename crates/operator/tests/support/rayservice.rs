//! Reading a RayService's status in tests, and waiting for it.

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

/// [`super::wait_for`] for RayService `name`.
pub async fn wait_service(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&RayService) -> bool,
) -> RayService {
    super::wait_for(ns, name, what, check).await
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
