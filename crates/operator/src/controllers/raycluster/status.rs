//! RayCluster status from what exists right now: replica counts from pod
//! phases and readiness (a Pending pod is not ready, a terminating one is not
//! available), desired totals from the spec, head and service addresses, and
//! KubeRay's conditions. Pure: the caller writes the result only when it
//! differs from what is stored.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kuberay_api::names::{HEAD, NODE_TYPE_LABEL, WORKER};
use kuberay_api::raycluster::{ClusterState, HeadInfo};
use kuberay_api::{RayCluster, RayClusterStatus};

use super::autoscaling;
use super::scale::{PACED_CREATIONS_PER_SECOND, desired_pods, is_terminating};
use crate::kit::conditions;
use crate::ray::quantity::Totals;

use crate::ray::conditions::*;

/// What a reconcile saw and did, for the status.
pub struct Observation<'a> {
    pub pods: &'a [Arc<Pod>],
    pub head_service: Option<&'a Service>,
    /// Why creating or deleting pods failed (`ReplicaFailure`): reason, message.
    pub failure: Option<(&'a str, String)>,
    pub suspending: bool,
    /// Workers are being created in paced batches: the status reason says
    /// how far it got ("Creating workers in batches: 5000 of 2000000000 ...").
    pub paced: bool,
    pub now: Time,
}

fn node_type(p: &Pod) -> Option<&str> {
    p.metadata
        .labels
        .as_ref()?
        .get(NODE_TYPE_LABEL)
        .map(String::as_str)
}

fn running(p: &Pod) -> bool {
    p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

fn ready(p: &Pod) -> bool {
    running(p)
        && p.status
            .as_ref()
            .and_then(|s| s.conditions.as_ref())
            .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Desired totals of every resource: the head once, each group's pod times
/// its desired pod count.
pub fn desired_resources(cluster: &RayCluster) -> Totals {
    let mut total = Totals::default();
    if let Some(s) = &cluster.spec.head_group_spec.template.spec {
        total.merge(&Totals::of_pod(s), 1.0);
    }
    for g in cluster.spec.worker_group_specs.iter().flatten() {
        if let Some(s) = &g.template.spec {
            total.merge(&Totals::of_pod(s), f64::from(desired_pods(g)));
        }
    }
    total
}

/// The HeadPodReady condition from the head pod: its Ready condition, and
/// when containers are not ready, why (image pull error, crash loop...).
fn head_ready_condition(head: Option<&Pod>) -> (bool, String, String) {
    let Some(head) = head else {
        return (false, "HeadPodNotFound".into(), "Head Pod not found".into());
    };
    let status = head.status.as_ref();
    let conds = status.and_then(|s| s.conditions.as_ref());
    // Not scheduled says more than not ready: which nodes refused and why.
    if let Some(c) = conds.and_then(|cs| {
        cs.iter()
            .find(|c| c.type_ == "PodScheduled" && c.status == "False")
    }) {
        return (
            false,
            c.reason.clone().unwrap_or_else(|| "Unschedulable".into()),
            c.message.clone().unwrap_or_default(),
        );
    }
    let cond = conds.and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"));
    let Some(c) = cond else {
        let phase = status
            .and_then(|s| s.phase.clone())
            .unwrap_or_else(|| "Pending".into());
        return (
            false,
            "Unknown".into(),
            format!(
                "Head Pod {} is {phase}",
                head.metadata.name.as_deref().unwrap_or_default()
            ),
        );
    };
    let ok = c.status == "True";
    let mut reason = c.reason.clone().unwrap_or_default();
    let mut message = c.message.clone().unwrap_or_default();
    if ok && reason.is_empty() {
        reason = "HeadPodRunningAndReady".into();
    }
    if reason == "ContainersNotReady" {
        let detail = status
            .and_then(|s| s.container_statuses.as_ref())
            .and_then(|cs| {
                cs.iter().find_map(|cs| {
                    let st = cs.state.as_ref()?;
                    let (r, m) = match (&st.waiting, &st.terminated) {
                        (Some(w), _) => (w.reason.clone()?, w.message.clone().unwrap_or_default()),
                        (_, Some(t)) => (t.reason.clone()?, t.message.clone().unwrap_or_default()),
                        _ => return None,
                    };
                    Some((r, format!("{}: {m}", cs.name)))
                })
            });
        if let Some((r, m)) = detail {
            reason = r;
            message = format!("{message}; {m}");
        }
    }
    if reason.is_empty() {
        reason = "Unknown".into();
    }
    (ok, reason, message)
}

/// The start of every pacing message, so that a finished pacing clears
/// its own reason and nothing else.
pub const PACING_PREFIX: &str = "Creating workers in batches";

fn is_pacing_reason(r: &str) -> bool {
    r.starts_with(PACING_PREFIX)
}

/// The status reason while workers are created in batches.
fn pacing_message(existing: usize, desired: i32, per_second: f64) -> String {
    format!(
        "{PACING_PREFIX}: {existing} of {desired} workers exist; the rest follow at up to {per_second} a second (shared by all clusters this large), so that other clusters are not held up"
    )
}

/// The new status, from the old one and the observation.
pub fn compute(cluster: &RayCluster, obs: &Observation) -> RayClusterStatus {
    let old = cluster.status.clone().unwrap_or_default();
    let mut s = old.clone();
    let generation = cluster.metadata.generation;
    s.observed_generation = generation;
    let live: Vec<&Arc<Pod>> = obs.pods.iter().filter(|p| !is_terminating(p)).collect();
    let workers: Vec<&&Arc<Pod>> = live
        .iter()
        .filter(|p| node_type(p) == Some(WORKER))
        .collect();
    let heads: Vec<&&Arc<Pod>> = live.iter().filter(|p| node_type(p) == Some(HEAD)).collect();
    s.ready_worker_replicas = Some(workers.iter().filter(|p| ready(p)).count() as i32);
    s.available_worker_replicas = Some(workers.iter().filter(|p| running(p)).count() as i32);
    let groups = cluster.spec.worker_group_specs.iter().flatten();
    // Saturating: two groups of a billion replicas each are valid specs.
    let desired_workers: i32 = groups
        .clone()
        .map(desired_pods)
        .fold(0i32, i32::saturating_add);
    let active = || groups.clone().filter(|g| g.suspend != Some(true));
    let hosts = |g: &kuberay_api::raycluster::WorkerGroupSpec| {
        i64::from(g.num_of_hosts.unwrap_or(1).max(1))
    };
    let sum = |f: &dyn Fn(&kuberay_api::raycluster::WorkerGroupSpec) -> i64| -> i32 {
        active().map(f).sum::<i64>().clamp(0, i64::from(i32::MAX)) as i32
    };
    s.desired_worker_replicas = Some(desired_workers);
    s.min_worker_replicas = Some(sum(&|g| i64::from(g.min_replicas.unwrap_or(0)) * hosts(g)));
    s.max_worker_replicas = Some(sum(&|g| {
        i64::from(g.max_replicas.unwrap_or(i32::MAX)) * hosts(g)
    }));
    let totals = desired_resources(cluster);
    s.desired_cpu = Some(totals.quantity("cpu"));
    s.desired_memory = Some(totals.quantity("memory"));
    s.desired_gpu = Some(totals.gpus());
    s.desired_tpu = Some(totals.quantity("google.com/tpu"));

    let all_ready = !live.is_empty() && live.iter().all(|p| ready(p));
    let complete = live.len() == desired_workers as usize + 1 && heads.len() == 1;
    let mut conds = s.conditions.take().unwrap_or_default();
    match &obs.failure {
        Some((reason, message)) => conditions::set(
            &mut conds,
            REPLICA_FAILURE,
            true,
            reason,
            message,
            generation,
            &obs.now,
        ),
        None => conditions::remove(&mut conds, REPLICA_FAILURE),
    }
    if obs.failure.is_none() && all_ready && complete && !obs.suspending {
        s.state = Some(ClusterState::Ready);
        s.reason = None;
    }
    if obs.paced {
        s.reason = Some(pacing_message(
            workers.len(),
            desired_workers,
            PACED_CREATIONS_PER_SECOND,
        ));
    } else if s.reason.as_deref().is_some_and(is_pacing_reason) {
        s.reason = None;
    }
    // Only the sidecar's own message is ever cleared here.
    match heads
        .first()
        .and_then(|h| autoscaling::sidecar_trouble(h, &obs.now))
    {
        Some(trouble) if !obs.paced => s.reason = Some(trouble),
        None if s
            .reason
            .as_deref()
            .is_some_and(|r| r.starts_with(autoscaling::SIDECAR_PREFIX)) =>
        {
            s.reason = None
        }
        _ => {}
    }
    let (head_ok, reason, message) = head_ready_condition(heads.first().map(|p| p.as_ref()));
    conditions::set(
        &mut conds,
        HEAD_POD_READY,
        head_ok,
        &reason,
        &message,
        generation,
        &obs.now,
    );

    let suspended = conditions::is_true(Some(&conds), SUSPENDED);
    if !conditions::is_true(Some(&conds), PROVISIONED) && !suspended {
        if all_ready && complete {
            conditions::set(
                &mut conds,
                PROVISIONED,
                true,
                "AllPodRunningAndReadyFirstTime",
                "All Ray Pods are ready for the first time",
                generation,
                &obs.now,
            );
        } else {
            conditions::set(
                &mut conds,
                PROVISIONED,
                false,
                "RayClusterPodsProvisioning",
                "RayCluster Pods are being provisioned for first time",
                generation,
                &obs.now,
            );
        }
    }
    if obs.suspending {
        if obs.pods.is_empty() {
            conditions::set(
                &mut conds,
                PROVISIONED,
                false,
                "RayClusterPodsProvisioning",
                "RayCluster has been suspended",
                generation,
                &obs.now,
            );
            conditions::set(
                &mut conds, SUSPENDING, false, SUSPENDING, "", generation, &obs.now,
            );
            conditions::set(
                &mut conds, SUSPENDED, true, SUSPENDED, "", generation, &obs.now,
            );
            s.state = Some(ClusterState::Suspended);
        } else {
            conditions::set(
                &mut conds, SUSPENDING, true, SUSPENDING, "", generation, &obs.now,
            );
            conditions::set(
                &mut conds, SUSPENDED, false, SUSPENDED, "", generation, &obs.now,
            );
        }
    } else {
        conditions::set(
            &mut conds, SUSPENDING, false, SUSPENDING, "", generation, &obs.now,
        );
        conditions::set(
            &mut conds, SUSPENDED, false, SUSPENDED, "", generation, &obs.now,
        );
        if s.state == Some(ClusterState::Suspended) {
            s.state = None;
        }
    }
    s.conditions = Some(conds);

    let head_pod = heads.first();
    let pod_ip = head_pod
        .and_then(|p| p.status.as_ref())
        .and_then(|st| st.pod_ip.clone());
    let svc_ip = obs
        .head_service
        .and_then(|svc| svc.spec.as_ref())
        .and_then(|sp| sp.cluster_ip.clone());
    s.head = Some(HeadInfo {
        pod_ip: pod_ip.clone(),
        pod_name: head_pod.and_then(|p| p.metadata.name.clone()),
        // A headless service has no IP; clients reach the head pod itself.
        service_ip: match svc_ip.as_deref() {
            Some("None") | None => pod_ip,
            Some(ip) => Some(ip.to_string()),
        },
        service_name: obs.head_service.and_then(|svc| svc.metadata.name.clone()),
    });
    s.endpoints = obs.head_service.map(endpoints).filter(|e| !e.is_empty());
    if s.state != old.state
        && let Some(state) = &s.state
    {
        s.state_transition_times
            .get_or_insert_with(BTreeMap::new)
            .insert(state.to_string(), obs.now.clone());
    }
    s
}

/// Head service ports by name: node port, else target port, else port.
fn endpoints(svc: &Service) -> BTreeMap<String, String> {
    use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
    let ports = svc
        .spec
        .as_ref()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    ports
        .into_iter()
        .filter_map(|p| {
            let name = p.name.filter(|n| !n.is_empty())?;
            let value = match (p.node_port, p.target_port) {
                (Some(n), _) if n != 0 => n.to_string(),
                (_, Some(IntOrString::Int(t))) if t != 0 => t.to_string(),
                (_, Some(IntOrString::String(t))) => t,
                _ => p.port.to_string(),
            };
            Some((name, value))
        })
        .collect()
}

/// Whether two statuses differ in anything but `lastUpdateTime`: only then
/// is the status written.
pub fn differs(a: &RayClusterStatus, b: &RayClusterStatus) -> bool {
    let strip = |s: &RayClusterStatus| RayClusterStatus {
        last_update_time: None,
        ..s.clone()
    };
    strip(a) != strip(b)
}
