//! RayCronJob validation: the schedule, the time zone and the job template.

use std::collections::BTreeMap;

use super::raycluster::object_name;
use super::rayjob::{MAX_RAYJOB_NAME_LENGTH, job_spec};
use super::{Errors, Invalid};
use crate::features::FeatureGates;
use crate::raycronjob::RayCronJob;

/// The longest RayCronJob name: each RayJob it creates is named
/// `<cronjob>-<minutes since the epoch>`, up to 11 more characters.
pub const MAX_RAYCRONJOB_NAME_LENGTH: usize = MAX_RAYJOB_NAME_LENGTH - 11;

/// Parses a standard five-field cron expression (or a macro such as
/// `@hourly`), as Kubernetes CronJobs accept.
pub fn parse_schedule(schedule: &str) -> Result<croner::Cron, String> {
    use croner::parser::{CronParser, Seconds, Year};
    CronParser::builder()
        .seconds(Seconds::Disallowed)
        .year(Year::Disallowed)
        .build()
        .parse(schedule)
        .map_err(|e| e.to_string())
}

/// Validates a RayCronJob's name, schedule, time zone and job template.
pub fn validate_raycronjob(cj: &RayCronJob, gates: &FeatureGates) -> Result<(), Invalid> {
    let mut errs = Errors::default();
    let name = cj.metadata.name.as_deref().unwrap_or_default();
    object_name(&mut errs, "RayCronJob", name, MAX_RAYCRONJOB_NAME_LENGTH);
    let schedule = &cj.spec.schedule;
    if schedule.contains("TZ") {
        errs.add(
            "spec.schedule",
            "must not set TZ or CRON_TZ; use spec.timeZone",
        );
    } else if let Err(e) = parse_schedule(schedule) {
        errs.add(
            "spec.schedule",
            format!("{schedule:?} is not a cron schedule: {e}"),
        );
    }
    if let Some(tz) = &cj.spec.time_zone {
        if tz.is_empty() {
            errs.add(
                "spec.timeZone",
                "must not be empty; omit it to use the operator's time zone",
            );
        } else if let Err(e) = jiff::tz::TimeZone::get(tz) {
            errs.add(
                "spec.timeZone",
                format!("{tz:?} is not a known time zone: {e}"),
            );
        }
    }
    job_spec(
        &mut errs,
        &cj.spec.job_template,
        "spec.jobTemplate",
        &BTreeMap::new(),
        gates,
    );
    errs.into_result()
}
