//! The RayJob controller: create (or borrow) a RayCluster, submit the
//! entrypoint in the chosen mode, follow the Ray job through the dashboard,
//! enforce deadlines and retries, then clean up as the deletion rules say.

pub mod cluster;
pub mod deletion;
mod reconcile;
mod states;
pub mod submitter;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube::{Client, ResourceExt};
use kuberay_api::names::{CREATED_BY, CREATED_BY_LABEL};
use kuberay_api::tolerant::Tolerant;
use kuberay_api::{RayCluster, RayJob};

use crate::kit::backoff::Failures;
use crate::kit::cache::{Cache, controller_owner};
use crate::kit::events::Events;
use crate::ray::dashboard::DashboardClient;
use crate::runtime::config::Config;
use crate::runtime::manager::Shared;
use crate::runtime::metrics::Metrics;

pub use reconcile::Error;

/// The finalizer that stops a still-running Ray job when its RayJob is deleted.
pub const FINALIZER: &str = "ray.io/rayjob-finalizer";

/// How the operator reaches a cluster's dashboard. Production goes to the
/// head service's DNS name; tests point it at a local double.
pub trait Dashboards: Send + Sync {
    /// A client for `cluster`, whose dashboard URL (host:port) is `url`.
    fn client(&self, cluster: &RayCluster, url: &str) -> DashboardClient;
}

/// Straight to the head service.
pub struct DirectDashboards;

impl Dashboards for DirectDashboards {
    fn client(&self, _: &RayCluster, url: &str) -> DashboardClient {
        DashboardClient::new(&format!("http://{url}"))
    }
}

/// Shared state of the RayJob controller.
pub struct Context {
    pub client: Client,
    pub cfg: Config,
    pub clusters: Cache<RayCluster>,
    pub jobs: Cache<Job>,
    pub services: Cache<Service>,
    pub events: Events,
    pub metrics: Arc<Metrics>,
    pub dashboards: Arc<dyn Dashboards>,
    /// How often a running job's status is polled.
    pub poll: Duration,
    failures: Failures,
    /// The status each RayJob was last written with, until the cache shows
    /// it: a reconcile on the older cached copy would redo a step (and, in
    /// New, pick a second cluster name).
    written: Mutex<HashMap<(String, String), (kuberay_api::RayJobStatus, std::time::Instant)>>,
}

fn owner_job<K: ResourceExt>(o: &K) -> Option<String> {
    controller_owner(o.meta(), "RayJob")
}

/// Runs the controller until `shutdown` resolves.
pub async fn run(
    shared: Shared,
    dashboards: Arc<dyn Dashboards>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    let client = shared.client.clone();
    let scope = shared.scope.clone();
    let ctx = Arc::new(Context {
        client: client.clone(),
        cfg: shared.cfg.clone(),
        clusters: Cache::new(owner_job::<RayCluster>),
        jobs: Cache::new(owner_job::<Job>),
        services: Cache::new(owner_job::<Service>),
        events: Events::new(client.clone(), "rayjob-controller"),
        metrics: shared.metrics.clone(),
        dashboards,
        poll: Duration::from_secs(3),
        failures: Failures::default(),
        written: Mutex::default(),
    });
    let ours = watcher::Config::default().labels(&format!("{CREATED_BY_LABEL}={CREATED_BY}"));
    let triggers = futures::stream::select_all([
        ctx.clusters
            .watch(&client, &scope, watcher::Config::default()),
        ctx.jobs.watch(&client, &scope, ours.clone()),
        ctx.services.watch(&client, &scope, ours),
    ]);
    let (reader, writer) = reflector::store();
    shared.metrics.watch_jobs(reader.clone());
    let gone = ctx.clone();
    let (rayjobs, listed) =
        scope.watch_listed::<Tolerant<RayJob>>(&client, watcher::Config::default().any_semantic());
    let rayjobs = rayjobs
        .inspect_ok(move |event| {
            if let watcher::Event::Delete(j) = event {
                gone.metrics.job_deleted(
                    &j.name_any(),
                    &j.namespace().unwrap_or_default(),
                    &j.uid().unwrap_or_default(),
                );
            }
        })
        .modify(|j| j.metadata.managed_fields = None)
        .reflect(writer)
        .touched_objects();
    let synced = ctx.clone();
    let readiness = shared.readiness.clone();
    tokio::spawn(async move {
        listed.wait().await;
        synced.clusters.wait_ready().await;
        synced.jobs.wait_ready().await;
        tracing::info!("rayjob controller caches synced");
        readiness.synced();
    });
    Controller::for_stream(rayjobs, reader)
        .with_config(controller::Config::default().concurrency(shared.concurrency))
        .reconcile_on(triggers)
        .graceful_shutdown_on(shutdown)
        .run(
            |obj, ctx: Arc<Context>| async move {
                let timer = ctx.metrics.reconcile_started("rayjob");
                let result = reconcile::reconcile(obj, ctx.clone()).await;
                timer.finish(result.as_ref().err().map(Error::reason));
                result
            },
            error_policy,
            ctx,
        )
        .for_each(|res| async move {
            if let Err(e) = res {
                tracing::debug!(error = %e, "rayjob reconcile failed");
            }
        })
        .await;
}

/// Exponential backoff per RayJob: 1s, 2s, 4s, ... up to 5 minutes.
fn error_policy(obj: Arc<Tolerant<RayJob>>, err: &Error, ctx: Arc<Context>) -> Action {
    let key = (obj.namespace().unwrap_or_default(), obj.name_any());
    let delay = ctx.failures.next_delay(&key);
    tracing::warn!(namespace = %key.0, name = %key.1, error = %err, reason = err.reason(), retry_in = ?delay, "rayjob reconcile failed");
    Action::requeue(delay)
}

impl Context {
    /// Whether the cached status is older than what this operator wrote.
    fn stale(&self, key: &(String, String), cached: &kuberay_api::RayJobStatus) -> bool {
        let mut written = self.written.lock().unwrap();
        match written.get(key) {
            Some((status, at)) if status != cached && at.elapsed() < Duration::from_secs(10) => {
                true
            }
            Some(_) => {
                written.remove(key);
                false
            }
            None => false,
        }
    }

    fn wrote(&self, key: (String, String), status: kuberay_api::RayJobStatus) {
        self.written
            .lock()
            .unwrap()
            .insert(key, (status, std::time::Instant::now()));
    }
}
