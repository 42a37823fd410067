//! One step of the RayJob state machine: what each `jobDeploymentStatus`
//! moves to, and when to look again. The Kubernetes and dashboard I/O a
//! step needs is in `children` and `cleanup`; the caller does the
//! bookkeeping every step shares (counters, retries, end time, status
//! write).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kuberay_api::names::{CLUSTER_LABEL, random_suffix};
use kuberay_api::raycluster::ClusterState;
use kuberay_api::rayjob::{JobDeploymentStatus as D, JobStatus, JobSubmissionMode as Mode};
use kuberay_api::{RayJob, RayJobStatus};

use super::Context;
use super::children;
use super::cleanup;
use super::deletion;
use super::reconcile::Error;
use crate::ray::service::dashboard_url;

/// When to look at the RayJob again (besides watch events).
pub(super) enum Next {
    /// Only on a change of the RayJob or what it owns.
    Wait,
    After(Duration),
}

pub(super) fn t(ts: Timestamp) -> Time {
    Time(ts)
}

pub(super) fn mode(job: &RayJob) -> Mode {
    job.spec.submission_mode.clone().unwrap_or(Mode::K8sJobMode)
}

pub(super) fn has_submitter(job: &RayJob) -> bool {
    matches!(mode(job), Mode::K8sJobMode | Mode::SidecarMode)
}

pub(super) fn selector_cluster(job: &RayJob) -> Option<String> {
    job.spec
        .cluster_selector
        .as_ref()?
        .get(CLUSTER_LABEL)
        .filter(|n| !n.is_empty())
        .cloned()
}

pub(super) fn fail(st: &mut RayJobStatus, reason: &str, message: String) {
    st.job_deployment_status = Some(D::Failed);
    st.reason = Some(reason.into());
    st.message = Some(message);
}

fn deadline(start: Option<&Time>, secs: Option<i32>) -> Option<Timestamp> {
    Some(start?.0 + SignedDuration::from_secs(i64::from(secs?)))
}

/// The earlier of two optional instants, as a delay from `now`.
fn until(now: Timestamp, at: Option<Timestamp>) -> Next {
    match at {
        Some(at) => Next::After(
            Duration::try_from(at.duration_since(now)).unwrap_or_default()
                + Duration::from_millis(500),
        ),
        None => Next::Wait,
    }
}

/// What ends Initializing and Running alike: a suspension (to Suspending)
/// or a passed deadline (to Failed). Returns whether either happened.
fn interrupted(job: &RayJob, st: &mut RayJobStatus, now: Timestamp, pre_running: bool) -> bool {
    if job.spec.suspend == Some(true) {
        st.job_deployment_status = Some(D::Suspending);
        return true;
    }
    check_deadlines(job, st, now, pre_running)
}

/// Fails the job if `activeDeadlineSeconds` (or, before it runs,
/// `preRunningDeadlineSeconds`) has passed. Returns whether it did.
fn check_deadlines(job: &RayJob, st: &mut RayJobStatus, now: Timestamp, pre_running: bool) -> bool {
    let start = st.start_time.clone();
    let fmt = |s: &Option<Time>| s.as_ref().map(|t| t.0.to_string()).unwrap_or_default();
    if deadline(start.as_ref(), job.spec.active_deadline_seconds).is_some_and(|d| now >= d) {
        fail(
            st,
            "DeadlineExceeded",
            format!(
                "The RayJob has passed the activeDeadlineSeconds. StartTime: {}. ActiveDeadlineSeconds: {}",
                fmt(&start),
                job.spec.active_deadline_seconds.unwrap_or_default()
            ),
        );
        return true;
    }
    if pre_running
        && deadline(start.as_ref(), job.spec.pre_running_deadline_seconds).is_some_and(|d| now >= d)
    {
        fail(
            st,
            "PreRunningDeadlineExceeded",
            format!(
                "The RayJob has passed the preRunningDeadlineSeconds. StartTime: {}. PreRunningDeadlineSeconds: {}",
                fmt(&start),
                job.spec.pre_running_deadline_seconds.unwrap_or_default()
            ),
        );
        return true;
    }
    false
}

fn next_deadline(job: &RayJob, st: &RayJobStatus, pre_running: bool) -> Option<Timestamp> {
    let start = st.start_time.as_ref();
    let a = deadline(start, job.spec.active_deadline_seconds);
    let p = if pre_running {
        deadline(start, job.spec.pre_running_deadline_seconds)
    } else {
        None
    };
    a.into_iter().chain(p).min()
}

pub(super) async fn step(
    job: &RayJob,
    st: &mut RayJobStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Next, Error> {
    match st.job_deployment_status.clone().unwrap_or(D::New) {
        D::New => Ok(new(job, st, now)),
        D::Initializing => initializing(job, st, ctx, now).await,
        D::Waiting => Ok(waiting(job, st, now)),
        D::Running => running(job, st, ctx, now).await,
        D::Complete | D::Failed => finished(job, st, ctx, now).await,
        D::Suspending | D::Retrying => release(job, st, ctx).await,
        D::Suspended => {
            if job.spec.suspend != Some(true) {
                st.job_status = Some(JobStatus::New);
                st.job_deployment_status = Some(D::New);
                return Ok(Next::After(Duration::ZERO));
            }
            Ok(Next::Wait)
        }
        // ValidationFailed is handled before any step; unknown values wait.
        D::ValidationFailed | D::Unknown(_) => Ok(Next::Wait),
    }
}

fn new(job: &RayJob, st: &mut RayJobStatus, now: Timestamp) -> Next {
    // A job created suspended (Kueue's way of queueing) waits without
    // naming a cluster it may never get.
    if job.spec.suspend == Some(true) {
        st.job_deployment_status = Some(D::Suspended);
        return Next::Wait;
    }
    let name = job.name_any();
    if mode(job) != Mode::InteractiveMode && st.job_id.as_deref().unwrap_or_default().is_empty() {
        st.job_id = Some(
            job.spec
                .job_id
                .clone()
                .filter(|j| !j.is_empty())
                .unwrap_or_else(|| format!("{name}-{}", random_suffix())),
        );
    }
    if st
        .ray_cluster_name
        .as_deref()
        .unwrap_or_default()
        .is_empty()
    {
        st.ray_cluster_name =
            Some(selector_cluster(job).unwrap_or_else(|| format!("{name}-{}", random_suffix())));
    }
    st.job_status = Some(JobStatus::New);
    st.job_deployment_status = Some(D::Initializing);
    st.start_time = Some(t(now));
    st.end_time = None;
    Next::After(Duration::ZERO)
}

async fn initializing(
    job: &RayJob,
    st: &mut RayJobStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Next, Error> {
    if interrupted(job, st, now, true) {
        return Ok(Next::After(Duration::ZERO));
    }
    let Some(c) = children::get_or_create_cluster(job, st, ctx).await? else {
        return Ok(Next::After(ctx.poll));
    };
    let ready = c.status.as_ref().and_then(|s| s.state.as_ref()) == Some(&ClusterState::Ready);
    st.ray_cluster_status = c.status.clone();
    if !ready {
        st.message = Some(children::waiting_message(&c));
        // Owned clusters wake us when they change; a borrowed one is polled.
        return Ok(
            match (
                selector_cluster(job),
                until(now, next_deadline(job, st, true)),
            ) {
                (Some(_), _) => Next::After(ctx.poll),
                (None, next) => next,
            },
        );
    }
    st.dashboard_url = Some(dashboard_url(&c, &ctx.cfg.cluster_domain));
    st.message = None;
    match mode(job) {
        Mode::InteractiveMode => {
            st.job_deployment_status = Some(D::Waiting);
            return Ok(Next::After(Duration::ZERO));
        }
        Mode::K8sJobMode => children::ensure_submitter(job, st, &c, ctx).await?,
        _ => {}
    }
    st.job_deployment_status = Some(D::Running);
    Ok(Next::After(Duration::ZERO))
}

fn waiting(job: &RayJob, st: &mut RayJobStatus, now: Timestamp) -> Next {
    if check_deadlines(job, st, now, true) {
        return Next::After(Duration::ZERO);
    }
    match job.spec.job_id.clone().filter(|j| !j.is_empty()) {
        Some(id) => {
            st.job_id = Some(id);
            st.job_deployment_status = Some(D::Running);
            Next::After(Duration::ZERO)
        }
        None => until(now, next_deadline(job, st, true)),
    }
}

async fn running(
    job: &RayJob,
    st: &mut RayJobStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Next, Error> {
    if interrupted(job, st, now, false) {
        return Ok(Next::After(Duration::ZERO));
    }
    // Ray said the job ended but the deployment did not follow in time.
    let grace = ctx.cfg.job_transition_grace;
    if st.job_status.as_ref().is_some_and(JobStatus::is_terminal)
        && let Some(end) = st.ray_job_info.as_ref().and_then(|i| i.end_time.as_ref())
        && now >= end.0 + SignedDuration::try_from(grace).unwrap_or_default()
    {
        let failed = st.job_status == Some(JobStatus::Failed);
        st.job_deployment_status = Some(if failed { D::Failed } else { D::Complete });
        st.reason = Some("JobDeploymentStatusTransitionGracePeriodExceeded".into());
        st.message = Some("JobDeploymentStatus does not transition to Complete or Failed within the grace period after JobStatus reaches a terminal state.".into());
        return Ok(Next::After(Duration::ZERO));
    }
    let check_timeout = ctx.cfg.job_status_check_timeout;
    if let Some(since) = st.job_status_check_failure_start_time.clone()
        && now >= since.0 + SignedDuration::try_from(check_timeout).unwrap_or_default()
    {
        fail(
            st,
            "JobStatusCheckTimeoutExceeded",
            format!(
                "Job status checks have been failing since {}; exceeded timeout of {}s",
                since.0.strftime("%Y-%m-%d %H:%M:%S"),
                check_timeout.as_secs()
            ),
        );
        return Ok(Next::After(Duration::ZERO));
    }
    let Some(c) = children::get_or_create_cluster(job, st, ctx).await? else {
        return Ok(Next::After(ctx.poll));
    };
    // A head service named by the user is already stable across attempts
    // (and a second one of that name would collide with the cluster's).
    let custom_name = c
        .spec
        .head_group_spec
        .head_service
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .is_some_and(|m| m.name.is_some());
    if selector_cluster(job).is_none() && !custom_name {
        children::ensure_job_service(job, &c, ctx).await?;
    }
    let finished_at = if has_submitter(job) {
        match children::submitter_outcome(job, st, &c, ctx).await? {
            None => return Ok(Next::After(Duration::ZERO)),
            Some(f) => f,
        }
    } else {
        None
    };
    if let Some(f) = &finished_at
        && !st.job_status.as_ref().is_some_and(JobStatus::is_terminal)
        && now >= f.0 + SignedDuration::from_secs(30)
    {
        st.job_status = Some(JobStatus::Failed);
        fail(
            st,
            "JobDeploymentStatusTransitionGracePeriodExceeded",
            format!(
                "The RayJob submitter finished at {} but the ray job did not reach terminal state within 30s",
                f.0.strftime("%Y-%m-%d %H:%M:%S")
            ),
        );
        return Ok(Next::After(Duration::ZERO));
    }
    children::follow_ray_job(job, st, &c, finished_at, ctx, now).await
}

async fn finished(
    job: &RayJob,
    st: &mut RayJobStatus,
    ctx: &Context,
    now: Timestamp,
) -> Result<Next, Error> {
    let ns = job.namespace().unwrap_or_default();
    let cluster_name = st.ray_cluster_name.clone().unwrap_or_default();
    let owned = ctx.clusters.get(&ns, &cluster_name);
    let ended = st.end_time.as_ref().map_or(now, |t| t.0);
    let decision = deletion::decide(
        job,
        ended,
        now,
        owned.as_deref(),
        &ctx.cfg.gates,
        ctx.cfg.delete_rayjob_after_finish,
    );
    if let Some(action) = decision.now {
        cleanup::cleanup(job, action, owned.as_deref(), ctx).await?;
    }
    Ok(until(now, decision.next))
}

/// Suspending and Retrying: free the cluster and the submitter, then start
/// over (Retrying) or rest (Suspending).
async fn release(job: &RayJob, st: &mut RayJobStatus, ctx: &Context) -> Result<Next, Error> {
    if cleanup::free_cluster_and_submitter(job, st, ctx).await? {
        // The caches report the deletions; check again shortly regardless.
        return Ok(Next::After(Duration::from_secs(2)));
    }
    let suspending = st.job_deployment_status == Some(D::Suspending);
    *st = RayJobStatus {
        job_deployment_status: Some(if suspending { D::Suspended } else { D::New }),
        job_status: Some(JobStatus::New),
        failed: st.failed,
        succeeded: st.succeeded,
        start_time: st.start_time.clone(),
        end_time: st.end_time.clone(),
        observed_generation: st.observed_generation,
        ..Default::default()
    };
    Ok(if suspending {
        Next::Wait
    } else {
        Next::After(Duration::ZERO)
    })
}
