//! One reconcile of one RayCluster: the I/O around the pure steps.

use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::{Resource, ResourceExt};
use kuberay_api::names::*;
use kuberay_api::schema::MANAGED_BY_KUBERAY;
use kuberay_api::tolerant::Tolerant;
use kuberay_api::validation::validate_raycluster;
use kuberay_api::{RayCluster, RayClusterStatus, defaults};

use super::scale::{Plan, name_of};
use super::status::{self, Observation};
use super::{Context, hash, scale};
use crate::kit::applier::{self, ApplyError, FIELD_MANAGER, Outcome};
use crate::kit::conditions;
use crate::kit::runner::Reason;
use crate::ray::conditions::{PROVISIONED, REPLICA_FAILURE, SUSPENDING};
use crate::ray::pod::{self, PodContext, WorkerSlot};
use crate::ray::{auth, autoscaler, service};

/// Why a reconcile failed; each variant's reason is stable (event reason,
/// log field, metric label).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("updating the status: {0}")]
    Status(kube::Error),
    #[error("{kind} {name}: {source}")]
    Child {
        kind: &'static str,
        name: String,
        source: ApplyError,
    },
    #[error("{1}")]
    Replicas(&'static str, String),
    #[error("{0}")]
    Refused(String),
}

impl Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Status(_) => "FailedToUpdateStatus",
            Error::Child { kind, .. } => match *kind {
                "Service" => "FailedToCreateService",
                "Ingress" => "FailedToCreateIngress",
                "ServiceAccount" => "FailedToCreateServiceAccount",
                "Role" => "FailedToCreateRole",
                "Secret" => "FailedToCreateSecret",
                _ => "FailedToCreateRoleBinding",
            },
            Error::Replicas(reason, _) => reason,
            Error::Refused(_) => "PodReconciliationError",
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
    let mut cluster = match &obj.parsed {
        Ok(c) => c.clone(),
        Err(e) => {
            let shell = shell_of(&obj);
            ctx.events
                .warning(
                    &shell,
                    "InvalidRayClusterSpec",
                    "Validate",
                    format!("The RayCluster {ns}/{name} cannot be read: {e}"),
                )
                .await;
            return Ok(Action::await_change());
        }
    };
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

    ctx.pods.wait_ready().await;
    ctx.services.wait_ready().await;
    ctx.secrets.wait_ready().await;
    let owner = applier::owner_reference(&cluster);
    reconcile_children(&cluster, &ctx, &owner).await?;

    let cached = ctx.pods.owned_by(&ns, &name);
    let pods = ctx.expectations.view(&key, cached);
    let suspending = cluster.spec.suspend == Some(true)
        || conditions::is_true(
            cluster.status.as_ref().and_then(|s| s.conditions.as_ref()),
            SUSPENDING,
        );
    let spec_hash = hash::pod_spec_hash(&cluster.spec);
    let plan = scale::plan(
        &cluster,
        &pods,
        &ctx.cfg,
        &spec_hash,
        suspending,
        &mut random_suffix,
    );
    let failure = execute(&cluster, &ctx, &plan, &pods, &spec_hash).await;

    let pods = ctx.expectations.view(&key, ctx.pods.owned_by(&ns, &name));
    let svc_name = service::head_service(&cluster, &ctx.cfg)
        .metadata
        .name
        .unwrap_or_default();
    let head_service = ctx.services.get(&ns, &svc_name);
    let obs = Observation {
        pods: &pods,
        head_service: head_service.as_deref(),
        failure: failure.as_ref().map(|(r, m)| (*r, m.clone())),
        suspending,
        now: now(),
    };
    let new_status = status::compute(&cluster, &obs);
    let was_provisioned = conditions::is_true(
        cluster.status.as_ref().and_then(|s| s.conditions.as_ref()),
        PROVISIONED,
    );
    let now_provisioned = conditions::is_true(new_status.conditions.as_ref(), PROVISIONED);
    if write_status(&ctx, &cluster, new_status).await? && now_provisioned && !was_provisioned {
        let age = cluster
            .metadata
            .creation_timestamp
            .as_ref()
            .map(|t| jiff::Timestamp::now().duration_since(t.0).unsigned_abs())
            .unwrap_or_default();
        ctx.metrics
            .cluster_provisioned(&name, &ns, &cluster.uid().unwrap_or_default(), age);
    }
    if let Some((reason, message)) = failure {
        return Err(Error::Replicas(reason, message));
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
    Ok(Action::requeue(ctx.cfg.resync))
}

/// An object with only the metadata, to attach events to an unreadable one.
fn shell_of(obj: &Tolerant<RayCluster>) -> RayCluster {
    RayCluster {
        metadata: obj.metadata.clone(),
        spec: Default::default(),
        status: None,
    }
}

/// Applies one desired child and reports what happened as an event.
async fn ensure<K>(
    ctx: &Context,
    cluster: &RayCluster,
    cache: &crate::kit::cache::Cache<K>,
    mut desired: K,
    kind: &'static str,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + crate::kit::cache::Trim
        + 'static,
{
    let meta = desired.meta_mut();
    meta.owner_references = Some(vec![applier::owner_reference(cluster)]);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(CREATED_BY_LABEL.into(), CREATED_BY.into());
    let name = desired.name_any();
    let ns = cluster.namespace().unwrap_or_default();
    let lower = kind.to_lowercase();
    match applier::ensure(&ctx.client, cache, &desired).await {
        Ok(Outcome::Unchanged) => Ok(()),
        Ok(Outcome::Created) => {
            ctx.events
                .normal(
                    cluster,
                    &format!("Created{kind}"),
                    "Create",
                    format!("Created {lower} {ns}/{name}"),
                )
                .await;
            Ok(())
        }
        Ok(Outcome::Updated) => {
            ctx.events
                .normal(
                    cluster,
                    &format!("Updated{kind}"),
                    "Update",
                    format!("Updated {lower} {ns}/{name}"),
                )
                .await;
            Ok(())
        }
        Err(source) => {
            let err = Error::Child { kind, name, source };
            ctx.events
                .warning(
                    cluster,
                    err.reason(),
                    "Create",
                    format!("Failed creating {lower} {ns}/{}: {err}", desired.name_any()),
                )
                .await;
            Err(err)
        }
    }
}

async fn reconcile_children(
    cluster: &RayCluster,
    ctx: &Context,
    _owner: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference,
) -> Result<(), Error> {
    if cluster.spec.enable_in_tree_autoscaling == Some(true) {
        if !autoscaler::user_service_account(cluster) {
            ensure(
                ctx,
                cluster,
                &ctx.service_accounts,
                autoscaler::service_account(cluster),
                "ServiceAccount",
            )
            .await?;
        }
        ensure(ctx, cluster, &ctx.roles, autoscaler::role(cluster), "Role").await?;
        ensure(
            ctx,
            cluster,
            &ctx.role_bindings,
            autoscaler::role_binding(cluster),
            "RoleBinding",
        )
        .await?;
    }
    if auth::needs_secret(cluster) {
        let mut secret = auth::secret(cluster);
        secret.metadata.owner_references = Some(vec![applier::owner_reference(cluster)]);
        let name = secret.name_any();
        match applier::create_if_missing(&ctx.client, &ctx.secrets, &secret).await {
            Ok(Outcome::Created) => {
                let note = format!(
                    "Created secret {}/{name}",
                    cluster.namespace().unwrap_or_default()
                );
                ctx.events
                    .normal(cluster, "CreatedSecret", "Create", note)
                    .await;
            }
            Ok(_) => {}
            Err(source) => {
                let err = Error::Child {
                    kind: "Secret",
                    name,
                    source,
                };
                ctx.events
                    .warning(cluster, err.reason(), "Create", err.to_string())
                    .await;
                return Err(err);
            }
        }
    }
    if cluster.spec.head_group_spec.enable_ingress == Some(true) {
        ensure(
            ctx,
            cluster,
            &ctx.ingresses,
            service::ingress(cluster, &ctx.cfg),
            "Ingress",
        )
        .await?;
    }
    ensure(
        ctx,
        cluster,
        &ctx.services,
        service::head_service(cluster, &ctx.cfg),
        "Service",
    )
    .await?;
    if service::wants_headless_service(cluster) {
        ensure(
            ctx,
            cluster,
            &ctx.services,
            service::headless_service(cluster),
            "Service",
        )
        .await?;
    }
    if service::wants_serve_service(cluster) {
        ensure(
            ctx,
            cluster,
            &ctx.services,
            service::serve_service(cluster),
            "Service",
        )
        .await?;
    }
    Ok(())
}

/// Carries out a plan. Returns the first failure as a `ReplicaFailure`
/// reason and message; everything else in the plan is still attempted.
async fn execute(
    cluster: &RayCluster,
    ctx: &Context,
    plan: &Plan,
    pods: &[Arc<Pod>],
    spec_hash: &str,
) -> Option<(&'static str, String)> {
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
                ctx.events
                    .warning(
                        cluster,
                        "FailedToDeletePodCollection",
                        "Delete",
                        msg.clone(),
                    )
                    .await;
                failure = Some(("FailedDeleteAllPods", msg));
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
                let (event, marker) = if d.reason == "DeletedHeadPod" {
                    ("FailedToDeleteHeadPod", "FailedDeleteHeadPod")
                } else {
                    ("FailedToDeleteWorkerPod", "FailedDeleteWorkerPod")
                };
                let msg = format!("Failed deleting Pod {ns}/{}, {e}", d.pod);
                ctx.events
                    .warning(cluster, event, "Delete", msg.clone())
                    .await;
                failure.get_or_insert((marker, msg));
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
                ctx.events
                    .warning(cluster, "FailedToCreateHeadPod", "Create", msg.clone())
                    .await;
                failure.get_or_insert(("FailedCreateHeadPod", msg));
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
                ctx.events
                    .warning(cluster, "FailedToCreateWorkerPod", "Create", msg.clone())
                    .await;
                failure.get_or_insert(("FailedCreateWorkerPod", msg));
            }
        }
    }
    failure
}

fn pod_ref(ns: &str, name: &str) -> k8s_openapi::api::core::v1::ObjectReference {
    k8s_openapi::api::core::v1::ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Pod".into()),
        namespace: Some(ns.into()),
        name: Some(name.into()),
        ..Default::default()
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
    let api: Api<RayCluster> =
        Api::namespaced(ctx.client.clone(), &cluster.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "status": new,
    });
    api.patch_status(
        &cluster.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
    .map_err(Error::Status)?;
    Ok(true)
}
