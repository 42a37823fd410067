//! What to create and delete so a cluster's pods match its spec. Pure: the
//! spec and the pods that exist (as the cache plus pending expectations
//! show them) in, a plan out. Deletion choices follow KubeRay: broken pods
//! are replaced, `workersToDelete` is honoured exactly, and with the
//! autoscaler on the operator never chooses workers to remove by itself.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use kuberay_api::RayCluster;
use kuberay_api::features::RAY_MULTI_HOST_INDEXING;
use kuberay_api::names::*;
use kuberay_api::raycluster::{RayClusterUpgradeType, WorkerGroupSpec};

use crate::ray::pod::WorkerSlot;
use crate::runtime::config::{Config, KUBERAY_VERSION};

/// A pod to delete and the event that explains it.
#[derive(Clone, Debug, PartialEq)]
pub struct Deletion {
    pub pod: String,
    pub reason: &'static str,
    pub message: String,
}

impl Deletion {
    /// A worker pod to delete, with the event message that says why.
    fn worker(pod: &Pod, message: String) -> Self {
        Deletion {
            pod: name_of(pod).into(),
            reason: "DeletedWorkerPod",
            message,
        }
    }
}

/// At most this many worker pods are created by one reconcile, and a
/// cluster that needs more gets one such batch per [`PACING_INTERVAL`]: a
/// group that asks for thousands (or, by mistake, two billion) gets them
/// paced, each reconcile bounded in memory and API calls, and other
/// clusters keep most of the client's rate limit in the meantime.
pub const MAX_WORKER_CREATIONS: usize = 32;

/// See [`MAX_WORKER_CREATIONS`].
pub const PACING_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Worker creations per second for all paced clusters together: a third of
/// the default client rate limit (`--qps 100`), so that many huge clusters
/// at once still leave most of it to the others.
pub const PACED_CREATIONS_PER_SECOND: f64 = 32.0;

/// Everything one reconcile should do to the cluster's pods.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    /// Delete every pod of the cluster (suspend, or a `Recreate` upgrade),
    /// with the event message; nothing else happens in this pass.
    pub delete_all: Option<String>,
    pub deletions: Vec<Deletion>,
    pub create_head: bool,
    /// Never more than [`MAX_WORKER_CREATIONS`].
    pub create_workers: Vec<WorkerSlot>,
    /// Workers missing in all, this pass's creations included: more than
    /// `create_workers` holds when the rest must wait for later passes.
    pub workers_missing: u64,
    /// A head made by another operator version: adopt it by rewriting its
    /// hash and version annotations instead of recreating every pod.
    pub adopt_head: Option<String>,
    /// A state the operator refuses to act on (e.g. two heads).
    pub problem: Option<String>,
}

pub fn name_of(p: &Pod) -> &str {
    p.metadata.name.as_deref().unwrap_or_default()
}

fn label<'a>(p: &'a Pod, key: &str) -> Option<&'a str> {
    p.metadata.labels.as_ref()?.get(key).map(String::as_str)
}

pub fn is_terminating(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_some()
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("Pending")
}

/// Replicas a group should have, in pods: `replicas` kept within
/// `[minReplicas, maxReplicas]`, times `numOfHosts`; 0 when suspended.
pub fn desired_pods(g: &WorkerGroupSpec) -> i32 {
    if g.suspend == Some(true) {
        return 0;
    }
    let min = g.min_replicas.unwrap_or(0);
    let max = g.max_replicas.unwrap_or(i32::MAX);
    let r = g.replicas.unwrap_or(min);
    let clamped = if r < min { min } else { r.min(max) };
    clamped.saturating_mul(g.num_of_hosts.unwrap_or(1).max(1))
}

/// Why a pod should be deleted so a fresh one can replace it, if it should:
/// it reached a terminal phase, or its Ray container stopped and its restart
/// policy will never bring it back.
pub fn broken(p: &Pod, node_type: &str) -> Option<String> {
    let name = name_of(p);
    let ph = phase(p);
    if ph == "Failed" || ph == "Succeeded" {
        return Some(format!(
            "The {node_type} Pod {name} status is {ph} which is a terminal state. KubeRay will delete the Pod and create new Pods in the next reconciliation if necessary."
        ));
    }
    let restart = p
        .spec
        .as_ref()
        .and_then(|s| s.restart_policy.as_deref())
        .unwrap_or("Always");
    let ray_container = p
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.as_str());
    let terminated = p
        .status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .and_then(|cs| cs.iter().find(|c| Some(c.name.as_str()) == ray_container))
        .and_then(|c| c.state.as_ref())
        .and_then(|s| s.terminated.as_ref());
    if ph == "Running"
        && restart == "Never"
        && let Some(t) = terminated
    {
        return Some(format!(
            "The Pod status of the {node_type} Pod {name} is {ph}, and the Ray container terminated with exit code {}. The container is unable to restart due to its restart policy Never, so KubeRay will delete it.",
            t.exit_code
        ));
    }
    None
}

/// Random lower-case suffixes, injected so planning stays deterministic in tests.
pub type Suffix<'a> = &'a mut dyn FnMut() -> String;

/// Plans one reconcile. `suspending` says the cluster is (being) suspended;
/// at most `budget` workers are created (see [`MAX_WORKER_CREATIONS`]).
pub fn plan(
    cluster: &RayCluster,
    pods: &[Arc<Pod>],
    cfg: &Config,
    spec_hash: &str,
    suspending: bool,
    budget: usize,
    suffix: Suffix,
) -> Plan {
    let mut plan = Plan::default();
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    if suspending {
        if pods.iter().any(|p| !is_terminating(p)) {
            plan.delete_all = Some(format!(
                "Deleted Pods for RayCluster {}/{name} due to suspension",
                cluster.metadata.namespace.as_deref().unwrap_or_default()
            ));
        }
        return plan;
    }
    let heads: Vec<&Arc<Pod>> = pods
        .iter()
        .filter(|p| label(p, NODE_TYPE_LABEL) == Some(HEAD))
        .collect();
    if let Some(head) = heads.first()
        && cluster
            .spec
            .upgrade_strategy
            .as_ref()
            .and_then(|u| u.type_.as_ref())
            == Some(&RayClusterUpgradeType::Recreate)
    {
        let annotations = head.metadata.annotations.clone().unwrap_or_default();
        let version = annotations
            .get(KUBERAY_VERSION_ANNOTATION)
            .map(String::as_str)
            .unwrap_or_default();
        let hash = annotations
            .get(UPGRADE_HASH_ANNOTATION)
            .map(String::as_str)
            .unwrap_or_default();
        if !version.is_empty() && version != KUBERAY_VERSION {
            plan.adopt_head = Some(name_of(head).to_string());
        } else if !hash.is_empty() && hash != spec_hash {
            plan.delete_all = Some(format!(
                "Deleted all Pods for RayCluster {}/{name} due to spec change with Recreate upgradeStrategy",
                cluster.metadata.namespace.as_deref().unwrap_or_default()
            ));
            return plan;
        }
    }
    match heads.as_slice() {
        [] => {
            let provisioned = crate::kit::conditions::is_true(
                cluster.status.as_ref().and_then(|s| s.conditions.as_ref()),
                crate::ray::conditions::PROVISIONED,
            );
            let no_restart = cluster
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(DISABLE_PROVISIONED_HEAD_RESTART_ANNOTATION))
                .is_some_and(|v| v == "true");
            plan.create_head = !(provisioned && no_restart);
        }
        [head] => {
            if let Some(why) = broken(head, HEAD).filter(|_| !is_terminating(head)) {
                plan.deletions.push(Deletion {
                    pod: name_of(head).into(),
                    reason: "DeletedHeadPod",
                    message: why,
                });
            }
        }
        many => {
            let names: Vec<&str> = many.iter().map(|p| name_of(p)).collect();
            plan.problem = Some(format!(
                "{} head pods found {names:?}. Please delete extra head pods",
                many.len()
            ));
        }
    }
    let autoscaling = cluster.spec.enable_in_tree_autoscaling == Some(true);
    let may_choose = !autoscaling || cfg.random_pod_delete;
    let to_delete: BTreeSet<&str> = cluster
        .spec
        .worker_group_specs
        .iter()
        .flatten()
        .flat_map(|g| {
            g.scale_strategy
                .iter()
                .flat_map(|s| s.workers_to_delete.iter().flatten())
        })
        .map(String::as_str)
        .collect();
    let multi_host_indexing = cfg.gates.enabled(RAY_MULTI_HOST_INDEXING);
    for (gi, group) in cluster.spec.worker_group_specs.iter().flatten().enumerate() {
        let members: Vec<&Arc<Pod>> = pods
            .iter()
            .filter(|p| {
                label(p, NODE_TYPE_LABEL) == Some(WORKER)
                    && label(p, GROUP_LABEL) == Some(&group.group_name)
            })
            .collect();
        let ctx = GroupCtx {
            gi,
            group,
            budget,
            members,
            to_delete: &to_delete,
            may_choose,
            indexing: multi_host_indexing,
        };
        if group.num_of_hosts.unwrap_or(1) > 1 && multi_host_indexing {
            plan_multi_host(&ctx, &mut plan, suffix);
        } else {
            plan_single_host(&ctx, &mut plan);
        }
    }
    // Pods of groups that are no longer in the spec.
    let groups: BTreeSet<&str> = cluster
        .spec
        .worker_group_specs
        .iter()
        .flatten()
        .map(|g| g.group_name.as_str())
        .collect();
    for p in pods
        .iter()
        .filter(|p| label(p, NODE_TYPE_LABEL) == Some(WORKER) && !is_terminating(p))
    {
        if let Some(g) = label(p, GROUP_LABEL).filter(|g| !groups.contains(g)) {
            plan.deletions.push(Deletion::worker(
                p,
                format!(
                    "Deleted worker Pod {} of group {g}, which is no longer in the spec",
                    name_of(p)
                ),
            ));
        }
    }
    plan
}

struct GroupCtx<'a> {
    gi: usize,
    group: &'a WorkerGroupSpec,
    budget: usize,
    members: Vec<&'a Arc<Pod>>,
    to_delete: &'a BTreeSet<&'a str>,
    may_choose: bool,
    indexing: bool,
}

fn replica_index(p: &Pod) -> Option<i32> {
    label(p, REPLICA_INDEX_LABEL)?.parse().ok()
}

/// The `n` smallest non-negative indices not in `used`.
fn free_indices(used: &BTreeSet<i32>, n: usize) -> Vec<i32> {
    (0..).filter(|i| !used.contains(i)).take(n).collect()
}

fn plan_single_host(ctx: &GroupCtx, plan: &mut Plan) {
    let group = &ctx.group.group_name;
    let mut alive: Vec<&Arc<Pod>> = Vec::new();
    for p in &ctx.members {
        if let Some(why) = broken(p, WORKER).filter(|_| !is_terminating(p)) {
            plan.deletions.push(Deletion::worker(p, why));
        } else if ctx.to_delete.contains(name_of(p)) {
            if !is_terminating(p) {
                plan.deletions.push(Deletion::worker(
                    p,
                    format!(
                        "Deleted pod {} of group {group} as listed in workersToDelete",
                        name_of(p)
                    ),
                ));
            }
        } else {
            alive.push(p);
        }
    }
    let desired = desired_pods(ctx.group).max(0) as usize;
    if alive.len() < desired {
        let missing = desired - alive.len();
        plan.workers_missing = plan.workers_missing.saturating_add(missing as u64);
        let budget = ctx.budget.saturating_sub(plan.create_workers.len());
        let used: BTreeSet<i32> = alive.iter().filter_map(|p| replica_index(p)).collect();
        for i in free_indices(&used, missing.min(budget)) {
            plan.create_workers.push(WorkerSlot {
                group: ctx.gi,
                replica_index: ctx.indexing.then_some(i),
                ..Default::default()
            });
        }
    } else if alive.len() > desired && ctx.may_choose {
        // Remove what helps least: pods still starting, then the newest.
        let mut surplus: Vec<&Arc<Pod>> =
            alive.into_iter().filter(|p| !is_terminating(p)).collect();
        surplus.sort_by_key(|p| {
            (
                phase(p) == "Running",
                std::cmp::Reverse(p.metadata.creation_timestamp.clone()),
            )
        });
        let excess = surplus.len().saturating_sub(desired);
        for p in surplus.into_iter().take(excess) {
            plan.deletions.push(Deletion::worker(
                p,
                format!(
                    "Deleted Pod {} of group {group} to scale down to {desired}",
                    name_of(p)
                ),
            ));
        }
    }
}

/// Multi-host groups scale by whole replicas: the `numOfHosts` pods of a
/// replica are created together and deleted together.
fn plan_multi_host(ctx: &GroupCtx, plan: &mut Plan, suffix: Suffix) {
    let group = &ctx.group.group_name;
    let hosts = ctx.group.num_of_hosts.unwrap_or(1).max(1) as usize;
    let mut replicas: BTreeMap<&str, Vec<&Arc<Pod>>> = BTreeMap::new();
    for p in &ctx.members {
        if let Some(r) = label(p, REPLICA_NAME_LABEL) {
            replicas.entry(r).or_default().push(p);
        }
    }
    let delete_replica = |plan: &mut Plan, pods: &[&Arc<Pod>], why: &str| {
        for p in pods.iter().filter(|p| !is_terminating(p)) {
            plan.deletions.push(Deletion::worker(
                p,
                format!("Deleted worker Pod {} for group {group}: {why}", name_of(p)),
            ));
        }
    };
    let mut valid: Vec<(&str, i32)> = Vec::new();
    for (name, pods) in &replicas {
        if pods.len() < hosts {
            delete_replica(plan, pods, "cleanup of incomplete multi-host group");
        } else if let Some(why) = pods.iter().find_map(|p| broken(p, WORKER)) {
            delete_replica(plan, pods, &why);
        } else if pods.iter().any(|p| ctx.to_delete.contains(name_of(p))) {
            delete_replica(plan, pods, "autoscaler scale-down request");
        } else {
            valid.push((
                name,
                pods.iter().find_map(|p| replica_index(p)).unwrap_or(-1),
            ));
        }
    }
    let desired = (desired_pods(ctx.group).max(0) as usize) / hosts;
    if valid.len() < desired {
        let missing = desired - valid.len();
        plan.workers_missing = plan
            .workers_missing
            .saturating_add((missing as u64).saturating_mul(hosts as u64));
        // Whole replicas only; at least one, however many hosts it has.
        let budget = ctx.budget.saturating_sub(plan.create_workers.len()) / hosts;
        let first = plan.create_workers.is_empty() && ctx.budget > 0;
        let n = missing.min(if first { budget.max(1) } else { budget });
        let used: BTreeSet<i32> = valid.iter().map(|(_, i)| *i).collect();
        for index in free_indices(&used, n) {
            let replica = format!("{group}-{}", suffix());
            for host in 0..hosts as i32 {
                plan.create_workers.push(WorkerSlot {
                    group: ctx.gi,
                    replica_index: Some(index),
                    replica_name: Some(replica.clone()),
                    host_index: Some(host),
                });
            }
        }
    } else if valid.len() > desired && ctx.may_choose {
        // The highest indices go first, so indices stay dense.
        valid.sort_by_key(|(_, i)| std::cmp::Reverse(*i));
        for (name, _) in valid.iter().take(valid.len() - desired) {
            delete_replica(plan, &replicas[name], "scaling down");
        }
    }
}
