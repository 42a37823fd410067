//! The RayCronJob controller (alpha, behind the `RayCronJob` feature gate
//! as in KubeRay): at each tick of `schedule`, in `timeZone`, it creates a
//! RayJob from `jobTemplate` and records the tick in
//! `status.lastScheduleTime`. The RayJobs are the RayJob controller's to
//! run, and the garbage collector's to delete with their RayCronJob.

mod reconcile;
pub mod schedule;

use std::sync::Arc;

use futures::FutureExt;
use kube::Client;
use kuberay_api::RayCronJob;
use kuberay_api::features::RAY_CRON_JOB;
use kuberay_api::tolerant::Tolerant;

use super::{Registration, Shared};
use crate::kit::clock::Clock;
use crate::kit::events::Events;
use crate::kit::runner::Runner;
use crate::runtime::config::Config;
use crate::runtime::manager::Stop;

pub use reconcile::{Error, ray_job};

pub const REGISTRATION: Registration = Registration {
    name: "raycronjob",
    enabled: |cfg| cfg.gates.enabled(RAY_CRON_JOB),
    run: |shared, stop| run(shared, stop).boxed(),
};

/// Shared state of the RayCronJob controller.
pub struct Context {
    pub client: Client,
    pub cfg: Config,
    pub events: Events,
    pub clock: Arc<dyn Clock>,
}

/// Runs the controller until `stop` resolves; in-flight reconciles finish.
pub async fn run(shared: Shared, stop: Stop) {
    let env = &shared.env;
    let ctx = Arc::new(Context {
        client: env.client.clone(),
        cfg: shared.cfg.clone(),
        events: Events::new(
            env.events_client.clone(),
            "raycronjob-controller",
            &shared.cfg.instance,
        ),
        clock: shared.clock.clone(),
    });
    Runner::<Tolerant<RayCronJob>>::new("raycronjob", env)
        .reconcile_all_on(shared.clock.jumps())
        .run(ctx, reconcile::reconcile, stop)
        .await;
}
