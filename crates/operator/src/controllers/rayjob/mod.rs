//! The RayJob controller: create (or borrow) a RayCluster, submit the
//! entrypoint in the chosen mode, follow the Ray job through the dashboard,
//! enforce deadlines and retries, then clean up as the deletion rules say.

mod children;
mod cleanup;
pub mod cluster;
pub mod deletion;
pub mod metrics;
mod reconcile;
pub mod submitter;
mod transitions;

use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::watcher;
use kube::{Client, ResourceExt};
use kuberay_api::names::{CREATED_BY, CREATED_BY_LABEL};
use kuberay_api::tolerant::Tolerant;
use kuberay_api::{RayCluster, RayJob};

use super::{Registration, Shared};
use crate::kit::cache::{Cache, Trim, controller_owner};
use crate::kit::events::Events;
use crate::kit::runner::Runner;
use crate::kit::written::Written;
use crate::ray::dashboard::Dashboards;
use crate::runtime::config::Config;
use crate::runtime::manager::Stop;
use metrics::JobMetrics;

pub use reconcile::Error;

pub const REGISTRATION: Registration = Registration {
    name: "rayjob",
    enabled: |_| true,
    run: |shared, stop| run(shared, stop).boxed(),
};

/// The finalizer that stops a still-running Ray job when its RayJob is deleted.
pub const FINALIZER: &str = "ray.io/rayjob-finalizer";

/// Shared state of the RayJob controller.
pub struct Context {
    pub client: Client,
    pub cfg: Config,
    pub clusters: Cache<RayCluster>,
    pub jobs: Cache<Job>,
    pub services: Cache<Service>,
    pub events: Events,
    pub metrics: Arc<JobMetrics>,
    pub dashboards: Arc<dyn Dashboards>,
    /// How often a running job's status is polled.
    pub poll: Duration,
    /// The status each RayJob was last written with, until the cache shows
    /// it: a reconcile on the older cached copy would redo a step (and, in
    /// New, pick a second cluster name).
    pub(crate) written: Written<kuberay_api::RayJobStatus>,
}

/// The RayJob controller caches the RayClusters it owns as they are.
impl Trim for RayCluster {}

fn owner_job<K: ResourceExt>(o: &K) -> Option<String> {
    controller_owner(o.meta(), "RayJob")
}

/// Runs the controller until `stop` resolves; in-flight reconciles finish.
pub async fn run(shared: Shared, stop: Stop) {
    let env = &shared.env;
    let ctx = Arc::new(Context {
        client: env.client.clone(),
        cfg: shared.cfg.clone(),
        clusters: Cache::new(owner_job::<RayCluster>),
        jobs: Cache::new(owner_job::<Job>),
        services: Cache::new(owner_job::<Service>),
        events: Events::new(
            env.events_client.clone(),
            "rayjob-controller",
            &shared.cfg.instance,
        ),
        metrics: JobMetrics::register(&env.metrics),
        dashboards: shared.dashboards.clone(),
        poll: Duration::from_secs(3),
        written: Written::default(),
    });
    let ours = watcher::Config::default().labels(&format!("{CREATED_BY_LABEL}={CREATED_BY}"));
    let metrics = ctx.metrics.clone();
    let gone = ctx.clone();
    Runner::<Tolerant<RayJob>>::new("rayjob", env)
        .owns(&ctx.clusters, watcher::Config::default())
        .owns(&ctx.jobs, ours.clone())
        .owns(&ctx.services, ours)
        .with_store(move |store| metrics.watch(store))
        .on_delete(move |j| {
            gone.metrics.deleted(
                &j.name_any(),
                &j.namespace().unwrap_or_default(),
                &j.uid().unwrap_or_default(),
            );
        })
        .run(ctx, reconcile::reconcile, stop)
        .await;
}
