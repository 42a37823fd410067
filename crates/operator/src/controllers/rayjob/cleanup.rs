//! Letting go of what a RayJob made: the deletion rules' actions, freeing
//! the cluster and submitter on suspension or retry, and stopping the Ray
//! job of a deleted RayJob.

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PropagationPolicy};
use kuberay_api::rayjob::JobStatus;
use kuberay_api::{RayCluster, RayJob, RayJobStatus};

use super::Context;
use super::deletion::Cleanup;
use super::reconcile::Error;
use super::transitions::selector_cluster;
use crate::ray::dashboard;

pub(super) async fn cleanup(
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
                .map_err(Error::DeleteSelf)?;
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
                        return Err(Error::UpdateCluster(e));
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
                    format!(
                        "Failed to delete cluster {ns}/{}: {}",
                        c.name_any(),
                        crate::kit::applier::api_message(&e)
                    ),
                )
                .await;
            Err(Error::DeleteCluster(e))
        }
    }
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
    let stopped =
        match dashboard::authenticated(ctx.dashboards.as_ref(), &ctx.client, &c, &url).await {
            Ok(client) => client.stop_job(&id).await.map(|_| ()),
            Err(e) => Err(e),
        };
    if let Err(e) = stopped {
        tracing::warn!(%ns, job = %job.name_any(), error = %e, "could not stop the Ray job of a deleted RayJob");
    }
}

/// Deletes the RayJob's own cluster (not a borrowed one) and its submitter
/// Job, as a suspension or a retry does. Returns whether either still
/// existed.
pub(super) async fn free_cluster_and_submitter(
    job: &RayJob,
    st: &RayJobStatus,
    ctx: &Context,
) -> Result<bool, Error> {
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
                Err(source) => return Err(Error::DeleteSubmitter(source)),
            }
        }
        pending = true;
    }
    Ok(pending)
}
