//! Deleting a RayCluster whose GCS state is in Redis: its keys must go too,
//! or they pile up in Redis for every cluster ever made. The cluster holds
//! KubeRay's finalizer `ray.io/gcs-ft-redis-cleanup-finalizer`; on deletion
//! its Ray pods go first (a live GCS would keep writing), then a Job built
//! from the head pod deletes the storage namespace, then the finalizer goes.
//!
//! The clean-up is best effort and bounded: a failed Job, a namespace being
//! torn down, or the deadline (`ray.io/gcs-ft-deletion-timeout`, 300 s by
//! default, counted from the deletion request) all release the cluster,
//! with a Warning event naming what may be left in Redis. A cluster is never
//! stuck Terminating because Redis is down.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{Pod, PodTemplateSpec, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, PostParams};
use kube::runtime::controller::Action;
use kuberay_api::RayCluster;
use kuberay_api::names::{
    CLUSTER_LABEL, GCS_FT_REDIS_CLEANUP_FINALIZER, HEAD, NODE_TYPE_LABEL, REDIS_CLEANUP, WORKER,
    redis_cleanup_job_name,
};
use kuberay_api::validation::validate_raycluster;

use super::Context;
use super::reconcile::Error;
use crate::kit::applier::{self, api_message};
use crate::kit::finalizer;
use crate::ray::gcs_ft;
use crate::ray::pod::command::shell;
use crate::ray::pod::{PodContext, head_pod, push_env};
use crate::runtime::config::Config;

/// The Job's own limits, KubeRay's: one attempt, five minutes at most.
const JOB_BACKOFF_LIMIT: i32 = 0;
const JOB_DEADLINE_SECONDS: i64 = 300;
/// Ray's Redis client retries 120 times, 500 ms apart: a Redis restarting
/// gets a minute.
const CONNECT_RETRIES: &str = "120";
const CONNECT_WAIT_MS: &str = "500";

/// The clean-up: from the head's Ray container (same image, env, Secrets
/// and volumes, so it reaches Redis as the head does), running Ray's own
/// `cleanup_redis_storage` instead of `ray start`, without probes, with
/// small fixed resources (never a GPU), never restarted.
pub fn cleanup_job(cluster: &RayCluster, cfg: &Config) -> Job {
    let spec_hash = super::hash::pod_spec_hash(&cluster.spec);
    let head = head_pod(&PodContext {
        cluster,
        cfg,
        spec_hash: &spec_hash,
    });
    let mut labels = head.metadata.labels.unwrap_or_default();
    labels.insert(NODE_TYPE_LABEL.into(), REDIS_CLEANUP.into());
    let annotations = head.metadata.annotations;
    let mut pod = head.spec.unwrap_or_default();
    pod.containers.truncate(1);
    pod.restart_policy = Some("Never".into());
    let c = &mut pod.containers[0];
    c.command = Some(shell(cfg.login_shell));
    c.args = Some(vec![CLEANUP_SCRIPT.into()]);
    c.liveness_probe = None;
    c.readiness_probe = None;
    push_env(c, "RAY_redis_db_connect_retries", CONNECT_RETRIES);
    push_env(c, "RAY_redis_db_connect_wait_milliseconds", CONNECT_WAIT_MS);
    let fixed = BTreeMap::from([
        ("cpu".to_string(), Quantity("200m".into())),
        ("memory".to_string(), Quantity("256Mi".into())),
    ]);
    c.resources = Some(ResourceRequirements {
        limits: Some(fixed.clone()),
        requests: Some(fixed),
        ..Default::default()
    });
    let meta = ObjectMeta {
        labels: Some(labels),
        annotations,
        ..Default::default()
    };
    Job {
        metadata: ObjectMeta {
            name: Some(redis_cleanup_job_name(&cluster.name_any())),
            namespace: cluster.namespace(),
            owner_references: Some(vec![applier::owner_reference(cluster)]),
            ..meta.clone()
        },
        spec: Some(JobSpec {
            backoff_limit: Some(JOB_BACKOFF_LIMIT),
            active_deadline_seconds: Some(JOB_DEADLINE_SECONDS),
            template: PodTemplateSpec {
                metadata: Some(meta),
                spec: Some(pod),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// Deletes the key namespace the head wrote to, with the head's own Redis
/// settings (`RAY_REDIS_ADDRESS` may hold several addresses, a scheme and
/// credentials; the first address is Ray's primary). The username is passed
/// only when one is set: Ray before 2.41 has no such argument.
const CLEANUP_SCRIPT: &str = r#"echo "Deleting this cluster's GCS keys from Redis. If this fails, delete the storage namespace in RAY_external_storage_namespace from Redis by hand." && python -c "
import os, sys
from urllib.parse import urlparse
from ray._private.gcs_utils import cleanup_redis_storage
first = os.environ.get('RAY_REDIS_ADDRESS', '').split(',')[0].strip()
url = urlparse(first if '://' in first else 'redis://' + first)
kwargs = dict(
    host=url.hostname,
    port=url.port or 6379,
    password=os.environ.get('REDIS_PASSWORD', url.password or ''),
    use_ssl=url.scheme == 'rediss',
    storage_namespace=os.environ['RAY_external_storage_namespace'],
)
username = os.environ.get('REDIS_USERNAME', url.username)
if username:
    kwargs['username'] = username
sys.exit(0 if cleanup_redis_storage(**kwargs) else 1)
""#;

/// What a deletion pass does next; decided from the cluster, its cached
/// pods and Job, and the time.
#[derive(Debug, PartialEq, Eq)]
pub enum Step {
    /// Remove the finalizer: nothing (more) to do, or no point waiting.
    Release(Release),
    /// Delete the Ray pods that are not yet going.
    DeletePods,
    /// The head pod is still terminating; its GCS may still write.
    WaitForHead(Duration),
    /// Create the Job; the deadline is this far.
    CreateJob(Duration),
    /// The Job runs; its watch brings the cluster back when it ends.
    WaitForJob(Duration),
}

#[derive(Debug, PartialEq, Eq)]
pub enum Release {
    /// No Redis to clean (the embedded backend, clean-up turned off, the
    /// fault tolerance turned off): the finalizer is stale.
    NotNeeded,
    Cleaned,
    /// The Job failed, with its condition's reason and message.
    JobFailed(String),
    /// The deadline passed after this long.
    TimedOut(Duration),
}

/// The pure decision of one deletion pass.
pub fn plan(
    cluster: &RayCluster,
    cfg: &Config,
    pods: &[std::sync::Arc<Pod>],
    job: Option<&Job>,
    since_deletion: Duration,
) -> Step {
    if !cfg.redis_cleanup || !gcs_ft::uses_redis(cluster) {
        return Step::Release(Release::NotNeeded);
    }
    let timeout = gcs_ft::deletion_timeout(cluster);
    // First, so that nothing below (a head stuck terminating on a lost
    // node, a Job that cannot be scheduled) can hold the cluster longer.
    if since_deletion >= timeout {
        return Step::Release(Release::TimedOut(since_deletion));
    }
    let left = timeout - since_deletion;
    let node_type = |p: &Pod| p.labels().get(NODE_TYPE_LABEL).cloned();
    let ray_pods: Vec<_> = pods
        .iter()
        .filter(|p| matches!(node_type(p).as_deref(), Some(HEAD) | Some(WORKER)))
        .collect();
    if ray_pods
        .iter()
        .any(|p| p.metadata.deletion_timestamp.is_none())
    {
        return Step::DeletePods;
    }
    if ray_pods
        .iter()
        .any(|p| node_type(p).as_deref() == Some(HEAD))
    {
        return Step::WaitForHead(left);
    }
    match job.map(finished) {
        None => Step::CreateJob(left),
        Some(None) => Step::WaitForJob(left),
        Some(Some(Ok(()))) => Step::Release(Release::Cleaned),
        Some(Some(Err(why))) => Step::Release(Release::JobFailed(why)),
    }
}

/// `Some(Ok)` once the Job completed, `Some(Err(why))` once it failed.
fn finished(job: &Job) -> Option<Result<(), String>> {
    let conds = job.status.as_ref()?.conditions.as_ref()?;
    let is = |t: &str| conds.iter().find(|c| c.type_ == t && c.status == "True");
    if is("Complete").is_some() {
        return Some(Ok(()));
    }
    is("Failed").map(|c| {
        Err(format!(
            "{}: {}",
            c.reason.as_deref().unwrap_or("Failed"),
            c.message.as_deref().unwrap_or_default()
        ))
    })
}

/// Whether this pass must add the finalizer: a valid, live cluster whose
/// state is in Redis. Added before any pod exists, so no GCS writes to
/// Redis without it.
pub fn needs_finalizer(cluster: &RayCluster, cfg: &Config) -> bool {
    cfg.redis_cleanup
        && gcs_ft::uses_redis(cluster)
        && !finalizer::has(cluster, GCS_FT_REDIS_CLEANUP_FINALIZER)
}

/// One pass over a cluster being deleted that holds the finalizer.
pub(super) async fn on_deletion(cluster: &RayCluster, ctx: &Context) -> Result<Action, Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let since = crate::kit::clock::age(
        cluster.metadata.deletion_timestamp.as_ref(),
        jiff::Timestamp::now(),
    );
    let pods = ctx.pods.owned_by(&ns, &name);
    let job = ctx.jobs.owned_by(&ns, &name).into_iter().next();
    let step = plan(cluster, &ctx.cfg, &pods, job.as_deref(), since);
    tracing::debug!(%ns, %name, ?step, "redis clean-up");
    let again = |d: Duration| Ok(Action::requeue(d.max(Duration::from_secs(1))));
    match step {
        Step::Release(why) => release(cluster, ctx, why)
            .await
            .map(|_| Action::await_change()),
        Step::DeletePods => {
            // Only Ray's pods: the clean-up Job's pod carries the cluster
            // label too.
            let lp = ListParams::default().labels(&format!(
                "{CLUSTER_LABEL}={name},{NODE_TYPE_LABEL} in ({HEAD},{WORKER})"
            ));
            let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            api.delete_collection(&DeleteParams::default(), &lp)
                .await
                .map_err(Error::DeletePods)?;
            again(Duration::from_secs(10))
        }
        // The pods' watch brings the cluster back when the head is gone.
        Step::WaitForHead(left) | Step::WaitForJob(left) => again(left),
        Step::CreateJob(left) => match validate_raycluster(cluster, &ctx.cfg.gates) {
            Ok(()) => create_job(cluster, ctx, left).await,
            // The spec was edited into one no pod can be built from after
            // the finalizer was added: no Job either, so no point waiting.
            Err(invalid) => {
                let why = format!("no Job can be built from an invalid spec: {invalid}");
                release(cluster, ctx, Release::JobFailed(why)).await?;
                Ok(Action::await_change())
            }
        },
    }
}

async fn create_job(cluster: &RayCluster, ctx: &Context, left: Duration) -> Result<Action, Error> {
    let ns = cluster.namespace().unwrap_or_default();
    let desired = cleanup_job(cluster, &ctx.cfg);
    let job_name = desired.name_any();
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &desired).await {
        Ok(_) => {
            let note = format!("Created Redis cleanup Job {ns}/{job_name}");
            ctx.events
                .normal(cluster, "CreatedRedisCleanupJob", "Create", note)
                .await;
            Ok(Action::requeue(left.max(Duration::from_secs(1))))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Action::requeue(Duration::from_secs(2))),
        // Nothing can be created in a namespace being torn down: waiting
        // for the deadline would only delay the namespace's deletion.
        Err(kube::Error::Api(s)) if s.code == 403 && s.message.contains("being terminated") => {
            let why = Release::JobFailed(format!("the Job cannot be created: {}", s.message));
            release(cluster, ctx, why).await?;
            Ok(Action::await_change())
        }
        Err(e) => {
            let note = format!(
                "Failed to create Redis cleanup Job {ns}/{job_name}, {}",
                api_message(&e)
            );
            ctx.events
                .warning(cluster, "FailedToCreateRedisCleanupJob", "Create", note)
                .await;
            Err(Error::CreateCleanupJob(e))
        }
    }
}

/// Removes the finalizer, first saying what may be left in Redis when the
/// clean-up did not finish (the event outlives the cluster).
async fn release(cluster: &RayCluster, ctx: &Context, why: Release) -> Result<(), Error> {
    let (ns, name) = (cluster.namespace().unwrap_or_default(), cluster.name_any());
    let left = || {
        let address = gcs_ft::redis_address(cluster).unwrap_or_else(|| "?".into());
        format!(
            "the keys of storage namespace {:?} may remain in Redis at {address}; delete them by hand",
            gcs_ft::storage_namespace(cluster)
        )
    };
    match &why {
        Release::NotNeeded | Release::Cleaned => {
            tracing::info!(%ns, %name, ?why, "removing the Redis clean-up finalizer");
        }
        Release::JobFailed(reason) => {
            let job = redis_cleanup_job_name(&name);
            let note = format!(
                "Redis cleanup Job {ns}/{job} failed ({reason}); the finalizer is removed so the deletion proceeds: {}",
                left()
            );
            ctx.events
                .warning(cluster, "RedisCleanupFailed", "Cleanup", note)
                .await;
        }
        Release::TimedOut(after) => {
            let note = format!(
                "Force-removed the GCS FT finalizer {}s after the deletion request (the bound is {}s, annotation ray.io/gcs-ft-deletion-timeout) before the Redis cleanup finished: {}",
                after.as_secs(),
                gcs_ft::deletion_timeout(cluster).as_secs(),
                left()
            );
            ctx.events
                .warning(cluster, "ForceDeletedStuckCluster", "Cleanup", note)
                .await;
        }
    }
    finalizer::remove(&ctx.client, cluster, GCS_FT_REDIS_CLEANUP_FINALIZER)
        .await
        .map_err(Error::Finalizer)
}
