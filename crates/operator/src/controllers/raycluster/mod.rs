//! The RayCluster controller. A reconcile is a pipeline: read (tolerantly),
//! default, validate, build the desired children (pure), plan pod changes
//! (pure), apply, then write the status only if it changed. Everything it
//! reads comes from watch-fed caches; it never lists from the API server.

mod autoscaling;
mod children;
pub mod gcs_storage;
pub mod hash;
pub mod metrics;
mod pods;
mod reconcile;
pub mod redis_cleanup;
pub mod scale;
pub mod status;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use futures::FutureExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{PersistentVolumeClaim, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kuberay_api::RayCluster;
use kuberay_api::names::{
    CLUSTER_LABEL, CREATED_BY, CREATED_BY_LABEL, NODE_TYPE_LABEL, REDIS_CLEANUP,
};
use kuberay_api::tolerant::Tolerant;

use super::{Registration, Shared};
use crate::kit::cache::{Cache, controller_owner};
use crate::kit::events::Events;
use crate::kit::expectations::Expectations;
use crate::kit::pacing::Pacer;
use crate::kit::runner::Runner;
use crate::runtime::config::Config;
use crate::runtime::manager::Stop;
use metrics::ClusterMetrics;

pub use children::ChildKind;
pub use pods::PodFailure;
pub use reconcile::Error;

pub const REGISTRATION: Registration = Registration {
    name: "raycluster",
    enabled: |_| true,
    run: |shared, stop| run(shared, stop).boxed(),
};

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
    /// Redis clean-up Jobs of clusters being deleted.
    pub jobs: Cache<Job>,
    /// Claims of the embedded GCS store, by the cluster they are labelled
    /// with (a retained claim has no owner).
    pub claims: Cache<PersistentVolumeClaim>,
    pub expectations: Expectations,
    /// Big scale-ups get a batch of workers per interval.
    pub pacer: Pacer,
    pub events: Events,
    pub metrics: Arc<ClusterMetrics>,
    /// Each cluster's group sizes at its last reconcile, to say in an event
    /// when one changes (the autoscaler's decisions are otherwise silent).
    pub group_sizes: Mutex<HashMap<(String, String), BTreeMap<String, i32>>>,
}

fn pod_cluster(p: &Pod) -> Option<String> {
    p.metadata.labels.as_ref()?.get(CLUSTER_LABEL).cloned()
}

fn labelled_cluster<K: ResourceExt>(o: &K) -> Option<String> {
    o.labels().get(CLUSTER_LABEL).cloned()
}

fn owner_cluster<K: ResourceExt>(o: &K) -> Option<String> {
    controller_owner(o.meta(), "RayCluster")
}

/// Runs the controller until `stop` resolves; in-flight reconciles finish.
pub async fn run(shared: Shared, stop: Stop) {
    let env = &shared.env;
    let ctx = Arc::new(Context {
        client: env.client.clone(),
        cfg: shared.cfg.clone(),
        pods: Cache::new(pod_cluster),
        services: Cache::new(owner_cluster::<Service>),
        ingresses: Cache::new(owner_cluster::<Ingress>),
        service_accounts: Cache::new(owner_cluster::<ServiceAccount>),
        roles: Cache::new(owner_cluster::<Role>),
        role_bindings: Cache::new(owner_cluster::<RoleBinding>),
        secrets: Cache::new(owner_cluster::<Secret>),
        jobs: Cache::new(owner_cluster::<Job>),
        claims: Cache::new(labelled_cluster::<PersistentVolumeClaim>),
        expectations: Expectations::default(),
        pacer: Pacer::new(scale::PACING_INTERVAL, scale::PACED_CREATIONS_PER_SECOND),
        events: Events::new(
            env.events_client.clone(),
            "raycluster-controller",
            &shared.cfg.instance,
        ),
        metrics: ClusterMetrics::register(&env.metrics),
        group_sizes: Mutex::default(),
    });
    // Only Ray pods and only what this operator created are cached.
    let ray_pods = watcher::Config::default()
        .labels(&format!("{NODE_TYPE_LABEL} in (head,worker,redis-cleanup)"));
    let ours = watcher::Config::default().labels(&format!("{CREATED_BY_LABEL}={CREATED_BY}"));
    let metrics = ctx.metrics.clone();
    let gone = ctx.clone();
    Runner::<Tolerant<RayCluster>>::new("raycluster", env)
        .owns(&ctx.pods, ray_pods)
        .owns(&ctx.services, ours.clone())
        .owns(&ctx.ingresses, ours.clone())
        .owns(&ctx.service_accounts, ours.clone())
        .owns(&ctx.roles, ours.clone())
        .owns(&ctx.role_bindings, ours.clone())
        .owns(&ctx.secrets, ours)
        .owns(
            &ctx.jobs,
            watcher::Config::default().labels(&format!("{NODE_TYPE_LABEL}={REDIS_CLEANUP}")),
        )
        .owns(
            &ctx.claims,
            watcher::Config::default().labels(CLUSTER_LABEL),
        )
        .with_store(move |store| metrics.watch(store))
        .on_delete(move |c| {
            let (name, ns) = (c.name_any(), c.namespace().unwrap_or_default());
            gone.metrics
                .deleted(&name, &ns, &c.uid().unwrap_or_default());
            let key = (ns, name);
            gone.pacer.done(&key);
            gone.expectations.forget(&key);
            gone.group_sizes.lock().unwrap().remove(&key);
        })
        .run(ctx, reconcile::reconcile, stop)
        .await;
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_gcs_ft;
