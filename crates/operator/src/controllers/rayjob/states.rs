//! One step of the RayJob state machine: what happens in each
//! `jobDeploymentStatus`, with the I/O it needs. The caller does the
//! bookkeeping common to every step (counters, retries, end time, status
//! write).

use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, PropagationPolicy};
use kuberay_api::names::{
    CLUSTER_LABEL, HEAD, NODE_TYPE_LABEL, head_service_fqdn, head_service_name, random_suffix,
};
use kuberay_api::raycluster::ClusterState;
use kuberay_api::rayjob::{
    JobDeploymentStatus as D, JobStatus, JobSubmissionMode as Mode, RayJobInfo,
};
use kuberay_api::{RayCluster, RayJob, RayJobStatus};

use super::deletion::{self, Cleanup};
use super::reconcile::Error;
use super::{Context, cluster, submitter};
use crate::kit::applier;
use crate::ray::dashboard::{DashboardError, SubmitRequest};

/// When to look at the RayJob again (besides watch events).
pub(super) enum Next {
    /// Only on a change of the RayJob or what it owns.
    Wait,
    After(Duration),
}

fn t(ts: Timestamp) -> Time {
    Time(ts)
}

fn mode(job: &RayJob) -> Mode {
    job.spec.submission_mode.clone().unwrap_or(Mode::K8sJobMode)
}

fn has_submitter(job: &RayJob) -> bool {
    matches!(mode(job), Mode::K8sJobMode | Mode::SidecarMode)
}

fn selector_cluster(job: &RayJob) -> Option<String> {
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

/// The dashboard address KubeRay reports: `<head-svc>.<ns>.svc.<domain>:<port>`.
pub(super) fn dashboard_url(c: &RayCluster, domain: &str) -> String {
    let override_name = c
        .spec
        .head_group_spec
        .head_service
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .and_then(|m| m.name.as_deref());
    let svc = head_service_name(&c.name_any(), override_name);
    let port = submitter::dashboard_port(&c.spec);
    format!(
        "{}:{port}",
        head_service_fqdn(&svc, &c.namespace().unwrap_or_default(), domain)
    )
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

/// The job's cluster: the owned one (created if missing) or the selected one.
async fn get_or_create_cluster(
    job: &RayJob,
    st: &RayJobStatus,
    ctx: &Context,
) -> Result<Option<RayCluster>, Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = st.ray_cluster_name.clone().unwrap_or_default();
    if let Some(selected) = selector_cluster(job) {
        let api: Api<RayCluster> = Api::namespaced(ctx.client.clone(), &ns);
        let found = api.get_opt(&selected).await.map_err(Error::Kube)?;
        if found.is_none() {
            let note = format!(
                "RayCluster {ns}/{selected} set in the clusterSelector is not found. It must be created manually"
            );
            ctx.events
                .warning(job, "RayClusterNotFound", "Validate", note)
                .await;
        }
        return Ok(found);
    }
    if let Some(c) = ctx.clusters.get(&ns, &name) {
        return Ok(Some((*c).clone()));
    }
    let job_id = st.job_id.clone().unwrap_or_default();
    let mut desired =
        cluster::cluster_for(job, &name, &job_id, ctx.cfg.login_shell).map_err(Error::Spec)?;
    desired.metadata.owner_references = Some(vec![applier::owner_reference(job)]);
    let api: Api<RayCluster> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &desired).await {
        Ok(c) => {
            ctx.events
                .normal(
                    job,
                    "CreatedRayCluster",
                    "Create",
                    format!("Created RayCluster {ns}/{name}"),
                )
                .await;
            Ok(Some(c))
        }
        Err(kube::Error::Api(s)) if s.code == 409 => {
            Ok(api.get_opt(&name).await.map_err(Error::Kube)?)
        }
        Err(e) => {
            ctx.events
                .warning(
                    job,
                    "FailedToCreateRayCluster",
                    "Create",
                    format!("Failed to create RayCluster {ns}/{name}: {e}"),
                )
                .await;
            Err(Error::Kube(e))
        }
    }
}

/// Why a cluster is not ready yet, for the RayJob's message.
fn waiting_message(c: &RayCluster) -> String {
    let s = c.status.clone().unwrap_or_default();
    let head = crate::kit::conditions::find(
        s.conditions.as_ref(),
        crate::ray::conditions::HEAD_POD_READY,
    );
    let head = match head {
        Some(h) if h.status == "True" => "head pod ready".to_string(),
        Some(h) if h.message.is_empty() => format!("head pod not ready ({})", h.reason),
        Some(h) => format!("head pod not ready ({}: {})", h.reason, h.message),
        None => "head pod not created yet".to_string(),
    };
    format!(
        "Waiting for RayCluster {} to be ready: {head}; {}/{} workers ready",
        c.name_any(),
        s.ready_worker_replicas.unwrap_or(0),
        s.desired_worker_replicas.unwrap_or(0)
    )
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
    let Some(c) = get_or_create_cluster(job, st, ctx).await? else {
        return Ok(Next::After(ctx.poll));
    };
    let ready = c.status.as_ref().and_then(|s| s.state.as_ref()) == Some(&ClusterState::Ready);
    st.ray_cluster_status = c.status.clone();
    if !ready {
        st.message = Some(waiting_message(&c));
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
        Mode::K8sJobMode => ensure_submitter(job, st, &c, ctx).await?,
        _ => {}
    }
    st.job_deployment_status = Some(D::Running);
    Ok(Next::After(Duration::ZERO))
}

async fn ensure_submitter(
    job: &RayJob,
    st: &RayJobStatus,
    c: &RayCluster,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = job.name_any();
    if ctx.jobs.get(&ns, &name).is_some() {
        return Ok(());
    }
    let url = st.dashboard_url.clone().unwrap_or_default();
    let mut desired = submitter::job(
        job,
        &c.spec,
        &url,
        st.job_id.as_deref().unwrap_or_default(),
        ctx.cfg.login_shell,
    )
    .map_err(Error::Spec)?;
    desired.metadata.owner_references = Some(vec![applier::owner_reference(job)]);
    let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &desired).await {
        Ok(_) => {
            ctx.events
                .normal(
                    job,
                    "CreatedRayJobSubmitter",
                    "Create",
                    format!("Created Kubernetes Job {ns}/{name}"),
                )
                .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(e) => {
            ctx.events
                .warning(
                    job,
                    "FailedToCreateRayJobSubmitter",
                    "Create",
                    format!("Failed to create new Kubernetes Job {ns}/{name}: {e}"),
                )
                .await;
            Err(Error::Kube(e))
        }
    }
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

/// Whether the submitter failed, and when it finished (if it did).
async fn submitter_outcome(
    job: &RayJob,
    st: &mut RayJobStatus,
    c: &RayCluster,
    ctx: &Context,
) -> Result<Option<Option<Time>>, Error> {
    let ns = job.namespace().unwrap_or_default();
    match mode(job) {
        Mode::K8sJobMode => {
            let Some(sj) = ctx.jobs.get(&ns, &job.name_any()) else {
                return Ok(Some(None));
            };
            let conds = sj
                .status
                .as_ref()
                .and_then(|s| s.conditions.clone())
                .unwrap_or_default();
            let finished = conds
                .iter()
                .find(|c| (c.type_ == "Complete" || c.type_ == "Failed") && c.status == "True")
                .and_then(|c| c.last_transition_time.clone());
            if let Some(f) = conds
                .iter()
                .find(|c| c.type_ == "Failed" && c.status == "True")
            {
                if st.job_status == Some(JobStatus::Failed) {
                    st.job_deployment_status = Some(D::Failed);
                    st.reason = Some("AppFailed".into());
                } else {
                    fail(
                        st,
                        "SubmissionFailed",
                        format!(
                            "Job submission has failed. Reason: {}. Message: {}",
                            f.reason.clone().unwrap_or_default(),
                            f.message.clone().unwrap_or_default()
                        ),
                    );
                }
                return Ok(None);
            }
            Ok(Some(finished))
        }
        Mode::SidecarMode => {
            let pods: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
            let lp = ListParams::default().labels(&format!(
                "{CLUSTER_LABEL}={},{NODE_TYPE_LABEL}={HEAD}",
                c.name_any()
            ));
            let heads = pods.list(&lp).await.map_err(Error::Kube)?.items;
            let Some(head) = heads.first() else {
                fail(st, "AppFailed", "Ray head pod not found.".into());
                return Ok(None);
            };
            let term = head
                .status
                .as_ref()
                .and_then(|s| s.container_statuses.as_ref())
                .and_then(|cs| cs.iter().find(|c| c.name == submitter::SUBMITTER_CONTAINER))
                .and_then(|c| c.state.as_ref())
                .and_then(|s| s.terminated.clone());
            if let Some(t) = &term
                && t.exit_code != 0
            {
                if st.job_status == Some(JobStatus::Failed) {
                    st.job_deployment_status = Some(D::Failed);
                    st.reason = Some("AppFailed".into());
                } else {
                    fail(
                        st,
                        "SubmissionFailed",
                        format!(
                            "Ray head pod container {} terminated with exit code {}: {}",
                            submitter::SUBMITTER_CONTAINER,
                            t.exit_code,
                            t.reason.clone().unwrap_or_default()
                        ),
                    );
                }
                return Ok(None);
            }
            Ok(Some(term.and_then(|t| t.finished_at)))
        }
        _ => Ok(Some(None)),
    }
}

fn env_secs(name: &str, default: u64) -> Duration {
    let secs = std::env::var(name)
        .ok()
        .and_then(|v| v.parse::<i64>().ok())
        .filter(|v| *v > 0)
        .map_or(default, |v| v as u64);
    Duration::from_secs(secs)
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
    let grace = env_secs(
        "RAYJOB_DEPLOYMENT_STATUS_TRANSITION_GRACE_PERIOD_SECONDS",
        300,
    );
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
    let check_timeout = env_secs("RAYJOB_STATUS_CHECK_TIMEOUT_SECONDS", 300);
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
    let Some(c) = get_or_create_cluster(job, st, ctx).await? else {
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
        ensure_job_service(job, &c, ctx).await?;
    }
    let finished_at = if has_submitter(job) {
        match submitter_outcome(job, st, &c, ctx).await? {
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
    let url = st
        .dashboard_url
        .clone()
        .unwrap_or_else(|| dashboard_url(&c, &ctx.cfg.cluster_domain));
    let client = ctx.dashboards.client(&c, &url);
    let job_id = st.job_id.clone().unwrap_or_default();
    st.ray_cluster_status = c.status.clone();
    match client.get_job(&job_id).await {
        Ok(None) => match mode(job) {
            Mode::HttpMode => match client.submit(&submit_request(job, &job_id)?).await {
                Ok(_) | Err(DashboardError::AlreadyExists(_)) => {
                    st.job_status_check_failure_start_time = None
                }
                Err(e) => {
                    record_check_failure(st, now, format!("Failed to submit the Ray job: {e}"))
                }
            },
            _ if has_submitter(job) && finished_at.is_some() => {
                fail(
                    st,
                    "AppFailed",
                    "Submitter completed but Ray job not found in RayCluster.".into(),
                );
            }
            _ => {}
        },
        Err(e) => record_check_failure(st, now, format!("Failed to get the Ray job's status: {e}")),
        Ok(Some(info)) => {
            st.job_status_check_failure_start_time = None;
            let status = JobStatus::from(info.status.as_str());
            let done = status.is_terminal() && (!has_submitter(job) || finished_at.is_some());
            st.job_status = Some(status.clone());
            st.message = info.message.clone();
            let ms = |v: Option<u64>| {
                v.filter(|v| *v > 0)
                    .and_then(|v| Timestamp::from_millisecond(v as i64).ok())
                    .map(Time)
            };
            st.ray_job_info = Some(RayJobInfo {
                start_time: ms(info.start_time),
                end_time: ms(info.end_time),
            });
            if done {
                if status == JobStatus::Failed {
                    st.job_deployment_status = Some(D::Failed);
                    st.reason = Some("AppFailed".into());
                } else {
                    st.job_deployment_status = Some(D::Complete);
                    st.reason = None;
                }
                return Ok(Next::After(Duration::ZERO));
            }
        }
    }
    Ok(Next::After(ctx.poll))
}

fn record_check_failure(st: &mut RayJobStatus, now: Timestamp, message: String) {
    tracing::info!(%message, "job status check failed");
    if st.job_status_check_failure_start_time.is_none() {
        st.job_status_check_failure_start_time = Some(t(now));
    }
}

fn submit_request(job: &RayJob, job_id: &str) -> Result<SubmitRequest, Error> {
    let s = &job.spec;
    let runtime_env = match s
        .runtime_env_yaml
        .as_deref()
        .filter(|y| !y.trim().is_empty())
    {
        Some(y) => Some(submitter::runtime_env_json(y).map_err(Error::Spec)?),
        None => None,
    };
    let resources = match s
        .entrypoint_resources
        .as_deref()
        .filter(|r| !r.trim().is_empty())
    {
        Some(r) => Some(
            serde_json::from_str(r)
                .map_err(|e| Error::Spec(format!("entrypointResources: {e}")))?,
        ),
        None => None,
    };
    Ok(SubmitRequest {
        entrypoint: s.entrypoint.clone().unwrap_or_default(),
        submission_id: Some(job_id.to_string()).filter(|j| !j.is_empty()),
        runtime_env,
        metadata: s.metadata.clone().filter(|m| !m.is_empty()),
        entrypoint_num_cpus: s.entrypoint_num_cpus.filter(|n| *n > 0.0),
        entrypoint_num_gpus: s.entrypoint_num_gpus.filter(|n| *n > 0.0),
        entrypoint_resources: resources,
    })
}

/// `<rayjob>-head-svc`: a head service whose name survives retries (each
/// attempt has a new cluster), so clients of the job need one address.
async fn ensure_job_service(job: &RayJob, c: &RayCluster, ctx: &Context) -> Result<(), Error> {
    use kuberay_api::names::*;
    let mut svc = crate::ray::service::head_service(c, &ctx.cfg);
    let name = job.name_any();
    svc.metadata.name = Some(format!("{name}-head-svc"));
    svc.metadata.labels = Some(
        [
            (ORIGINATED_FROM_CR_NAME_LABEL.to_string(), name.clone()),
            (ORIGINATED_FROM_CRD_LABEL.to_string(), "RayJob".to_string()),
            (NODE_TYPE_LABEL.to_string(), HEAD.to_string()),
            (IDENTIFIER_LABEL.to_string(), identifier(&name, HEAD)),
            (CREATED_BY_LABEL.to_string(), CREATED_BY.to_string()),
        ]
        .into(),
    );
    svc.metadata.owner_references = Some(vec![applier::owner_reference(job)]);
    match applier::ensure(&ctx.client, &ctx.services, &svc).await {
        Ok(applier::Outcome::Created) => {
            let note = format!(
                "Created the service {}/{}",
                job.namespace().unwrap_or_default(),
                svc.name_any()
            );
            ctx.events
                .normal(job, "CreatedService", "Create", note)
                .await;
            Ok(())
        }
        Ok(applier::Outcome::Updated) => {
            let note = format!(
                "Updated the service {}/{}",
                job.namespace().unwrap_or_default(),
                svc.name_any()
            );
            ctx.events
                .normal(job, "UpdatedService", "Update", note)
                .await;
            Ok(())
        }
        Ok(applier::Outcome::Unchanged) => Ok(()),
        Err(e) => Err(Error::Service(e)),
    }
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
        cleanup(job, action, owned.as_deref(), ctx).await?;
    }
    Ok(until(now, decision.next))
}

async fn cleanup(
    job: &RayJob,
    action: Cleanup,
    cluster: Option<&RayCluster>,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = job.namespace().unwrap_or_default();
    match action {
        Cleanup::DeleteSelf => {
            let api: Api<RayJob> = Api::namespaced(ctx.client.clone(), &ns);
            api.delete(&job.name_any(), &DeleteParams::background())
                .await
                .map_err(Error::Kube)?;
        }
        Cleanup::DeleteCluster => {
            if let Some(c) = cluster {
                delete_cluster(job, c, ctx).await?;
            }
        }
        Cleanup::DeleteWorkers => {
            if let Some(c) = cluster {
                let api: Api<RayCluster> = Api::namespaced(ctx.client.clone(), &ns);
                let mut groups = c.spec.worker_group_specs.clone().unwrap_or_default();
                for g in &mut groups {
                    g.suspend = Some(true);
                }
                let patch = serde_json::json!({"spec": {"workerGroupSpecs": groups}});
                match api
                    .patch(
                        &c.name_any(),
                        &PatchParams::default(),
                        &Patch::Merge(&patch),
                    )
                    .await
                {
                    Ok(_) => {
                        let note = format!(
                            "Set the `suspend` field to true for all worker groups in cluster {ns}/{}",
                            c.name_any()
                        );
                        ctx.events
                            .normal(job, "UpdatedRayCluster", "Update", note)
                            .await;
                    }
                    Err(e) => {
                        let note = format!(
                            "Failed to suspend worker groups in cluster {ns}/{}: {e}",
                            c.name_any()
                        );
                        ctx.events
                            .warning(job, "FailedToUpdateRayCluster", "Update", note)
                            .await;
                        return Err(Error::Kube(e));
                    }
                }
            }
        }
    }
    Ok(())
}

async fn delete_cluster(job: &RayJob, c: &RayCluster, ctx: &Context) -> Result<(), Error> {
    if c.metadata.deletion_timestamp.is_some() {
        return Ok(());
    }
    let ns = job.namespace().unwrap_or_default();
    let api: Api<RayCluster> = Api::namespaced(ctx.client.clone(), &ns);
    match api.delete(&c.name_any(), &DeleteParams::default()).await {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Ok(_) => {
            ctx.events
                .normal(
                    job,
                    "DeletedRayCluster",
                    "Delete",
                    format!("Deleted cluster {ns}/{}", c.name_any()),
                )
                .await;
            Ok(())
        }
        Err(e) => {
            ctx.events
                .warning(
                    job,
                    "FailedToDeleteRayCluster",
                    "Delete",
                    format!("Failed to delete cluster {ns}/{}: {e}", c.name_any()),
                )
                .await;
            Err(Error::Kube(e))
        }
    }
}

/// Suspending and Retrying: free the cluster and the submitter, then start
/// over (Retrying) or rest (Suspending).
async fn release(job: &RayJob, st: &mut RayJobStatus, ctx: &Context) -> Result<Next, Error> {
    let ns = job.namespace().unwrap_or_default();
    let mut pending = false;
    if selector_cluster(job).is_none()
        && let Some(c) = ctx
            .clusters
            .get(&ns, st.ray_cluster_name.as_deref().unwrap_or_default())
    {
        delete_cluster(job, &c, ctx).await?;
        pending = true;
    }
    if let Some(sj) = ctx.jobs.get(&ns, &job.name_any()) {
        if sj.metadata.deletion_timestamp.is_none() {
            let api: Api<Job> = Api::namespaced(ctx.client.clone(), &ns);
            let dp = DeleteParams {
                propagation_policy: Some(PropagationPolicy::Background),
                ..Default::default()
            };
            match api.delete(&job.name_any(), &dp).await {
                Ok(_) => {
                    ctx.events
                        .normal(
                            job,
                            "DeletedRayJobSubmitter",
                            "Delete",
                            format!("Deleted submitter K8s Job {ns}/{}", job.name_any()),
                        )
                        .await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::Kube(e)),
            }
        }
        pending = true;
    }
    if pending {
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

/// Stops the Ray job of a RayJob being deleted, if it is still running.
pub(super) async fn stop_job(job: &RayJob, ctx: &Context) {
    let st = job.status.clone().unwrap_or_default();
    let (Some(id), Some(url)) = (st.job_id.clone(), st.dashboard_url.clone()) else {
        return;
    };
    if st.job_status.as_ref().is_some_and(JobStatus::is_terminal) || id.is_empty() {
        return;
    }
    let ns = job.namespace().unwrap_or_default();
    let Some(c) = ctx
        .clusters
        .get(&ns, st.ray_cluster_name.as_deref().unwrap_or_default())
    else {
        return;
    };
    if let Err(e) = ctx.dashboards.client(&c, &url).stop_job(&id).await {
        tracing::warn!(%ns, job = %job.name_any(), error = %e, "could not stop the Ray job of a deleted RayJob");
    }
}
