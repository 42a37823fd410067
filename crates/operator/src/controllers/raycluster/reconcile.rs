//! One reconcile of one RayCluster: the I/O around the pure steps.

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kuberay_api::names::{GCS_FT_REDIS_CLEANUP_FINALIZER, random_suffix};
use kuberay_api::schema::MANAGED_BY_KUBERAY;
use kuberay_api::tolerant::Tolerant;
use kuberay_api::validation::validate_raycluster;
use kuberay_api::{RayCluster, RayClusterStatus, defaults};

use super::children::{self, ChildKind};
use super::pods::{self, PodFailure};
use super::status::{self, Observation};
use super::{Context, autoscaling, gcs_storage, hash, redis_cleanup, scale};
use crate::controllers::readable;
use crate::kit::applier::{self, ApplyError};
use crate::kit::runner::Reason;
use crate::kit::{clock, conditions, finalizer};
use crate::ray::conditions::{PROVISIONED, REPLICA_FAILURE, SUSPENDING};
use crate::ray::service;

/// Why a reconcile failed; each variant's reason is stable (event reason,
/// log field, metric label).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("updating the status: {0}")]
    Status(kube::Error),
    #[error("{kind} {name}: {source}")]
    Child {
        kind: ChildKind,
        name: String,
        source: ApplyError,
    },
    #[error("{1}")]
    Replicas(PodFailure, String),
    #[error("{0}")]
    Refused(String),
    #[error("updating the finalizer: {0}")]
    Finalizer(kube::Error),
    #[error("deleting the Ray pods before the Redis cleanup: {0}")]
    DeletePods(kube::Error),
    #[error("creating the Redis cleanup Job: {0}")]
    CreateCleanupJob(kube::Error),
    #[error("the GCS storage PVC: {0}")]
    Storage(kube::Error),
}

impl Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Status(_) => "FailedToUpdateStatus",
            Error::Child { kind, .. } => kind.failed_reason(),
            Error::Replicas(failure, _) => failure.reason(),
            Error::Refused(_) => "PodReconciliationError",
            Error::Finalizer(_) => "FailedToUpdateFinalizer",
            Error::DeletePods(_) => "FailedToDeletePod",
            Error::CreateCleanupJob(_) => "FailedToCreateRedisCleanupJob",
            Error::Storage(_) => "FailedToCreatePVC",
        }
    }
}

fn now() -> Time {
    Time(jiff::Timestamp::now())
}

pub async fn reconcile(obj: Arc<Tolerant<RayCluster>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let key = (ns.clone(), name.clone());
    let note = |e: &str| format!("The RayCluster {ns}/{name} cannot be read: {e}");
    let Some(cluster) = readable(&obj, &ctx.events, "InvalidRayClusterSpec", note).await else {
        return Ok(Action::await_change());
    };
    let mut cluster = cluster.clone();
    if cluster
        .spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != MANAGED_BY_KUBERAY)
    {
        tracing::debug!(%ns, %name, "skipping RayCluster managed by another controller");
        return Ok(Action::await_change());
    }
    if cluster.metadata.deletion_timestamp.is_some() {
        // Owner references let the garbage collector remove the children.
        ctx.expectations.forget(&key);
        ctx.pacer.done(&key);
        ctx.group_sizes.lock().unwrap().remove(&key);
        // Before validation: a cluster whose spec went bad must still go.
        if finalizer::has(&cluster, GCS_FT_REDIS_CLEANUP_FINALIZER) {
            defaults::cluster_spec(&mut cluster.spec);
            return redis_cleanup::on_deletion(&cluster, &ctx).await;
        }
        return Ok(Action::await_change());
    }
    defaults::cluster_spec(&mut cluster.spec);
    if let Err(invalid) = validate_raycluster(&cluster, &ctx.cfg.gates) {
        let message = format!("The RayCluster spec is invalid {ns}/{name}: {invalid}");
        let mut s = cluster.status.clone().unwrap_or_default();
        let mut conds = s.conditions.take().unwrap_or_default();
        conditions::set(
            &mut conds,
            REPLICA_FAILURE,
            true,
            "InvalidRayClusterSpec",
            &message,
            cluster.metadata.generation,
            &now(),
        );
        s.conditions = Some(conds);
        s.reason = Some("InvalidRayClusterSpec".into());
        s.observed_generation = cluster.metadata.generation;
        // One event per distinct problem, not one per resync.
        if write_status(&ctx, &cluster, s).await? {
            ctx.events
                .warning(&cluster, "InvalidRayClusterSpec", "Validate", message)
                .await;
        }
        return Ok(Action::await_change());
    }
    if cluster.status.as_ref().and_then(|s| s.reason.as_deref()) == Some("InvalidRayClusterSpec")
        && let Some(s) = cluster.status.as_mut()
    {
        s.reason = None;
    }

    // Before any pod: a GCS never writes to Redis without the finalizer
    // that cleans up after it. The patch's watch event brings the cluster
    // back.
    if redis_cleanup::needs_finalizer(&cluster, &ctx.cfg) {
        finalizer::add(&ctx.client, &cluster, GCS_FT_REDIS_CLEANUP_FINALIZER)
            .await
            .map_err(Error::Finalizer)?;
        return Ok(Action::await_change());
    }
    report_scaling(&ctx, &cluster, &key).await;

    ctx.pods.wait_ready().await;
    ctx.services.wait_ready().await;
    ctx.secrets.wait_ready().await;
    ctx.claims.wait_ready().await;
    let owner = applier::owner_reference(&cluster);
    children::reconcile_children(&cluster, &ctx, &owner).await?;
    gcs_storage::reconcile(&cluster, &ctx).await?;

    let cached = ctx.pods.owned_by(&ns, &name);
    let pods = ctx.expectations.view(&key, cached);
    let suspending = cluster.spec.suspend == Some(true)
        || conditions::is_true(
            cluster.status.as_ref().and_then(|s| s.conditions.as_ref()),
            SUSPENDING,
        );
    let spec_hash = hash::pod_spec_hash(&cluster.spec);
    // A cluster being paced gets its next batch only once its interval is
    // over, whatever brought it back early (its own pods' watch events).
    let started = std::time::Instant::now();
    let budget = ctx.pacer.budget(&key, started, scale::MAX_WORKER_CREATIONS);
    let plan = scale::plan(
        &cluster,
        &pods,
        &ctx.cfg,
        &spec_hash,
        suspending,
        budget,
        &mut random_suffix,
    );
    let failure = pods::execute(&cluster, &ctx, &plan, &pods, &spec_hash).await;

    let cached = ctx.pods.owned_by(&ns, &name);
    if !ctx.expectations.pending(&key) {
        clear_finished_lists(&ctx, &cluster, &cached).await;
    }
    let pods = ctx.expectations.view(&key, cached);
    let svc_name = service::head_service(&cluster, &ctx.cfg)
        .metadata
        .name
        .unwrap_or_default();
    let head_service = ctx.services.get(&ns, &svc_name);
    // Workers the plan could not take in this pass: say so, and come back
    // soon (other clusters are reconciled in between).
    // A refusal ends pacing: the error's backoff decides when to try again
    // (a paced pass that waits would count as a success and reset it).
    let paced = failure.is_none() && plan.workers_missing > plan.create_workers.len() as u64;
    if !paced {
        ctx.pacer.done(&key);
    } else if !plan.create_workers.is_empty() {
        ctx.pacer
            .batch_made(&key, started, plan.create_workers.len());
    }
    let obs = Observation {
        pods: &pods,
        head_service: head_service.as_deref(),
        failure: failure.as_ref().map(|(f, m)| (f.reason(), m.clone())),
        suspending,
        paced,
        now: now(),
    };
    let new_status = status::compute(&cluster, &obs);
    let was_provisioned = conditions::is_true(
        cluster.status.as_ref().and_then(|s| s.conditions.as_ref()),
        PROVISIONED,
    );
    let now_provisioned = conditions::is_true(new_status.conditions.as_ref(), PROVISIONED);
    if write_status(&ctx, &cluster, new_status).await? && now_provisioned && !was_provisioned {
        let age = clock::age(
            cluster.metadata.creation_timestamp.as_ref(),
            jiff::Timestamp::now(),
        );
        ctx.metrics
            .provisioned(&name, &ns, &cluster.uid().unwrap_or_default(), age);
    }
    if let Some((f, message)) = failure {
        return Err(Error::Replicas(f, message));
    }
    if let Some(problem) = plan.problem {
        ctx.events
            .warning(
                &cluster,
                "PodReconciliationError",
                "Reconcile",
                problem.clone(),
            )
            .await;
        return Err(Error::Refused(problem));
    }
    if paced {
        let next = ctx.pacer.wait(&key, std::time::Instant::now());
        return Ok(Action::requeue(
            next.max(std::time::Duration::from_millis(50)),
        ));
    }
    Ok(Action::requeue(ctx.cfg.resync))
}

/// Says in an event when a group's size changed since the last reconcile
/// (nothing on the first one after a start: there is no "before").
async fn report_scaling(ctx: &Context, cluster: &RayCluster, key: &(String, String)) {
    let now = autoscaling::group_sizes(cluster);
    let before = ctx
        .group_sizes
        .lock()
        .unwrap()
        .insert(key.clone(), now.clone());
    for message in before
        .map(|b| autoscaling::scaling_messages(cluster, &b, &now))
        .unwrap_or_default()
    {
        ctx.events
            .normal(cluster, "ScaledWorkerGroup", "Scale", message)
            .await;
    }
}

/// Empties each `workersToDelete` whose pods are all gone (KubeRay forgets
/// it only in memory, so a list the autoscaler does not clear stays and
/// blocks it). `cached` must be complete: the caller checks that no
/// creation of ours is still unseen by the cache.
async fn clear_finished_lists(ctx: &Context, cluster: &RayCluster, cached: &[Arc<Pod>]) {
    let existing: BTreeSet<&str> = cached
        .iter()
        .filter_map(|p| p.metadata.name.as_deref())
        .collect();
    let api: Api<RayCluster> = Api::namespaced(
        ctx.client.clone(),
        cluster.metadata.namespace.as_deref().unwrap_or_default(),
    );
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    for done in autoscaling::finished_lists(cluster, &existing) {
        let patch = serde_json::from_value(done.clearing_patch()).expect("a valid JSON patch");
        match api
            .patch(name, &PatchParams::default(), &Patch::Json::<()>(patch))
            .await
        {
            Ok(_) => {
                ctx.events
                    .normal(cluster, "ClearedWorkersToDelete", "Scale", done.message())
                    .await
            }
            // The list changed since this reconcile read it (the
            // autoscaler cleared or rewrote it): the newer list stands.
            Err(kube::Error::Api(e)) if e.code == 422 || e.code == 409 => {
                tracing::debug!(group = %done.group, "workersToDelete changed meanwhile: {}", e.message)
            }
            Err(e) => {
                tracing::warn!(group = %done.group, "clearing workersToDelete: {}", applier::api_message(&e))
            }
        }
    }
}

/// Writes `new` if it differs from the stored status (ignoring the update
/// time). Returns whether it wrote.
async fn write_status(
    ctx: &Context,
    cluster: &RayCluster,
    mut new: RayClusterStatus,
) -> Result<bool, Error> {
    let old = cluster.status.clone().unwrap_or_default();
    if !status::differs(&old, &new) {
        return Ok(false);
    }
    new.last_update_time = Some(now());
    applier::apply_status(&ctx.client, cluster, &new)
        .await
        .map_err(Error::Status)?;
    Ok(true)
}
