//! One reconcile of one RayCronJob: read tolerantly, validate, stop while
//! suspended, find the tick that is due, create its RayJob, record the tick
//! in the status, and sleep until the next one.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, Time};
use kube::ResourceExt;
use kube::api::{Api, PostParams};
use kube::runtime::controller::Action;
use kuberay_api::names::{CRONJOB_NAME_LABEL, CRONJOB_SCHEDULED_TIMESTAMP_ANNOTATION};
use kuberay_api::tolerant::Tolerant;
use kuberay_api::validation::validate_raycronjob;
use kuberay_api::{RayCronJob, RayCronJobStatus, RayJob};

use super::Context;
use super::schedule::Schedule;
use crate::controllers::readable;
use crate::kit::applier::{apply_status, owner_reference};
use crate::kit::runner::Reason;

/// KubeRay's event reasons and actions.
const INVALID: &str = "InvalidRayCronJobSpec";
const SUSPENDED: &str = "SuspendedRayCronJob";

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("schedule: {0}")]
    Schedule(String),
    #[error("creating RayJob {name}: {source}")]
    CreateRayJob { name: String, source: kube::Error },
    #[error("updating the status: {0}")]
    Status(kube::Error),
}

impl Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::Schedule(_) => INVALID,
            Error::CreateRayJob { .. } => "FailedToCreateRayJob",
            Error::Status(_) => "FailedToUpdateStatus",
        }
    }
}

pub async fn reconcile(obj: Arc<Tolerant<RayCronJob>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let note = |e: &str| format!("{ns}/{name}: cannot be read: {e}");
    let Some(cron) = readable(&obj, &ctx.events, INVALID, note).await else {
        return Ok(Action::await_change());
    };
    if let Err(invalid) = validate_raycronjob(cron, &ctx.cfg.gates) {
        let note = format!("{ns}/{name}: {invalid}");
        ctx.events.warning(cron, INVALID, "Validate", note).await;
        return Ok(Action::await_change());
    }
    if cron.spec.suspend == Some(true) {
        let note = "RayCronJob suspended, no new RayJobs will be created".to_string();
        ctx.events.normal(cron, SUSPENDED, "Suspend", note).await;
        return Ok(Action::await_change());
    }
    let schedule = Schedule::new(
        &cron.spec.schedule,
        cron.spec.time_zone.as_deref(),
        &ctx.cfg.local_time_zone,
    )
    .map_err(Error::Schedule)?;
    let now = ctx.clock.now();
    let since = cron
        .status
        .as_ref()
        .and_then(|s| s.last_schedule_time.as_ref())
        .or(cron.metadata.creation_timestamp.as_ref())
        .map_or(now, |t| t.0);
    let due = schedule.due(since, now);
    if let Some(tick) = due.run {
        if due.skipped > 0 {
            tracing::info!(%ns, %name, skipped = due.skipped, %tick, "missed ticks skipped; running the latest only");
        }
        create_ray_job(cron, tick, &ctx).await?;
        write_status(cron, tick, &ctx).await?;
    }
    Ok(match due.next {
        Some(next) => Action::requeue(
            Duration::try_from(next.duration_since(now)).unwrap_or_default()
                + Duration::from_millis(100),
        ),
        None => Action::await_change(),
    })
}

/// The RayJob of one tick: KubeRay's name (`<cronjob>-<minutes since the
/// epoch>`, so a second attempt for the same tick finds it), label,
/// annotation and controller reference, and the template's spec.
pub fn ray_job(cron: &RayCronJob, tick: Timestamp) -> RayJob {
    let name = cron.name_any();
    RayJob {
        metadata: ObjectMeta {
            name: Some(format!("{name}-{}", tick.as_second().div_euclid(60))),
            namespace: cron.namespace(),
            labels: Some([(CRONJOB_NAME_LABEL.to_string(), name)].into()),
            annotations: Some(
                [(
                    CRONJOB_SCHEDULED_TIMESTAMP_ANNOTATION.to_string(),
                    tick.strftime("%Y-%m-%dT%H:%M:%SZ").to_string(),
                )]
                .into(),
            ),
            owner_references: Some(vec![owner_reference(cron)]),
            ..Default::default()
        },
        spec: cron.spec.job_template.clone(),
        status: None,
    }
}

async fn create_ray_job(cron: &RayCronJob, tick: Timestamp, ctx: &Context) -> Result<(), Error> {
    let job = ray_job(cron, tick);
    let name = job.name_any();
    let api: Api<RayJob> =
        Api::namespaced(ctx.client.clone(), &job.namespace().unwrap_or_default());
    match api.create(&PostParams::default(), &job).await {
        Ok(_) => {
            tracing::info!(namespace = ?job.namespace(), rayjob = %name, %tick, "created RayJob");
            Ok(())
        }
        // Made by an earlier attempt at this tick whose status write was lost.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
        Err(source) => {
            let err = Error::CreateRayJob { name, source };
            ctx.events
                .warning(cron, err.reason(), "Create", err.to_string())
                .await;
            Err(err)
        }
    }
}

async fn write_status(cron: &RayCronJob, tick: Timestamp, ctx: &Context) -> Result<(), Error> {
    let status = RayCronJobStatus {
        last_schedule_time: Some(Time(tick)),
    };
    if cron.status.as_ref() == Some(&status) {
        return Ok(());
    }
    apply_status(&ctx.client, cron, &status)
        .await
        .map_err(Error::Status)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rayjob_of_a_tick_has_kuberays_name_label_annotation_and_owner() {
        let cron: RayCronJob = serde_yaml::from_str(
            r#"
apiVersion: ray.io/v1
kind: RayCronJob
metadata: {name: nightly, namespace: ns, uid: u-1}
spec:
  schedule: "0 3 * * *"
  jobTemplate: {entrypoint: "python run.py", shutdownAfterJobFinishes: true}
"#,
        )
        .unwrap();
        let tick: Timestamp = "2026-05-01T03:00:00Z".parse().unwrap();
        let job = ray_job(&cron, tick);
        assert_eq!(job.name_any(), format!("nightly-{}", 1_777_604_400 / 60));
        assert_eq!(job.namespace().as_deref(), Some("ns"));
        assert_eq!(job.labels()["ray.io/cronjob-name"], "nightly");
        assert_eq!(
            job.annotations()["ray.io/cronjob-scheduled-timestamp"],
            "2026-05-01T03:00:00Z"
        );
        let owner = &job.owner_references()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.name.as_str(), owner.uid.as_str()),
            ("RayCronJob", "nightly", "u-1")
        );
        assert_eq!(owner.controller, Some(true));
        assert_eq!(job.spec, cron.spec.job_template);
    }
}
