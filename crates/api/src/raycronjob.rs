//! `RayCronJob`: create a RayJob from a template on a cron schedule.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::rayjob::RayJobSpec;

/// Desired state of a scheduled Ray job.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ray.io",
    version = "v1",
    kind = "RayCronJob",
    namespaced,
    status = "RayCronJobStatus",
    category = "all",
    printcolumn = r#"{"name":"schedule","type":"string","jsonPath":".spec.schedule"}"#,
    printcolumn = r#"{"name":"timezone","type":"string","jsonPath":".spec.timeZone"}"#,
    printcolumn = r#"{"name":"last schedule","type":"date","jsonPath":".status.lastScheduleTime"}"#,
    printcolumn = r#"{"name":"age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"suspend","type":"boolean","jsonPath":".spec.suspend"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RayCronJobSpec {
    /// The RayJob to create at each scheduled time.
    pub job_template: RayJobSpec,
    /// Cron expression (five fields, or a macro such as `@hourly`).
    pub schedule: String,
    /// Skip scheduled runs while true.
    pub suspend: Option<bool>,
    /// IANA time zone of the schedule; the operator's local time when unset.
    #[schemars(extend("minLength" = 1))]
    pub time_zone: Option<String>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayCronJobStatus {
    pub last_schedule_time: Option<Time>,
}
