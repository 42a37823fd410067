//! The RayService controller: keeps Ray Serve applications running on a
//! RayCluster made from `rayClusterConfig`, submits `serveConfigV2` to its
//! dashboard, points `<service>-head-svc` and `<service>-serve-svc` at the
//! cluster that is ready to serve, and upgrades without downtime: a spec
//! change that needs a new cluster prepares a pending one, switches the
//! services once its applications run, then deletes the old one after
//! `rayClusterDeletionDelaySeconds`; or, with
//! `NewClusterWithIncrementalUpgrade`, moves Serve capacity and Gateway API
//! traffic over step by step.

pub mod cluster;
pub mod gateway;
pub mod incremental;
pub mod metrics;
mod reconcile;
mod routing;
pub mod serve;
pub mod services;
pub mod status;
mod suspend;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kuberay_api::names::{CLUSTER_LABEL, HEAD, NODE_TYPE_LABEL, SERVE_LABEL};
use kuberay_api::tolerant::Tolerant;
use kuberay_api::{RayCluster, RayService, RayServiceStatuses};

use super::{Registration, Shared};
use crate::kit::cache::{Cache, controller_owner};
use crate::kit::clock::Clock;
use crate::kit::events::Events;
use crate::kit::runner::Runner;
use crate::kit::written::Written;
use crate::ray::dashboard::Dashboards;
use crate::runtime::config::Config;
use crate::runtime::manager::Stop;
use metrics::ServiceMetrics;

pub use reconcile::Error;

pub const REGISTRATION: Registration = Registration {
    name: "rayservice",
    enabled: |_| true,
    run: |shared, stop| run(shared, stop).boxed(),
};

/// KubeRay's finalizer: the RayClusters go before the RayService does.
pub const FINALIZER: &str = "ray.io/rayservice-finalizer";

/// (namespace, name) of a RayService.
pub(crate) type Key = (String, String);

/// Shared state of the RayService controller.
pub struct Context {
    pub client: Client,
    pub cfg: Config,
    pub clusters: Cache<RayCluster>,
    pub services: Cache<Service>,
    /// Head pods of RayService clusters, for the `ray.io/serve` label.
    pub head_pods: Cache<Pod>,
    pub events: Events,
    pub dashboards: Arc<dyn Dashboards>,
    pub clock: Arc<dyn Clock>,
    pub metrics: Arc<ServiceMetrics>,
    /// How often a RayService that is not settled is looked at again
    /// (KubeRay's 2 s); a settled one, `poll * 5`.
    pub poll: Duration,
    /// The serve config submitted to each cluster, by RayService then
    /// cluster name, as KubeRay caches it: after a restart it is submitted
    /// once more, which Serve treats as a no-op when nothing changed.
    submitted: Mutex<HashMap<Key, HashMap<String, String>>>,
    /// When each dangling cluster may be deleted, by RayService.
    deletions: Mutex<HashMap<Key, HashMap<String, jiff::Timestamp>>>,
    /// The status each RayService was last written with, until the cache
    /// shows it: acting on an older status could name a second pending
    /// cluster.
    written: Written<RayServiceStatuses>,
}

fn owner_service<K: ResourceExt>(o: &K) -> Option<String> {
    controller_owner(o.meta(), "RayService")
}

/// The RayService of a service: its owner, or the owner of the cluster
/// whose per-cluster serve service it is (incremental upgrade).
fn service_owner(s: &Service) -> Option<String> {
    owner_service(s).or_else(|| services::service_of_cluster_serve(s))
}

/// The RayService of a head pod: its cluster is `<service>-<5 characters>`.
fn service_of_head_pod(p: &Pod) -> Option<String> {
    let cluster = p.labels().get(CLUSTER_LABEL)?;
    let cut = cluster.len().checked_sub(6)?;
    (cluster.as_bytes().get(cut) == Some(&b'-')).then(|| cluster[..cut].to_string())
}

/// Runs the controller until `stop` resolves; in-flight reconciles finish.
pub async fn run(shared: Shared, stop: Stop) {
    let env = &shared.env;
    let ctx = Arc::new(Context {
        client: env.client.clone(),
        cfg: shared.cfg.clone(),
        clusters: Cache::new(owner_service::<RayCluster>),
        services: Cache::new(service_owner),
        head_pods: Cache::new(service_of_head_pod),
        events: Events::new(
            env.events_client.clone(),
            "rayservice-controller",
            &shared.cfg.instance,
        ),
        dashboards: shared.dashboards.clone(),
        clock: shared.clock.clone(),
        metrics: ServiceMetrics::register(&env.metrics),
        poll: Duration::from_secs(2),
        submitted: Mutex::default(),
        deletions: Mutex::default(),
        written: Written::default(),
    });
    // Pods of RayService clusters carry `ray.io/serve` from creation.
    let heads =
        watcher::Config::default().labels(&format!("{NODE_TYPE_LABEL}={HEAD},{SERVE_LABEL}"));
    let metrics = ctx.metrics.clone();
    let gone = ctx.clone();
    Runner::<Tolerant<RayService>>::new("rayservice", env)
        .owns(&ctx.clusters, watcher::Config::default())
        .owns(&ctx.services, watcher::Config::default())
        .owns(&ctx.head_pods, heads)
        .with_store(move |store| metrics.watch(store))
        .on_delete(move |s| gone.forget(&(s.namespace().unwrap_or_default(), s.name_any())))
        .run(ctx, reconcile::reconcile, stop)
        .await;
}

impl Context {
    fn forget(&self, key: &Key) {
        self.submitted.lock().unwrap().remove(key);
        self.deletions.lock().unwrap().remove(key);
        self.written.forget(key);
    }

    /// The serve config last submitted to `cluster`.
    fn submitted_config(&self, key: &Key, cluster: &str) -> Option<String> {
        self.submitted
            .lock()
            .unwrap()
            .get(key)
            .and_then(|m| m.get(cluster).cloned())
    }

    fn record_submission(&self, key: &Key, cluster: &str, config: &str) {
        self.submitted
            .lock()
            .unwrap()
            .entry(key.clone())
            .or_default()
            .insert(cluster.to_string(), config.to_string());
    }

    /// Forgets the submissions to clusters other than `keep`.
    fn keep_submissions(&self, key: &Key, keep: &[&str]) {
        if let Some(m) = self.submitted.lock().unwrap().get_mut(key) {
            m.retain(|c, _| keep.contains(&c.as_str()));
        }
    }
}
