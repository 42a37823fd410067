//! Carrying out a pod plan: delete what it says (one by one or all at
//! once), create the head and the workers (16 at a time), record each
//! write in the expectations and report it as KubeRay does.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{ObjectReference, Pod};
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kuberay_api::RayCluster;
use kuberay_api::names::{CLUSTER_LABEL, KUBERAY_VERSION_ANNOTATION, UPGRADE_HASH_ANNOTATION};

use super::Context;
use super::scale::{Deletion, Plan, name_of};
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
    let w = Writer::new(cluster, ctx);
    if let Some(message) = &plan.delete_all {
        return w.delete_all(message, pods).await;
    }
    if let Some(head) = &plan.adopt_head {
        w.adopt_head(head, spec_hash).await;
    }
    let mut failure = w.delete_each(&plan.deletions).await;
    let pctx = PodContext {
        cluster,
        cfg: &ctx.cfg,
        spec_hash,
    };
    if plan.create_head
        && let Some(f) = w.create_head(pod::head_pod(&pctx)).await
    {
        failure.get_or_insert(f);
    }
    if let Some(f) = w.create_workers(&plan.create_workers, &pctx).await {
        failure.get_or_insert(f);
    }
    failure
}

/// The pod writes of one cluster, each recorded and reported.
struct Writer<'a> {
    cluster: &'a RayCluster,
    ctx: &'a Context,
    api: Api<Pod>,
    ns: String,
    name: String,
    key: (String, String),
}

impl<'a> Writer<'a> {
    fn new(cluster: &'a RayCluster, ctx: &'a Context) -> Self {
        let ns = cluster.namespace().unwrap_or_default();
        let name = cluster.name_any();
        Self {
            cluster,
            ctx,
            api: Api::namespaced(ctx.client.clone(), &ns),
            key: (ns.clone(), name.clone()),
            ns,
            name,
        }
    }

    async fn warn(&self, f: PodFailure, action: &str, msg: String) -> Option<(PodFailure, String)> {
        self.ctx
            .events
            .warning(self.cluster, f.event_reason(), action, msg.clone())
            .await;
        Some((f, msg))
    }

    async fn delete_all(&self, message: &str, pods: &[Arc<Pod>]) -> Option<(PodFailure, String)> {
        let lp = ListParams::default().labels(&format!("{CLUSTER_LABEL}={}", self.name));
        match self
            .api
            .delete_collection(&DeleteParams::default(), &lp)
            .await
        {
            Ok(_) => {
                for p in pods {
                    self.ctx.expectations.deleted(&self.key, name_of(p));
                }
                self.ctx
                    .events
                    .normal(self.cluster, "DeletedPod", "Delete", message.to_string())
                    .await;
                None
            }
            Err(e) => {
                let (ns, name) = (&self.ns, &self.name);
                let msg = format!(
                    "Failed deleting Pods for RayCluster {ns}/{name}, {}",
                    applier::api_message(&e)
                );
                self.warn(PodFailure::DeleteAll, "Delete", msg).await
            }
        }
    }

    /// Marks a head made by another operator version as current.
    async fn adopt_head(&self, head: &str, spec_hash: &str) {
        let patch = serde_json::json!({"metadata": {"annotations": {
            UPGRADE_HASH_ANNOTATION: spec_hash,
            KUBERAY_VERSION_ANNOTATION: crate::runtime::config::KUBERAY_VERSION,
        }}});
        if let Err(e) = self
            .api
            .patch(head, &PatchParams::default(), &Patch::Merge(&patch))
            .await
        {
            tracing::warn!(ns = %self.ns, pod = %head, error = %e, "could not adopt the head pod");
        }
    }

    async fn delete_each(&self, deletions: &[Deletion]) -> Option<(PodFailure, String)> {
        let mut failure = None;
        for d in deletions {
            match self.api.delete(&d.pod, &DeleteParams::default()).await {
                Ok(_) => {
                    self.ctx.expectations.deleted(&self.key, &d.pod);
                    let related = pod_ref(&self.ns, &d.pod);
                    self.ctx
                        .events
                        .about(
                            self.cluster,
                            related,
                            false,
                            d.reason,
                            "Delete",
                            d.message.clone(),
                        )
                        .await;
                }
                Err(kube::Error::Api(s)) if s.code == 404 => {
                    self.ctx.expectations.deleted(&self.key, &d.pod)
                }
                Err(e) => {
                    let f = if d.reason == "DeletedHeadPod" {
                        PodFailure::DeleteHead
                    } else {
                        PodFailure::DeleteWorker
                    };
                    let msg = format!(
                        "Failed deleting Pod {}/{}, {}",
                        self.ns,
                        d.pod,
                        applier::api_message(&e)
                    );
                    let failed = self.warn(f, "Delete", msg).await;
                    failure = failure.or(failed);
                }
            }
        }
        failure
    }

    fn owned(&self, mut p: Pod) -> Pod {
        p.metadata.owner_references = Some(vec![applier::owner_reference(self.cluster)]);
        p
    }

    /// Records and reports a created pod.
    async fn created(&self, created: Pod, what: &str, reason: &str) {
        let msg = format!("Created {what} Pod {}/{}", self.ns, created.name_any());
        let related = pod_ref(&self.ns, &created.name_any());
        self.ctx.expectations.created(&self.key, created);
        self.ctx
            .events
            .about(self.cluster, related, false, reason, "Create", msg)
            .await;
    }

    async fn create_head(&self, head: Pod) -> Option<(PodFailure, String)> {
        let attempted = head.metadata.generate_name.clone();
        match self
            .api
            .create(&PostParams::default(), &self.owned(head))
            .await
        {
            Ok(created) => {
                self.created(created, "head", "CreatedHeadPod").await;
                None
            }
            Err(kube::Error::Api(s)) if s.code == 409 => None,
            Err(e) => {
                let (ns, name) = (&self.ns, &self.name);
                let msg = format!(
                    "Failed to create head Pod for the cluster {ns}/{name}, {}",
                    refusal(&e, attempted.as_deref())
                );
                self.warn(PodFailure::CreateHead, "Create", msg).await
            }
        }
    }

    /// Workers are created in batches of 1, 2, 4, ... 16 in parallel (a
    /// 50-worker cluster should not wait for 50 sequential round trips),
    /// each pod built just before it is sent, and the first refusal (a
    /// quota, an admission webhook, the API server's rate limit) stops the
    /// rest: a cluster that cannot get pods makes one failing request per
    /// backoff period, not one per missing worker.
    async fn create_workers(
        &self,
        slots: &[WorkerSlot],
        pctx: &PodContext<'_>,
    ) -> Option<(PodFailure, String)> {
        let mut rest = slots;
        let mut batch = 1;
        while !rest.is_empty() {
            let (now, later) = rest.split_at(batch.min(rest.len()));
            rest = later;
            batch = (batch * 2).min(16);
            let results: Vec<(Option<String>, Result<Pod, kube::Error>)> =
                futures::future::join_all(now.iter().map(|slot| {
                    let api = self.api.clone();
                    let pod = self.owned(pod::worker_pod(pctx, slot));
                    async move {
                        let prefix = pod.metadata.generate_name.clone();
                        (prefix, api.create(&PostParams::default(), &pod).await)
                    }
                }))
                .await;
            let mut failure = None;
            for (attempted, r) in results {
                match r {
                    Ok(created) => self.created(created, "worker", "CreatedWorkerPod").await,
                    Err(e) if failure.is_none() => {
                        let (ns, name) = (&self.ns, &self.name);
                        let msg = format!(
                            "Failed to create worker Pod for the cluster {ns}/{name}, {}",
                            refusal(&e, attempted.as_deref())
                        );
                        failure = self.warn(PodFailure::CreateWorker, "Create", msg).await;
                    }
                    Err(_) => {}
                }
            }
            if failure.is_some() {
                return failure;
            }
        }
        None
    }
}

/// The API server's message for a refused pod, with the random suffix the
/// server generated after `generate_name` masked (`...-worker-*`). The
/// message goes into the status, and a new name in every retry's message
/// would make every retry a status write, whose watch event brings the
/// cluster back at once and defeats the backoff.
fn refusal(e: &kube::Error, generate_name: Option<&str>) -> String {
    let message = applier::api_message(e);
    match generate_name.filter(|p| !p.is_empty()) {
        Some(prefix) => mask_generated_suffixes(&message, prefix),
        None => message,
    }
}

fn mask_generated_suffixes(message: &str, prefix: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut rest = message;
    while let Some(at) = rest.find(prefix) {
        let (before, after) = rest.split_at(at + prefix.len());
        out.push_str(before);
        let suffix = after
            .find(|c: char| !c.is_ascii_alphanumeric())
            .unwrap_or(after.len());
        if suffix > 0 {
            out.push('*');
        }
        rest = &after[suffix..];
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use super::mask_generated_suffixes;

    #[test]
    fn generated_suffixes_are_masked_so_a_retry_repeats_its_message() {
        let m = r#"pods "c-w-worker-97hkx" is forbidden: exceeded quota: q"#;
        assert_eq!(
            mask_generated_suffixes(m, "c-w-worker-"),
            r#"pods "c-w-worker-*" is forbidden: exceeded quota: q"#
        );
        assert_eq!(mask_generated_suffixes("no name", "c-w-worker-"), "no name");
        assert_eq!(
            mask_generated_suffixes("c-w-worker-", "c-w-worker-"),
            "c-w-worker-"
        );
    }
}
