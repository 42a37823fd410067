//! KubeRay's suspend state machine: `suspend: true` first records
//! `Suspending` (the commit point), then deletes the RayClusters,
//! services, Gateway and HTTPRoute, then records `Suspended`; `suspend: false` resumes from
//! `Suspended` as if the service were new. Once `Suspending` is stored the
//! deletion runs to the end even if `suspend` flips back.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams};
use kuberay_api::rayservice::ServiceStatus;
use kuberay_api::{RayService, RayServiceStatuses};

use super::Context;
use super::reconcile::Error;
use super::status::*;

/// What the suspend machine decided for this reconcile.
pub enum Step {
    /// Not suspended (or just resumed): reconcile as usual.
    Continue,
    /// Suspend owns this reconcile: write the status and come back
    /// (`true`) or wait for a change (`false`).
    Stop { again: bool },
}

pub async fn step(
    svc: &RayService,
    st: &mut RayServiceStatuses,
    ctx: &Context,
    now: &Time,
) -> Result<Step, Error> {
    let wanted = svc.spec.suspend == Some(true);
    if is_true(st, SUSPENDED) {
        if wanted {
            return Ok(Step::Stop { again: false });
        }
        st.observed_generation = svc.metadata.generation;
        set(
            st,
            SUSPENDED,
            false,
            RESUMED,
            "Spec.Suspend is false; RayService has resumed.",
            now,
        );
        let msg = "RayService is initializing after resuming from suspend.";
        reset(st, READY, false, INITIALIZING, msg, now);
        reset(st, UPGRADE_IN_PROGRESS, false, INITIALIZING, msg, now);
        return Ok(Step::Continue);
    }
    if !is_true(st, SUSPENDING) {
        if !wanted {
            return Ok(Step::Continue);
        }
        st.observed_generation = svc.metadata.generation;
        set(
            st,
            SUSPENDING,
            true,
            SUSPEND_REQUESTED,
            "Spec.Suspend is true; will delete all Kubernetes resources owned by this RayService.",
            now,
        );
        set(
            st,
            READY,
            false,
            SUSPEND_IN_PROGRESS,
            "RayService is suspending.",
            now,
        );
        set(
            st,
            UPGRADE_IN_PROGRESS,
            false,
            SUSPEND_IN_PROGRESS,
            "No upgrade in progress.",
            now,
        );
        set(
            st,
            ROLLBACK_IN_PROGRESS,
            false,
            SUSPEND_IN_PROGRESS,
            "No rollback in progress.",
            now,
        );
        st.active_service_status = Some(Default::default());
        st.pending_service_status = Some(Default::default());
        st.num_serve_endpoints = Some(0);
        st.service_status = Some(ServiceStatus::New);
        return Ok(Step::Stop { again: true });
    }
    if !delete_owned(svc, ctx, "during suspend").await? {
        set(
            st,
            SUSPENDING,
            true,
            SUSPEND_IN_PROGRESS,
            "Waiting for all Kubernetes resources owned by this RayService to be deleted.",
            now,
        );
        return Ok(Step::Stop { again: true });
    }
    let done = "All owned resources have been deleted.";
    set(st, SUSPENDING, false, SUSPEND_COMPLETE, done, now);
    set(st, SUSPENDED, true, SUSPEND_COMPLETE, done, now);
    set(
        st,
        READY,
        false,
        SUSPEND_COMPLETE,
        "RayService is suspended.",
        now,
    );
    set(
        st,
        UPGRADE_IN_PROGRESS,
        false,
        SUSPEND_COMPLETE,
        "No upgrade in progress.",
        now,
    );
    set(
        st,
        ROLLBACK_IN_PROGRESS,
        false,
        SUSPEND_COMPLETE,
        "No rollback in progress.",
        now,
    );
    Ok(Step::Stop { again: true })
}

/// Deletes the service's RayClusters and services (and, in an incremental
/// upgrade, its Gateway and HTTPRoute, as KubeRay does); `true` once none
/// is left.
pub async fn delete_owned(svc: &RayService, ctx: &Context, why: &str) -> Result<bool, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let name = svc.name_any();
    let clusters = ctx.clusters.owned_by(&ns, &name);
    let services = ctx.services.owned_by(&ns, &name);
    let none_left = clusters.is_empty() && services.is_empty();
    for c in clusters
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
    {
        super::reconcile::delete_cluster(svc, &c.name_any(), ctx, why).await?;
    }
    let api: Api<k8s_openapi::api::core::v1::Service> = Api::namespaced(ctx.client.clone(), &ns);
    for s in services
        .iter()
        .filter(|s| s.metadata.deletion_timestamp.is_none())
    {
        let sname = s.name_any();
        match api.delete(&sname, &DeleteParams::background()).await {
            Ok(_) => {
                ctx.events
                    .normal(
                        svc,
                        "DeletedService",
                        "Delete",
                        format!("Deleted the Service {ns}/{sname} {why}"),
                    )
                    .await
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {}
            Err(e) => {
                let err = Error::DeleteService {
                    name: sname,
                    source: e,
                };
                ctx.events
                    .warning(svc, "FailedToDeleteService", "Delete", err.to_string())
                    .await;
                return Err(err);
            }
        }
    }
    let routes_left = if super::incremental::enabled(svc, &ctx.cfg.gates) {
        super::routing::delete_routes(svc, ctx, why).await?
    } else {
        false
    };
    Ok(none_left && !routes_left)
}
