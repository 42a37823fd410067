//! What a RayJob owns or talks to while it runs: its RayCluster (made, or
//! borrowed through clusterSelector), the submitter Job, the
//! `<rayjob>-head-svc` service, and the Ray job itself through the
//! dashboard.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, ListParams, PostParams};
use kuberay_api::names::{CLUSTER_LABEL, HEAD, NODE_TYPE_LABEL};
use kuberay_api::rayjob::{
    JobDeploymentStatus as D, JobStatus, JobSubmissionMode as Mode, RayJobInfo,
};
use kuberay_api::{RayCluster, RayJob, RayJobStatus};

use super::reconcile::Error;
use super::transitions::{Next, fail, has_submitter, mode, selector_cluster, t};
use super::{Context, cluster, submitter};
use crate::kit::applier;
use crate::ray::dashboard::{self, DashboardError, SubmitRequest};
use crate::ray::service::dashboard_url;

/// The job's cluster: the owned one (created if missing) or the selected one.
pub(super) async fn get_or_create_cluster(
    job: &RayJob,
    st: &RayJobStatus,
    ctx: &Context,
) -> Result<Option<RayCluster>, Error> {
    let ns = job.namespace().unwrap_or_default();
    let name = st.ray_cluster_name.clone().unwrap_or_default();
    if let Some(selected) = selector_cluster(job) {
        let api: Api<RayCluster> = Api::namespaced(ctx.client.clone(), &ns);
        let found = api.get_opt(&selected).await.map_err(Error::GetCluster)?;
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
            Ok(api.get_opt(&name).await.map_err(Error::GetCluster)?)
        }
        Err(e) => {
            ctx.events
                .warning(
                    job,
                    "FailedToCreateRayCluster",
                    "Create",
                    format!(
                        "Failed to create RayCluster {ns}/{name}: {}",
                        crate::kit::applier::api_message(&e)
                    ),
                )
                .await;
            Err(Error::CreateCluster(e))
        }
    }
}

/// Why a cluster is not ready yet, for the RayJob's message.
pub(super) fn waiting_message(c: &RayCluster) -> String {
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

pub(super) async fn ensure_submitter(
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
        &c.name_any(),
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
                    format!(
                        "Failed to create new Kubernetes Job {ns}/{name}: {}",
                        crate::kit::applier::api_message(&e)
                    ),
                )
                .await;
            Err(Error::CreateSubmitter(e))
        }
    }
}

/// The submitter failed: the Ray job's own failure if Ray reported one,
/// else a failed submission saying `message`.
fn submitter_failed(st: &mut RayJobStatus, message: String) {
    if st.job_status == Some(JobStatus::Failed) {
        st.job_deployment_status = Some(D::Failed);
        st.reason = Some("AppFailed".into());
    } else {
        fail(st, "SubmissionFailed", message);
    }
}

/// Whether the submitter failed, and when it finished (if it did).
pub(super) async fn submitter_outcome(
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
                let message = format!(
                    "Job submission has failed. Reason: {}. Message: {}",
                    f.reason.clone().unwrap_or_default(),
                    f.message.clone().unwrap_or_default()
                );
                submitter_failed(st, message);
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
            let heads = pods.list(&lp).await.map_err(Error::ListHeadPods)?.items;
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
                let message = format!(
                    "Ray head pod container {} terminated with exit code {}: {}",
                    submitter::SUBMITTER_CONTAINER,
                    t.exit_code,
                    t.reason.clone().unwrap_or_default()
                );
                submitter_failed(st, message);
                return Ok(None);
            }
            Ok(Some(term.and_then(|t| t.finished_at)))
        }
        _ => Ok(Some(None)),
    }
}

/// Asks the dashboard about the Ray job (submitting it first in HTTPMode)
/// and moves the status along with what it says.
pub(super) async fn follow_ray_job(
    job: &RayJob,
    st: &mut RayJobStatus,
    c: &RayCluster,
    finished_at: Option<Time>,
    ctx: &Context,
    now: Timestamp,
) -> Result<Next, Error> {
    let url = st
        .dashboard_url
        .clone()
        .unwrap_or_else(|| dashboard_url(c, &ctx.cfg.cluster_domain));
    let job_id = st.job_id.clone().unwrap_or_default();
    st.ray_cluster_status = c.status.clone();
    let client = match dashboard::authenticated(ctx.dashboards.as_ref(), &ctx.client, c, &url).await
    {
        Ok(client) => client,
        Err(e) => {
            record_check_failure(st, now, e.to_string());
            return Ok(Next::After(ctx.poll));
        }
    };
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
pub(super) async fn ensure_job_service(
    job: &RayJob,
    c: &RayCluster,
    ctx: &Context,
) -> Result<(), Error> {
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
    let (verb, reason, action) = match applier::ensure(&ctx.client, &ctx.services, &svc).await {
        Ok(applier::Outcome::Created) => ("Created", "CreatedService", "Create"),
        Ok(applier::Outcome::Updated) => ("Updated", "UpdatedService", "Update"),
        Ok(applier::Outcome::Unchanged) => return Ok(()),
        Err(e) => return Err(Error::Service(e)),
    };
    let ns = job.namespace().unwrap_or_default();
    let note = format!("{verb} the service {ns}/{}", svc.name_any());
    ctx.events.normal(job, reason, action, note).await;
    Ok(())
}
