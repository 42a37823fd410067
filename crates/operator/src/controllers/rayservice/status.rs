//! The RayService's status, the pure part: KubeRay's condition types and
//! reasons, the conditions a reconcile's observations lead to (with, beyond
//! KubeRay, a Ready message that says what the service waits for), the
//! initializing timeout, and the specs this operator refuses.

use std::time::Duration;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kuberay_api::rayservice::{RayServiceUpgradeType, ServiceStatus};
use kuberay_api::validation::{INITIALIZING_TIMEOUT_ANNOTATION, parse_timeout};
use kuberay_api::{RayCluster, RayService, RayServiceStatuses};

use crate::kit::conditions;
use crate::ray::service::serve_ports;

pub const READY: &str = "Ready";
pub const UPGRADE_IN_PROGRESS: &str = "UpgradeInProgress";
pub const ROLLBACK_IN_PROGRESS: &str = "RollbackInProgress";
pub const SUSPENDING: &str = "Suspending";
pub const SUSPENDED: &str = "Suspended";

pub const INITIALIZING: &str = "Initializing";
pub const INITIALIZING_TIMEOUT: &str = "InitializingTimeout";
pub const ZERO_SERVE_ENDPOINTS: &str = "ZeroServeEndpoints";
pub const NON_ZERO_SERVE_ENDPOINTS: &str = "NonZeroServeEndpoints";
pub const BOTH_CLUSTERS_EXIST: &str = "BothActivePendingClustersExist";
pub const NO_PENDING_CLUSTER: &str = "NoPendingCluster";
pub const NO_ACTIVE_CLUSTER: &str = "NoActiveCluster";
pub const VALIDATION_FAILED: &str = "ValidationFailed";
/// Not KubeRay's: the Gateway API CRDs an incremental upgrade needs are
/// not installed.
pub const GATEWAY_API_MISSING: &str = "GatewayAPIMissing";
pub const SUSPEND_REQUESTED: &str = "SuspendRequested";
pub const SUSPEND_IN_PROGRESS: &str = "SuspendInProgress";
pub const SUSPEND_COMPLETE: &str = "SuspendComplete";
pub const RESUMED: &str = "RayServiceResumed";

/// Sets a condition of the status, observed at the status's generation.
pub fn set(
    st: &mut RayServiceStatuses,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
) {
    let generation = st.observed_generation;
    let cs = st.conditions.get_or_insert_with(Vec::new);
    conditions::set(cs, type_, status, reason, message, generation, now);
}

/// Like [`set`], but a fresh transition time even if the status stays.
pub fn reset(
    st: &mut RayServiceStatuses,
    type_: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: &Time,
) {
    if let Some(cs) = st.conditions.as_mut() {
        conditions::remove(cs, type_);
    }
    set(st, type_, status, reason, message, now);
}

pub fn is_true(st: &RayServiceStatuses, type_: &str) -> bool {
    conditions::is_true(st.conditions.as_ref(), type_)
}

pub fn reason_of<'a>(st: &'a RayServiceStatuses, type_: &str) -> Option<&'a str> {
    conditions::find(st.conditions.as_ref(), type_).map(|c| c.reason.as_str())
}

pub fn active_name(st: &RayServiceStatuses) -> Option<&str> {
    st.active_service_status
        .as_ref()
        .and_then(|s| s.ray_cluster_name.as_deref())
        .filter(|n| !n.is_empty())
}

pub fn pending_name(st: &RayServiceStatuses) -> Option<&str> {
    st.pending_service_status
        .as_ref()
        .and_then(|s| s.ray_cluster_name.as_deref())
        .filter(|n| !n.is_empty())
}

/// Whether the service timed out while initializing (KubeRay's terminal
/// state: only deleting and recreating the RayService starts it again).
pub fn timed_out(st: &RayServiceStatuses) -> bool {
    !is_true(st, READY) && reason_of(st, READY) == Some(INITIALIZING_TIMEOUT)
}

/// The conditions and `serviceStatus` once a reconcile has observed the
/// clusters and endpoints; `waiting` says what a service that is not ready
/// waits for. Returns the timeout's message when the initializing timeout
/// has just run out (the cluster names are then cleared, so the clusters
/// are cleaned up).
pub fn conclude(
    svc: &RayService,
    st: &mut RayServiceStatuses,
    waiting: &str,
    now: &Time,
) -> Option<String> {
    let starting = "RayService is initializing";
    if st.conditions.as_ref().is_none_or(Vec::is_empty)
        || reason_of(st, READY) == Some(VALIDATION_FAILED)
    {
        reset(st, READY, false, INITIALIZING, starting, now);
        if reason_of(st, UPGRADE_IN_PROGRESS).is_none() {
            set(st, UPGRADE_IN_PROGRESS, false, INITIALIZING, starting, now);
        }
    }
    let mut timeout_message = None;
    let detail = |base: &str| {
        if waiting.is_empty() {
            base.to_string()
        } else {
            format!("{base}: {waiting}")
        }
    };
    if st.num_serve_endpoints.unwrap_or(0) > 0 {
        // Ready, but what is still wrong (a refused config, an unhealthy
        // application, an upgrade under way) is said too.
        let msg = detail("Number of serve endpoints is greater than 0");
        set(st, READY, true, NON_ZERO_SERVE_ENDPOINTS, &msg, now);
    } else if is_true(st, READY) || reason_of(st, READY) == Some(ZERO_SERVE_ENDPOINTS) {
        set(
            st,
            READY,
            false,
            ZERO_SERVE_ENDPOINTS,
            &detail("Number of serve endpoints dropped to 0"),
            now,
        );
    } else if reason_of(st, READY) == Some(INITIALIZING) {
        set(st, READY, false, INITIALIZING, &detail(starting), now);
        timeout_message = initializing_timeout(svc, st, now);
    }
    match (active_name(st).is_some(), pending_name(st).is_some()) {
        (true, true) => set(
            st,
            UPGRADE_IN_PROGRESS,
            true,
            BOTH_CLUSTERS_EXIST,
            "Both active and pending Ray clusters exist",
            now,
        ),
        (true, false) => set(
            st,
            UPGRADE_IN_PROGRESS,
            false,
            NO_PENDING_CLUSTER,
            "Active Ray cluster exists and no pending Ray cluster",
            now,
        ),
        _ => {
            if !matches!(
                reason_of(st, UPGRADE_IN_PROGRESS),
                Some(INITIALIZING | INITIALIZING_TIMEOUT)
            ) {
                set(
                    st,
                    UPGRADE_IN_PROGRESS,
                    false,
                    NO_ACTIVE_CLUSTER,
                    "No active Ray cluster exists, and the RayService is not initializing",
                    now,
                );
            }
        }
    }
    st.service_status = Some(if is_true(st, READY) {
        ServiceStatus::Running
    } else {
        ServiceStatus::New
    });
    timeout_message
}

fn initializing_timeout(
    svc: &RayService,
    st: &mut RayServiceStatuses,
    now: &Time,
) -> Option<String> {
    let timeout = svc
        .metadata
        .annotations
        .as_ref()?
        .get(INITIALIZING_TIMEOUT_ANNOTATION)
        .and_then(|v| parse_timeout(v).ok())?;
    let since = conditions::find(st.conditions.as_ref(), READY)?
        .last_transition_time
        .0;
    let spent = Duration::try_from(now.0.duration_since(since)).unwrap_or_default();
    if spent < timeout {
        return None;
    }
    for s in [
        &mut st.active_service_status,
        &mut st.pending_service_status,
    ] {
        if let Some(s) = s.as_mut() {
            s.ray_cluster_name = None;
        }
    }
    let message = format!(
        "RayService failed to become ready within the configured timeout of {}s. Time spent initializing: {}s",
        timeout.as_secs(),
        spent.as_secs()
    );
    set(st, READY, false, INITIALIZING_TIMEOUT, &message, now);
    Some(message)
}

/// When the initializing timeout runs out, if it is set and running.
pub fn timeout_deadline(svc: &RayService, st: &RayServiceStatuses) -> Option<jiff::Timestamp> {
    if reason_of(st, READY) != Some(INITIALIZING) {
        return None;
    }
    let timeout = svc
        .metadata
        .annotations
        .as_ref()?
        .get(INITIALIZING_TIMEOUT_ANNOTATION)
        .and_then(|v| parse_timeout(v).ok())?;
    let since = conditions::find(st.conditions.as_ref(), READY)?
        .last_transition_time
        .0;
    since
        .checked_add(jiff::SignedDuration::try_from(timeout).ok()?)
        .ok()
}

/// What the API accepts but this operator refuses, each with its field
/// path: a
/// head container with ports but none for Serve and no `serveService`, or
/// none for Serve at all in an incremental upgrade, which ignores
/// `serveService` (KubeRay fails each reconcile on it; here it is said up
/// front).
pub fn refusals(svc: &RayService, probe: &RayCluster) -> Vec<String> {
    let mut out = Vec::new();
    let strategy = svc
        .spec
        .upgrade_strategy
        .as_ref()
        .and_then(|s| s.type_.as_ref());
    let incremental = strategy == Some(&RayServiceUpgradeType::NewClusterWithIncrementalUpgrade);
    if incremental && serve_ports(probe).is_empty() {
        out.push(
            "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].ports: needs a port named 'serve' (or prefixed 'serve-') for the per-cluster Serve services of NewClusterWithIncrementalUpgrade (spec.serveService is not used by it)".to_string(),
        );
    } else if svc.spec.serve_service.is_none() && serve_ports(probe).is_empty() {
        out.push(
            "spec.rayClusterConfig.headGroupSpec.template.spec.containers[0].ports: needs a port named 'serve' (or prefixed 'serve-', e.g. 'serve-grpc'), or spec.serveService, for the Serve service".to_string(),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use kuberay_api::rayservice::RayServiceStatus;

    fn t(s: &str) -> Time {
        Time(s.parse().unwrap())
    }

    fn svc(annotations: &str) -> RayService {
        serde_yaml::from_str(&format!(
            "apiVersion: ray.io/v1\nkind: RayService\nmetadata: {{name: web, annotations: {{{annotations}}}}}\nspec:\n  rayClusterConfig:\n    headGroupSpec:\n      rayStartParams: {{}}\n      template: {{spec: {{containers: [{{name: ray-head, image: x}}]}}}}\n"
        ))
        .unwrap()
    }

    fn named(active: Option<&str>, pending: Option<&str>) -> RayServiceStatuses {
        let s = |n: Option<&str>| {
            Some(RayServiceStatus {
                ray_cluster_name: n.map(String::from),
                ..Default::default()
            })
        };
        RayServiceStatuses {
            active_service_status: s(active),
            pending_service_status: s(pending),
            ..Default::default()
        }
    }

    #[test]
    fn initializing_says_what_it_waits_for_then_ready_then_upgrading() {
        let s = svc("");
        let mut st = named(None, Some("web-abcde"));
        conclude(
            &s,
            &mut st,
            "RayCluster web-abcde: the head pod is Pending",
            &t("2026-01-01T00:00:00Z"),
        );
        let ready = conditions::find(st.conditions.as_ref(), READY).unwrap();
        assert_eq!(
            (ready.status.as_str(), ready.reason.as_str()),
            ("False", INITIALIZING)
        );
        assert_eq!(
            ready.message,
            "RayService is initializing: RayCluster web-abcde: the head pod is Pending"
        );
        assert_eq!(reason_of(&st, UPGRADE_IN_PROGRESS), Some(INITIALIZING));
        let mut st2 = named(Some("web-abcde"), None);
        st2.conditions = st.conditions.clone();
        st2.num_serve_endpoints = Some(2);
        conclude(&s, &mut st2, "", &t("2026-01-01T00:01:00Z"));
        assert!(is_true(&st2, READY));
        assert_eq!(st2.service_status, Some(ServiceStatus::Running));
        assert_eq!(
            reason_of(&st2, UPGRADE_IN_PROGRESS),
            Some(NO_PENDING_CLUSTER)
        );
        st2.pending_service_status = named(None, Some("web-fghij")).pending_service_status;
        conclude(&s, &mut st2, "", &t("2026-01-01T00:02:00Z"));
        assert!(is_true(&st2, UPGRADE_IN_PROGRESS));
        st2.num_serve_endpoints = Some(0);
        conclude(
            &s,
            &mut st2,
            "no serve endpoint is ready",
            &t("2026-01-01T00:03:00Z"),
        );
        assert_eq!(reason_of(&st2, READY), Some(ZERO_SERVE_ENDPOINTS));
    }

    #[test]
    fn the_initializing_timeout_fails_the_service_and_clears_the_clusters() {
        let s = svc("ray.io/initializing-timeout: 5m");
        let mut st = named(None, Some("web-abcde"));
        assert_eq!(conclude(&s, &mut st, "", &t("2026-01-01T00:00:00Z")), None);
        assert_eq!(
            timeout_deadline(&s, &st),
            Some("2026-01-01T00:05:00Z".parse().unwrap())
        );
        assert_eq!(conclude(&s, &mut st, "", &t("2026-01-01T00:04:59Z")), None);
        let msg = conclude(&s, &mut st, "", &t("2026-01-01T00:05:00Z")).unwrap();
        assert!(msg.contains("300s"), "{msg}");
        assert!(timed_out(&st));
        assert_eq!(pending_name(&st), None);
    }

    #[test]
    fn unsupported_features_are_refused_with_their_path() {
        let mut s = svc("");
        s.spec.upgrade_strategy =
            Some(serde_yaml::from_str("{type: NewClusterWithIncrementalUpgrade}").unwrap());
        s.spec
            .ray_cluster_config
            .head_group_spec
            .template
            .spec
            .as_mut()
            .unwrap()
            .containers[0]
            .ports = Some(vec![
            serde_yaml::from_str("{name: dashboard, containerPort: 8265}").unwrap(),
        ]);
        let probe = super::super::cluster::ray_cluster(&s, "web-x");
        let r = refusals(&s, &probe);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(r[0].contains("containers[0].ports") && r[0].contains("per-cluster"));
        s.spec.upgrade_strategy = None;
        let r = refusals(&s, &probe);
        assert_eq!(r.len(), 1, "{r:?}");
        assert!(!r[0].contains("per-cluster"));
    }
}
