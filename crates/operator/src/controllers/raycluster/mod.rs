//! The RayCluster controller. A reconcile is a pipeline: read (tolerantly),
//! default, validate, build the desired children (pure), plan pod changes
//! (pure), apply, then write the status only if it changed. Everything it
//! reads comes from watch-fed caches; it never lists from the API server.

pub mod hash;
mod reconcile;
pub mod scale;
pub mod status;

use std::sync::Arc;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::{Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use kuberay_api::RayCluster;
use kuberay_api::names::{CLUSTER_LABEL, CREATED_BY, CREATED_BY_LABEL, NODE_TYPE_LABEL};
use kuberay_api::tolerant::Tolerant;

use crate::kit::backoff::Failures;
use crate::kit::cache::{Cache, controller_owner};
use crate::kit::events::Events;
use crate::kit::expectations::Expectations;
use crate::runtime::config::Config;
use crate::runtime::manager::Shared;
use crate::runtime::metrics::Metrics;

pub use reconcile::Error;

/// Shared state of the RayCluster controller.
pub struct Context {
    pub client: Client,
    pub cfg: Config,
    pub pods: Cache<Pod>,
    pub services: Cache<Service>,
    pub ingresses: Cache<Ingress>,
    pub service_accounts: Cache<ServiceAccount>,
    pub roles: Cache<Role>,
    pub role_bindings: Cache<RoleBinding>,
    pub secrets: Cache<Secret>,
    pub expectations: Expectations,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    /// Consecutive failures per cluster, for exponential backoff.
    failures: Failures,
}

fn pod_cluster(p: &Pod) -> Option<String> {
    p.metadata.labels.as_ref()?.get(CLUSTER_LABEL).cloned()
}

fn owner_cluster<K: ResourceExt>(o: &K) -> Option<String> {
    controller_owner(o.meta(), "RayCluster")
}

/// Runs the controller until `shutdown` resolves; in-flight reconciles
/// finish first.
pub async fn run(
    shared: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = shared.client.clone();
    let scope = shared.scope.clone();
    let ctx = Arc::new(Context {
        client: client.clone(),
        cfg: shared.cfg.clone(),
        pods: Cache::new(pod_cluster),
        services: Cache::new(owner_cluster::<Service>),
        ingresses: Cache::new(owner_cluster::<Ingress>),
        service_accounts: Cache::new(owner_cluster::<ServiceAccount>),
        roles: Cache::new(owner_cluster::<Role>),
        role_bindings: Cache::new(owner_cluster::<RoleBinding>),
        secrets: Cache::new(owner_cluster::<Secret>),
        expectations: Expectations::default(),
        events: Events::new(client.clone(), "raycluster-controller"),
        metrics: shared.metrics.clone(),
        failures: Failures::default(),
    });
    // Only Ray pods and only what this operator created are cached.
    let ray_pods = watcher::Config::default()
        .labels(&format!("{NODE_TYPE_LABEL} in (head,worker,redis-cleanup)"));
    let ours = watcher::Config::default().labels(&format!("{CREATED_BY_LABEL}={CREATED_BY}"));
    let triggers = futures::stream::select_all([
        ctx.pods.watch(&client, &scope, ray_pods),
        ctx.services.watch(&client, &scope, ours.clone()),
        ctx.ingresses.watch(&client, &scope, ours.clone()),
        ctx.service_accounts.watch(&client, &scope, ours.clone()),
        ctx.roles.watch(&client, &scope, ours.clone()),
        ctx.role_bindings.watch(&client, &scope, ours.clone()),
        ctx.secrets.watch(&client, &scope, ours),
    ]);
    let (reader, writer) = reflector::store();
    shared.metrics.watch_clusters(reader.clone());
    let gone = ctx.clone();
    let (clusters, listed) = scope
        .watch_listed::<Tolerant<RayCluster>>(&client, watcher::Config::default().any_semantic());
    let clusters = clusters
        .inspect_ok(move |event| {
            if let watcher::Event::Delete(c) = event {
                let (name, ns) = (c.name_any(), c.namespace().unwrap_or_default());
                gone.metrics
                    .cluster_deleted(&name, &ns, &c.uid().unwrap_or_default());
                gone.expectations.forget(&(ns, name));
            }
        })
        .modify(|c| c.metadata.managed_fields = None)
        .reflect(writer)
        .touched_objects();
    let synced = ctx.clone();
    let readiness = shared.readiness.clone();
    tokio::spawn(async move {
        listed.wait().await;
        tracing::debug!("RayCluster cache synced");
        synced.pods.wait_ready().await;
        tracing::debug!("pod cache synced");
        synced.services.wait_ready().await;
        tracing::info!("raycluster controller caches synced");
        readiness.synced();
    });
    Controller::for_stream(clusters, reader)
        .with_config(controller::Config::default().concurrency(shared.concurrency))
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(
            |obj, ctx: Arc<Context>| async move {
                let timer = ctx.metrics.reconcile_started("raycluster");
                let result = reconcile::reconcile(obj, ctx.clone()).await;
                timer.finish(result.as_ref().err().map(Error::reason));
                result
            },
            error_policy,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "reconcile failed");
            }
        })
        .await;
}

/// Exponential backoff per cluster: 1s, 2s, 4s, ... up to 5 minutes.
fn error_policy(obj: Arc<Tolerant<RayCluster>>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
    let delay = ctx.failures.next_delay(&key);
    tracing::warn!(namespace = %key.0, name = %key.1, error = %err, reason = err.reason(), retry_in = ?delay, "reconcile failed");
    Action::requeue(delay)
}

#[cfg(test)]
mod tests;
