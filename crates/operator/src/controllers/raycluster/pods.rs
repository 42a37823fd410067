//! Carrying out a pod plan: delete what it says (one by one or all at
//! once), create the head and the workers (16 at a time), record each
//! write in the expectations and report it as KubeRay does.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kuberay_api::RayCluster;
use kuberay_api::names::{CLUSTER_LABEL, KUBERAY_VERSION_ANNOTATION, UPGRADE_HASH_ANNOTATION};

use super::Context;
use super::scale::{Plan, name_of};
use crate::kit::applier;
use crate::ray::pod::{self, PodContext, WorkerSlot};

/// A pod write that failed: the `ReplicaFailure` reason and the event
/// reason of each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PodFailure {
    DeleteAll,
    DeleteHead,
    DeleteWorker,
    CreateHead,
    CreateWorker,
}

impl PodFailure {
    /// The `ReplicaFailure` condition's reason (and the error's).
    pub fn reason(self) -> &'static str {
        match self {
            PodFailure::DeleteAll => "FailedDeleteAllPods",
            PodFailure::DeleteHead => "FailedDeleteHeadPod",
            PodFailure::DeleteWorker => "FailedDeleteWorkerPod",
            PodFailure::CreateHead => "FailedCreateHeadPod",
            PodFailure::CreateWorker => "FailedCreateWorkerPod",
        }
    }

    /// KubeRay's event reason.
    pub fn event_reason(self) -> &'static str {
        match self {
            PodFailure::DeleteAll => "FailedToDeletePodCollection",
            PodFailure::DeleteHead => "FailedToDeleteHeadPod",
            PodFailure::DeleteWorker => "FailedToDeleteWorkerPod",
            PodFailure::CreateHead => "FailedToCreateHeadPod",
            PodFailure::CreateWorker => "FailedToCreateWorkerPod",
        }
    }
}

/// Carries out a plan. Returns the first failure as a `ReplicaFailure`
/// reason and message; everything else in the plan is still attempted.
pub(super) async fn execute(
    cluster: &RayCluster,
    ctx: &Context,
    plan: &Plan,
    pods: &[Arc<Pod>],
    spec_hash: &str,
) -> Option<(PodFailure, String)> {
    let ns = cluster.namespace().unwrap_or_default();
    let name = cluster.name_any();
    let key = (ns.clone(), name.clone());
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let mut failure = None;
    if let Some(message) = &plan.delete_all {
        let lp = ListParams::default().labels(&format!("{CLUSTER_LABEL}={name}"));
        match api.delete_collection(&DeleteParams::default(), &lp).await {
            Ok(_) => {
                for p in pods {
                    ctx.expectations.deleted(&key, name_of(p));
                }
                ctx.events
                    .normal(cluster, "DeletedPod", "Delete", message.clone())
                    .await;
            }
            Err(e) => {
                let msg = format!("Failed deleting Pods for RayCluster {ns}/{name}, {e}");
                let f = PodFailure::DeleteAll;
                ctx.events
                    .warning(cluster, f.event_reason(), "Delete", msg.clone())
                    .await;
                failure = Some((f, msg));
            }
        }
        return failure;
    }
    if let Some(head) = &plan.adopt_head {
        let patch = serde_json::json!({"metadata": {"annotations": {
            UPGRADE_HASH_ANNOTATION: spec_hash,
            KUBERAY_VERSION_ANNOTATION: crate::runtime::config::KUBERAY_VERSION,
        }}});
        if let Err(e) = api
            .patch(head, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(%ns, pod = %head, error = %e, "could not adopt the head pod");
        }
    }
    for d in &plan.deletions {
        match api.delete(&d.pod, &DeleteParams::default()).await {
            Ok(_) => {
                ctx.expectations.deleted(&key, &d.pod);
                let related = pod_ref(&ns, &d.pod);
                ctx.events
                    .about(
                        cluster,
                        related,
                        false,
                        d.reason,
                        "Delete",
                        d.message.clone(),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => ctx.expectations.deleted(&key, &d.pod),
            Err(e) => {
                let f = if d.reason == "DeletedHeadPod" {
                    PodFailure::DeleteHead
                } else {
                    PodFailure::DeleteWorker
                };
                let msg = format!("Failed deleting Pod {ns}/{}, {e}", d.pod);
                ctx.events
                    .warning(cluster, f.event_reason(), "Delete", msg.clone())
                    .await;
                failure.get_or_insert((f, msg));
            }
        }
    }
    let pctx = PodContext {
        cluster,
        cfg: &ctx.cfg,
        spec_hash,
    };
    let owner = applier::owner_reference(cluster);
    let with_owner = |mut p: Pod| {
        p.metadata.owner_references = Some(vec![owner.clone()]);
        p
    };
    if plan.create_head {
        match api
            .create(&PostParams::default(), &with_owner(pod::head_pod(&pctx)))
            .await
        {
            Ok(created) => {
                let msg = format!("Created head Pod {ns}/{}", created.name_any());
                let related = pod_ref(&ns, &created.name_any());
                ctx.expectations.created(&key, created);
                ctx.events
                    .about(cluster, related, false, "CreatedHeadPod", "Create", msg)
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => {
                let msg = format!("Failed to create head Pod for the cluster {ns}/{name}, {e}");
                let f = PodFailure::CreateHead;
                ctx.events
                    .warning(cluster, f.event_reason(), "Create", msg.clone())
                    .await;
                failure.get_or_insert((f, msg));
            }
        }
    }
    // Workers are created in parallel: a 50-worker cluster should not wait
    // for 50 sequential round trips.
    let desired: Vec<Pod> = plan
        .create_workers
        .iter()
        .map(|slot: &WorkerSlot| with_owner(pod::worker_pod(&pctx, slot)))
        .collect();
    let results: Vec<Result<Pod, kube::Error>> = futures::stream::iter(desired)
        .map(|pod| {
            let api = api.clone();
            async move { api.create(&PostParams::default(), &pod).await }
        })
        .buffer_unordered(16)
        .collect()
        .await;
    for r in results {
        match r {
            Ok(created) => {
                let msg = format!("Created worker Pod {ns}/{}", created.name_any());
                let related = pod_ref(&ns, &created.name_any());
                ctx.expectations.created(&key, created);
                ctx.events
                    .about(cluster, related, false, "CreatedWorkerPod", "Create", msg)
                    .await;
            }
            Err(e) => {
                let msg = format!("Failed to create worker Pod for the cluster {ns}/{name}, {e}");
                let f = PodFailure::CreateWorker;
                ctx.events
                    .warning(cluster, f.event_reason(), "Create", msg.clone())
                    .await;
                failure.get_or_insert((f, msg));
            }
        }
    }
    failure
}

fn pod_ref(ns: &str, name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
    }
}
