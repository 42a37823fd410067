//! `RayJob`: run one Ray job (an entrypoint) on a cluster it creates or
//! selects, report the outcome, then clean up as its deletion rules say.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::PodTemplateSpec;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::enums::string_enum;
use crate::raycluster::{RayClusterSpec, RayClusterStatus};
use crate::schema::managed_by_rules;

/// Desired state of a Ray job.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ray.io",
    version = "v1",
    kind = "RayJob",
    namespaced,
    status = "RayJobStatus",
    category = "all",
    printcolumn = r#"{"name":"job status","type":"string","jsonPath":".status.jobStatus"}"#,
    printcolumn = r#"{"name":"deployment status","type":"string","jsonPath":".status.jobDeploymentStatus"}"#,
    printcolumn = r#"{"name":"ray cluster name","type":"string","jsonPath":".status.rayClusterName"}"#,
    printcolumn = r#"{"name":"start time","type":"string","jsonPath":".status.startTime"}"#,
    printcolumn = r#"{"name":"end time","type":"string","jsonPath":".status.endTime"}"#,
    printcolumn = r#"{"name":"age","type":"date","jsonPath":".metadata.creationTimestamp"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RayJobSpec {
    /// Seconds the job may run (from its start) before it is failed with
    /// `DeadlineExceeded`.
    pub active_deadline_seconds: Option<i32>,
    /// Retries of the whole job (each on a new cluster) after a failure.
    #[schemars(extend("default" = 0))]
    pub backoff_limit: Option<i32>,
    /// Run on an existing RayCluster whose labels match, instead of
    /// creating one from `rayClusterSpec`.
    pub cluster_selector: Option<BTreeMap<String, String>>,
    /// What to delete once the job finishes.
    pub deletion_strategy: Option<DeletionStrategy>,
    /// The command the Ray job runs, e.g. `python my_script.py`.
    pub entrypoint: Option<String>,
    pub entrypoint_num_cpus: Option<f32>,
    pub entrypoint_num_gpus: Option<f32>,
    /// Custom resources of the entrypoint, as a JSON object string.
    pub entrypoint_resources: Option<String>,
    /// The Ray job submission ID; generated when unset.
    pub job_id: Option<String>,
    #[schemars(extend("x-kubernetes-validations" = managed_by_rules()))]
    pub managed_by: Option<String>,
    /// Metadata attached to the Ray job.
    pub metadata: Option<BTreeMap<String, String>>,
    /// Seconds the job may take to reach Running before it is failed.
    #[schemars(extend("minimum" = 1))]
    pub pre_running_deadline_seconds: Option<i32>,
    /// The cluster to create for this job.
    pub ray_cluster_spec: Option<RayClusterSpec>,
    /// Ray runtime environment, as YAML.
    #[serde(rename = "runtimeEnvYAML")]
    pub runtime_env_yaml: Option<String>,
    /// Delete the cluster when the job finishes (after
    /// `ttlSecondsAfterFinished`).
    pub shutdown_after_job_finishes: Option<bool>,
    #[schemars(extend("default" = "K8sJobMode"))]
    pub submission_mode: Option<JobSubmissionMode>,
    pub submitter_config: Option<SubmitterConfig>,
    /// Pod template of the submitter (K8sJobMode) or sidecar (SidecarMode).
    pub submitter_pod_template: Option<PodTemplateSpec>,
    /// Suspend (or, while new, hold) the job: its cluster and submitter are
    /// deleted. Used by Kueue.
    pub suspend: Option<bool>,
    #[schemars(extend("default" = 0))]
    pub ttl_seconds_after_finished: Option<i32>,
}

string_enum! {
    /// How the job's entrypoint reaches Ray.
    pub enum JobSubmissionMode (open) {
        /// A Kubernetes Job runs `ray job submit`.
        K8sJobMode = "K8sJobMode",
        /// The operator submits through the dashboard's REST API.
        HttpMode = "HTTPMode",
        /// The user submits; the operator waits for `status.jobId`.
        InteractiveMode = "InteractiveMode",
        /// A container in the head pod runs `ray job submit`.
        SidecarMode = "SidecarMode",
    }
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SubmitterConfig {
    /// Retries of the submitter Job's pod.
    pub backoff_limit: Option<i32>,
}

string_enum! {
    /// What a deletion rule deletes.
    pub enum DeletionPolicyType (closed) {
        DeleteCluster = "DeleteCluster",
        DeleteWorkers = "DeleteWorkers",
        DeleteSelf = "DeleteSelf",
        DeleteNone = "DeleteNone",
    }
}

/// Either both legacy policies (`onSuccess` and `onFailure`) or
/// `deletionRules`, never a mix.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!((has(self.onSuccess) || has(self.onFailure)) && has(self.deletionRules))",
        "message": "legacy policies (onSuccess/onFailure) and deletionRules cannot be used together within the same deletionStrategy"
    },
    {
        "rule": "((has(self.onSuccess) && has(self.onFailure)) || has(self.deletionRules))",
        "message": "deletionStrategy requires either BOTH onSuccess and onFailure, OR the deletionRules field (cannot be empty)"
    }
]))]
pub struct DeletionStrategy {
    #[schemars(extend("x-kubernetes-list-type" = "atomic"))]
    pub deletion_rules: Option<Vec<DeletionRule>>,
    pub on_failure: Option<DeletionPolicy>,
    pub on_success: Option<DeletionPolicy>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletionPolicy {
    pub policy: Option<DeletionPolicyType>,
}

/// Apply `policy` once `condition` holds for `condition.ttlSeconds`.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeletionRule {
    pub condition: DeletionCondition,
    pub policy: DeletionPolicyType,
}

/// Exactly one of `jobStatus` and `jobDeploymentStatus`.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[schemars(extend("x-kubernetes-validations" = [
    {
        "rule": "!(has(self.jobStatus) && has(self.jobDeploymentStatus))",
        "message": "JobStatus and JobDeploymentStatus cannot be used together within the same deletion condition."
    },
    {
        "rule": "has(self.jobStatus) || has(self.jobDeploymentStatus)",
        "message": "the deletion condition requires either the JobStatus or the JobDeploymentStatus field."
    }
]))]
pub struct DeletionCondition {
    #[schemars(extend("enum" = ["Failed"]))]
    pub job_deployment_status: Option<JobDeploymentStatus>,
    #[schemars(extend("enum" = ["SUCCEEDED", "FAILED"]))]
    pub job_status: Option<JobStatus>,
    #[schemars(extend("default" = 0, "minimum" = 0))]
    pub ttl_seconds: Option<i32>,
}

string_enum! {
    /// The Ray job's own status, as the dashboard reports it. Empty while
    /// nothing was submitted yet.
    pub enum JobStatus (open) {
        New = "",
        Pending = "PENDING",
        Running = "RUNNING",
        Stopped = "STOPPED",
        Succeeded = "SUCCEEDED",
        Failed = "FAILED",
    }
}

impl JobStatus {
    /// Whether Ray will not change this status any more.
    pub fn is_terminal(&self) -> bool {
        matches!(self, Self::Stopped | Self::Succeeded | Self::Failed)
    }
}

string_enum! {
    /// Where the operator is in running the job. Empty for a new RayJob.
    pub enum JobDeploymentStatus (open) {
        New = "",
        Initializing = "Initializing",
        Running = "Running",
        Complete = "Complete",
        Failed = "Failed",
        ValidationFailed = "ValidationFailed",
        Suspending = "Suspending",
        Suspended = "Suspended",
        Retrying = "Retrying",
        Waiting = "Waiting",
    }
}

/// Observed state of a Ray job.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayJobStatus {
    #[serde(rename = "dashboardURL")]
    pub dashboard_url: Option<String>,
    pub end_time: Option<Time>,
    /// Failed attempts so far.
    #[schemars(extend("default" = 0))]
    pub failed: Option<i32>,
    pub job_deployment_status: Option<JobDeploymentStatus>,
    pub job_id: Option<String>,
    pub job_status: Option<JobStatus>,
    /// Since when the dashboard could not be asked about the job.
    pub job_status_check_failure_start_time: Option<Time>,
    pub message: Option<String>,
    pub observed_generation: Option<i64>,
    pub ray_cluster_name: Option<String>,
    pub ray_cluster_status: Option<RayClusterStatus>,
    /// Start and end as Ray reports them.
    pub ray_job_info: Option<RayJobInfo>,
    pub reason: Option<String>,
    pub start_time: Option<Time>,
    /// Succeeded attempts so far.
    #[schemars(extend("default" = 0))]
    pub succeeded: Option<i32>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayJobInfo {
    pub end_time: Option<Time>,
    pub start_time: Option<Time>,
}
