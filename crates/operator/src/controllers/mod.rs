//! The controllers, one folder per kind, and [`ALL`], the one list the
//! operator starts them from.

pub mod raycluster;
pub mod raycronjob;
pub mod rayjob;
pub mod rayservice;

use std::sync::Arc;

use futures::FutureExt;
use futures::future::BoxFuture;

use kube::Resource;
use kuberay_api::tolerant::Tolerant;

use crate::kit::clock::{Clock, SystemClock};
use crate::kit::events::Events;
use crate::kit::runner::Env;
use crate::ray::dashboard::{Dashboards, DirectDashboards};
use crate::runtime::config::Config;
use crate::runtime::manager::Stop;

/// What every controller is given: the process's environment, the
/// settings, and how to reach what lies outside Kubernetes (dashboards,
/// the time), which tests replace.
#[derive(Clone)]
pub struct Shared {
    pub env: Env,
    pub cfg: Config,
    pub dashboards: Arc<dyn Dashboards>,
    pub clock: Arc<dyn Clock>,
}

impl Shared {
    /// Production: dashboards reached directly, the system clock.
    pub fn new(env: Env, cfg: Config) -> Self {
        Self {
            env,
            cfg,
            dashboards: Arc::new(DirectDashboards),
            clock: Arc::new(SystemClock),
        }
    }
}

/// The object a watch delivered, or `None` once a Warning event `reason`
/// (with the note `note` makes of the problem) has said it cannot be read.
pub(crate) async fn readable<'a, K>(
    obj: &'a Tolerant<K>,
    events: &Events,
    reason: &str,
    note: impl FnOnce(&str) -> String,
) -> Option<&'a K>
where
    K: Resource<DynamicType = ()>,
{
    match &obj.parsed {
        Ok(parsed) => Some(parsed),
        Err(e) => {
            events.warning(obj, reason, "Validate", note(e)).await;
            None
        }
    }
}

/// A controller as the operator starts it.
pub struct Registration {
    pub name: &'static str,
    /// Whether the settings turn it on (a feature gate, say).
    pub enabled: fn(&Config) -> bool,
    /// Runs it until the stop signal; in-flight reconciles finish.
    pub run: fn(Shared, Stop) -> BoxFuture<'static, ()>,
}

/// Every controller of the operator. A new controller is its own folder
/// plus one line here.
pub const ALL: &[Registration] = &[
    raycluster::REGISTRATION,
    rayjob::REGISTRATION,
    raycronjob::REGISTRATION,
    rayservice::REGISTRATION,
];

/// Runs every enabled controller until `stop` resolves.
pub async fn run(shared: Shared, stop: Stop) {
    let enabled: Vec<&Registration> = ALL.iter().filter(|c| (c.enabled)(&shared.cfg)).collect();
    tracing::info!(controllers = ?enabled.iter().map(|c| c.name).collect::<Vec<_>>(), "starting controllers");
    shared.env.readiness.expect(enabled.len());
    futures::future::join_all(enabled.iter().map(|c| {
        (c.run)(shared.clone(), stop.clone())
            .inspect(|_| tracing::info!(controller = c.name, "controller stopped"))
    }))
    .await;
}

/// [`run`] as the process's manager takes it.
pub fn start(env: Env, cfg: Config, stop: Stop) -> BoxFuture<'static, ()> {
    run(Shared::new(env, cfg), stop).boxed()
}
