//! One reconcile of one RayJob: read tolerantly, validate, take one step of
//! the state machine, then the bookkeeping every step shares (attempt
//! counters, retries, end time, metrics) and a status write only on change.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kuberay_api::rayjob::{JobDeploymentStatus as D, JobStatus};
use kuberay_api::schema::MANAGED_BY_KUBERAY;
use kuberay_api::tolerant::Tolerant;
use kuberay_api::validation::{validate_rayjob, validate_rayjob_status};
use kuberay_api::{RayJob, RayJobStatus, defaults};

use super::cleanup;
use super::transitions::{self, Next};
use super::{Context, FINALIZER};
use crate::controllers::readable;
use crate::kit::applier;
use crate::kit::applier::ApplyError;
use crate::kit::finalizer;
use crate::kit::runner::Reason;

/// Why a reconcile failed, one variant per step that can; each reason is
/// stable (event reason where KubeRay has one, log field, metric label).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("reading the RayCluster: {0}")]
    GetCluster(kube::Error),
    #[error("creating the RayCluster: {0}")]
    CreateCluster(kube::Error),
    #[error("updating the RayCluster: {0}")]
    UpdateCluster(kube::Error),
    #[error("deleting the RayCluster: {0}")]
    DeleteCluster(kube::Error),
    #[error("creating the submitter Job: {0}")]
    CreateSubmitter(kube::Error),
    #[error("deleting the submitter Job: {0}")]
    DeleteSubmitter(kube::Error),
    #[error("listing the head pod: {0}")]
    ListHeadPods(kube::Error),
    #[error("RayJob head service: {0}")]
    Service(ApplyError),
    #[error("deleting the RayJob: {0}")]
    DeleteSelf(kube::Error),
    #[error("updating the finalizer: {0}")]
    Finalizer(kube::Error),
    #[error("updating the status: {0}")]
    Status(kube::Error),
    #[error("{0}")]
    Spec(String),
}

impl Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::GetCluster(_) => "FailedToGetRayCluster",
            Error::CreateCluster(_) => "FailedToCreateRayCluster",
            Error::UpdateCluster(_) => "FailedToUpdateRayCluster",
            Error::DeleteCluster(_) => "FailedToDeleteRayCluster",
            Error::CreateSubmitter(_) => "FailedToCreateRayJobSubmitter",
            Error::DeleteSubmitter(_) => "FailedToDeleteRayJobSubmitter",
            Error::ListHeadPods(_) => "FailedToListHeadPods",
            Error::Service(_) => "FailedToCreateService",
            Error::DeleteSelf(_) => "FailedToDeleteRayJob",
            Error::Finalizer(_) => "FailedToUpdateFinalizer",
            Error::Status(_) => "FailedToUpdateStatus",
            Error::Spec(_) => "SubmissionFailed",
        }
    }
}

pub async fn reconcile(obj: Arc<Tolerant<RayJob>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let note = |e: &str| format!("{ns}/{name}: cannot be read: {e}");
    let Some(job) = readable(&obj, &ctx.events, "InvalidRayJobSpec", note).await else {
        return Ok(Action::await_change());
    };
    let mut job = job.clone();
    if job
        .spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != MANAGED_BY_KUBERAY)
    {
        return Ok(Action::await_change());
    }
    if job.metadata.deletion_timestamp.is_some() {
        if finalizer::has(&job, FINALIZER) {
            cleanup::stop_job(&job, &ctx).await;
            finalizer::remove(&ctx.client, &job, FINALIZER)
                .await
                .map_err(Error::Finalizer)?;
        }
        return Ok(Action::await_change());
    }
    defaults::job_spec(&mut job.spec);
    let old = job.status.clone().unwrap_or_default();
    if ctx.written.stale(&(ns.clone(), name.clone()), &old) {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let mut st = old.clone();
    let invalid = validate_rayjob(&job, &ctx.cfg.gates)
        .err()
        .or_else(|| validate_rayjob_status(&job).err());
    if let Some(invalid) = invalid {
        st.job_deployment_status = Some(D::ValidationFailed);
        st.reason = Some("ValidationFailed".into());
        st.message = Some(invalid.to_string());
        st.observed_generation = job.metadata.generation;
        if write_status(&job, &old, st, &ctx).await? {
            ctx.events
                .warning(
                    &job,
                    "InvalidRayJobSpec",
                    "Validate",
                    format!("{ns}/{name}: {invalid}"),
                )
                .await;
        }
        return Ok(Action::await_change());
    }
    if st.job_deployment_status == Some(D::ValidationFailed) {
        // Unlike KubeRay, a fixed spec starts the job instead of staying failed.
        st = RayJobStatus::default();
    }
    if !finalizer::has(&job, FINALIZER) {
        finalizer::add(&ctx.client, &job, FINALIZER)
            .await
            .map_err(Error::Finalizer)?;
    }
    let now = Timestamp::now();
    let next = transitions::step(&job, &mut st, &ctx, now).await?;
    settle(&job, &old, &mut st, now, &ctx);
    write_status(&job, &old, st, &ctx).await?;
    Ok(match next {
        Next::Wait => Action::await_change(),
        Next::After(d) if d.is_zero() => Action::requeue(Duration::from_millis(50)),
        Next::After(d) => Action::requeue(d),
    })
}

fn terminal(s: &Option<D>) -> bool {
    matches!(s, Some(D::Complete) | Some(D::Failed))
}

/// What every step shares: attempt counters, retries within
/// `backoffLimit`, the end time, and the execution-duration metric.
fn settle(job: &RayJob, old: &RayJobStatus, st: &mut RayJobStatus, now: Timestamp, ctx: &Context) {
    st.observed_generation = job.metadata.generation;
    st.failed.get_or_insert(0);
    st.succeeded.get_or_insert(0);
    let entered = |st: &RayJobStatus, s: D| {
        st.job_deployment_status == Some(s.clone()) && old.job_deployment_status != Some(s)
    };
    let retry_count = old.failed.unwrap_or(0);
    let entered_complete = entered(st, D::Complete);
    if entered(st, D::Failed) {
        st.failed = Some(st.failed.unwrap_or(0) + 1);
        let retryable = !matches!(
            st.reason.as_deref(),
            Some("DeadlineExceeded") | Some("JobStatusCheckTimeoutExceeded")
        );
        let limit = job.spec.backoff_limit.unwrap_or(0);
        if retryable && st.failed.unwrap_or(0) < limit + 1 {
            st.job_deployment_status = Some(D::Retrying);
        }
    }
    if entered_complete && st.job_status == Some(JobStatus::Succeeded) {
        st.succeeded = Some(st.succeeded.unwrap_or(0) + 1);
    }
    if terminal(&st.job_deployment_status) && !terminal(&old.job_deployment_status) {
        st.end_time = Some(Time(now));
    }
    let finished = matches!(
        st.job_deployment_status,
        Some(D::Complete) | Some(D::Failed) | Some(D::Retrying)
    );
    if finished
        && !terminal(&old.job_deployment_status)
        && old.job_deployment_status != st.job_deployment_status
    {
        let took = crate::kit::clock::age(st.start_time.as_ref(), now);
        let status = st
            .job_deployment_status
            .clone()
            .unwrap_or(D::New)
            .to_string();
        ctx.metrics.finished(
            &job.name_any(),
            &job.namespace().unwrap_or_default(),
            &job.uid().unwrap_or_default(),
            &status,
            retry_count,
            took,
        );
    }
}

/// Writes the status if it changed. Returns whether it wrote.
async fn write_status(
    job: &RayJob,
    old: &RayJobStatus,
    new: RayJobStatus,
    ctx: &Context,
) -> Result<bool, Error> {
    if *old == new {
        return Ok(false);
    }
    // Remember the status as the server stored it (times at its precision),
    // which is what the cache will show.
    let stored = applier::apply_status(&ctx.client, job, &new)
        .await
        .map_err(Error::Status)?;
    ctx.written.wrote(
        (job.namespace().unwrap_or_default(), job.name_any()),
        stored.status.unwrap_or_default(),
    );
    Ok(true)
}
