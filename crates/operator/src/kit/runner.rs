//! The one way to run a controller. A controller says what it reconciles
//! (the primary kind), which children it caches (each change wakes the
//! owner) and its reconcile function; the runner does the rest the same way
//! for every controller: the primary watch over the watched namespaces, its
//! store, readiness once every cache has listed, parallel reconciles (one
//! object never concurrently with itself), the reconcile metrics, per-object
//! exponential backoff after failures, and a graceful shutdown.
//!
//! ```text
//! Runner::<Tolerant<RayCluster>>::new("raycluster", &shared.env)
//!     .owns(&ctx.pods, watcher::Config::default().labels("ray.io/node-type"))
//!     .on_delete(move |c| gone.expectations.forget(&key_of(c)))
//!     .run(ctx, reconcile::reconcile, stop)
//!     .await;
//! ```

use std::future::Future;
use std::sync::Arc;

use futures::future::BoxFuture;
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt, TryStreamExt};
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource, ResourceExt};

use super::Object;
use super::backoff::Failures;
use super::cache::{Cache, Trim};
use super::scope::Scope;
use crate::runtime::metrics::Metrics;
use crate::runtime::server::Readiness;

/// A stable, machine-readable name for an error: the Kubernetes Event
/// reason where there is one, and the metric label of failed reconciles.
pub trait Reason {
    fn reason(&self) -> &'static str;
}

/// What the process gives every controller to run with.
#[derive(Clone)]
pub struct Env {
    pub client: Client,
    /// Events go through a client of their own, with its own rate limit:
    /// a burst of events (one per pod of a big scale-up) never delays the
    /// writes that reconcile clusters.
    pub events_client: Client,
    pub scope: Scope,
    /// Objects of one kind reconciled in parallel.
    pub concurrency: u16,
    pub metrics: Arc<Metrics>,
    pub readiness: Readiness,
}

/// Forgets what a controller keeps about a deleted object.
type Forget<K> = Box<dyn Fn(&K) + Send + Sync>;

/// A controller being put together; [`Runner::run`] runs it.
pub struct Runner<K: Resource<DynamicType = ()> + 'static> {
    name: &'static str,
    env: Env,
    primary: watcher::Config,
    triggers: Vec<BoxStream<'static, ObjectRef<K>>>,
    synced: Vec<BoxFuture<'static, ()>>,
    on_delete: Vec<Forget<K>>,
    on_store: Vec<Box<dyn FnOnce(Store<K>) + Send>>,
    reconcile_all: Vec<BoxStream<'static, ()>>,
}

impl<K> Runner<K>
where
    K: Object,
{
    /// A controller named `name` (its metric label and log field) of the
    /// primary kind `K`, watched in every namespace of `env.scope`.
    pub fn new(name: &'static str, env: &Env) -> Self {
        Self {
            name,
            env: env.clone(),
            primary: watcher::Config::default().any_semantic(),
            triggers: Vec::new(),
            synced: Vec::new(),
            on_delete: Vec::new(),
            on_store: Vec::new(),
            reconcile_all: Vec::new(),
        }
    }

    /// Children of kind `C`, watched through `selector` into `cache`: each
    /// change reconciles the owner the cache names, and the controller is
    /// ready only once the cache has listed.
    pub fn owns<C>(mut self, cache: &Cache<C>, selector: watcher::Config) -> Self
    where
        C: Object + Trim,
    {
        self.triggers
            .push(cache.watch(&self.env.client, &self.env.scope, selector));
        let cache = cache.clone();
        self.synced
            .push(async move { cache.wait_ready().await }.boxed());
        self
    }

    /// Called when an object of the primary kind is deleted, to forget
    /// what the controller keeps about it.
    pub fn on_delete(mut self, forget: impl Fn(&K) + Send + Sync + 'static) -> Self {
        self.on_delete.push(Box::new(forget));
        self
    }

    /// Hands the store of the primary kind to `sink` (a metrics collector
    /// reads it at each scrape).
    pub fn with_store(mut self, sink: impl FnOnce(Store<K>) + Send + 'static) -> Self {
        self.on_store.push(Box::new(sink));
        self
    }

    /// Reconciles every object each time `trigger` yields (a clock that
    /// jumps, say).
    pub fn reconcile_all_on(mut self, trigger: BoxStream<'static, ()>) -> Self {
        self.reconcile_all.push(trigger);
        self
    }

    /// Runs the controller until `shutdown` resolves; in-flight reconciles
    /// finish first.
    pub async fn run<Ctx, E, F, Fut>(
        self,
        ctx: Arc<Ctx>,
        reconcile: F,
        shutdown: impl Future<Output = ()> + Send + Sync + 'static,
    ) where
        Ctx: Send + Sync + 'static,
        E: std::error::Error + Reason + Send + Sync + 'static,
        F: Fn(Arc<K>, Arc<Ctx>) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<Action, E>> + Send + 'static,
    {
        let Runner {
            name,
            env,
            primary,
            triggers,
            synced,
            on_delete,
            on_store,
            reconcile_all,
        } = self;
        let (reader, writer) = reflector::store();
        let ready = reader.clone();
        for sink in on_store {
            sink(reader.clone());
        }
        let (objects, listed) = env.scope.watch_listed::<K>(&env.client, primary);
        let objects = objects
            .inspect_ok(move |event| {
                if let watcher::Event::Delete(o) = event {
                    for forget in &on_delete {
                        forget(o);
                    }
                }
            })
            .modify(|o| o.meta_mut().managed_fields = None)
            .reflect(writer)
            .touched_objects();
        let readiness = env.readiness.clone();
        tokio::spawn(async move {
            listed.wait().await;
            futures::future::join_all(synced).await;
            tracing::info!(controller = name, "caches synced");
            readiness.synced();
        });
        let runner = Arc::new(Wrapped {
            name,
            ctx,
            reconcile,
            metrics: env.metrics.clone(),
            failures: Failures::default(),
        });
        let mut controller = Controller::for_stream(objects, reader)
            .with_config(controller::Config::default().concurrency(env.concurrency))
            .reconcile_on(futures::stream::select_all(triggers));
        for trigger in reconcile_all {
            controller = controller.reconcile_all_on(trigger);
        }
        let shutdown = shutdown.shared();
        let running = controller
            .graceful_shutdown_on(shutdown.clone())
            .run(Wrapped::reconcile, Wrapped::error_policy, runner)
            .for_each(|res| async move {
                if let Err(e) = res {
                    tracing::debug!(controller = name, error = %e, "reconcile failed");
                }
            });
        // kube's graceful shutdown ends the watch, then waits for the
        // reconciles it holds back until the primary store has its first
        // list: a stop before that list waits forever (the process then
        // hit its exit deadline with the leader lease still held). No
        // reconcile can have started then, so the controller just ends.
        let before_first_list = async move {
            shutdown.await;
            if ready.wait_until_ready().now_or_never().is_some() {
                futures::future::pending::<()>().await;
            }
        };
        futures::future::select(running.boxed(), before_first_list.boxed()).await;
    }
}

/// The controller's own context and reconcile, with what the runner adds.
struct Wrapped<Ctx, F> {
    name: &'static str,
    ctx: Arc<Ctx>,
    reconcile: F,
    metrics: Arc<Metrics>,
    /// Consecutive failures per object, for exponential backoff.
    failures: Failures,
}

impl<Ctx, F> Wrapped<Ctx, F> {
    async fn reconcile<K, E, Fut>(obj: Arc<K>, me: Arc<Self>) -> Result<Action, E>
    where
        K: Resource,
        E: Reason,
        F: Fn(Arc<K>, Arc<Ctx>) -> Fut,
        Fut: Future<Output = Result<Action, E>>,
    {
        let key = (obj.namespace().unwrap_or_default(), obj.name_any());
        let timer = me.metrics.reconcile_started(me.name);
        let result = (me.reconcile)(obj, me.ctx.clone()).await;
        timer.finish(result.as_ref().err().map(Reason::reason));
        if result.is_ok() {
            me.failures.reset(&key);
        }
        result
    }

    /// Exponential backoff per object: 1s, 2s, 4s, ... up to 5 minutes.
    fn error_policy<K, E>(obj: Arc<K>, err: &E, me: Arc<Self>) -> Action
    where
        K: Resource,
        E: std::error::Error + Reason,
    {
        let key = (obj.namespace().unwrap_or_default(), obj.name_any());
        let delay = me.failures.next_delay(&key);
        tracing::warn!(controller = me.name, namespace = %key.0, name = %key.1, error = %err, reason = err.reason(), retry_in = ?delay, "reconcile failed");
        Action::requeue(delay)
    }
}
