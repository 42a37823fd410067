//! `RayService`: Ray Serve applications on a RayCluster, with zero-downtime
//! upgrades (a new cluster, then traffic moves over) and status per
//! application and deployment.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::embedded::EmbeddedService;
use crate::enums::string_enum;
use crate::raycluster::{RayClusterSpec, RayClusterStatus};
use crate::schema::managed_by_rules;

/// Desired state of a Ray Serve deployment.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ray.io",
    version = "v1",
    kind = "RayService",
    namespaced,
    status = "RayServiceStatuses",
    category = "all",
    printcolumn = r#"{"name":"service status","type":"string","jsonPath":".status.serviceStatus"}"#,
    printcolumn = r#"{"name":"num serve endpoints","type":"string","jsonPath":".status.numServeEndpoints"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RayServiceSpec {
    /// Deprecated: seconds a deployment may be unhealthy before a new cluster
    /// is prepared.
    pub deployment_unhealthy_second_threshold: Option<i32>,
    /// Route Serve traffic to worker pods only.
    pub exclude_head_pod_from_serve_svc: Option<bool>,
    #[schemars(extend("x-kubernetes-validations" = managed_by_rules()))]
    pub managed_by: Option<String>,
    /// The cluster the Serve applications run on.
    pub ray_cluster_config: RayClusterSpec,
    /// Seconds to keep an old cluster after traffic left it.
    #[schemars(extend("minimum" = 0))]
    pub ray_cluster_deletion_delay_seconds: Option<i32>,
    /// Serve config (YAML) sent to the dashboard's Serve API.
    pub serve_config_v2: Option<String>,
    /// A Service merged into the generated serve service.
    pub serve_service: Option<EmbeddedService>,
    /// Deprecated: seconds the dashboard may be unreachable before a new
    /// cluster is prepared.
    pub service_unhealthy_second_threshold: Option<i32>,
    pub suspend: Option<bool>,
    pub upgrade_strategy: Option<RayServiceUpgradeStrategy>,
}

string_enum! {
    /// How a RayService moves to a changed cluster spec.
    pub enum RayServiceUpgradeType (open) {
        /// Build a new cluster, then switch all traffic at once.
        NewCluster = "NewCluster",
        /// Build a new cluster and shift traffic gradually (Gateway API).
        NewClusterWithIncrementalUpgrade = "NewClusterWithIncrementalUpgrade",
        /// Never replace the cluster.
        None = "None",
    }
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayServiceUpgradeStrategy {
    pub cluster_upgrade_options: Option<ClusterUpgradeOptions>,
    #[serde(rename = "type")]
    pub type_: Option<RayServiceUpgradeType>,
}

/// Traffic shifting of an incremental upgrade.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ClusterUpgradeOptions {
    pub gateway_class_name: String,
    /// Seconds between traffic steps.
    pub interval_seconds: i32,
    /// Capacity the new cluster may add at once, in percent.
    #[schemars(extend("default" = 100))]
    pub max_surge_percent: Option<i32>,
    /// Traffic moved per step, in percent.
    pub step_size_percent: i32,
}

string_enum! {
    /// Deprecated summary of a RayService (see its conditions).
    pub enum ServiceStatus (open) { Running = "Running", New = "" }
}

/// Observed state of a RayService.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayServiceStatuses {
    /// The cluster serving traffic now.
    pub active_service_status: Option<RayServiceStatus>,
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
    pub last_update_time: Option<Time>,
    pub num_serve_endpoints: Option<i32>,
    pub observed_generation: Option<i64>,
    /// The cluster being prepared to take over.
    pub pending_service_status: Option<RayServiceStatus>,
    pub service_status: Option<ServiceStatus>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayServiceStatus {
    /// Serve applications by name.
    pub application_statuses: Option<BTreeMap<String, AppStatus>>,
    pub last_traffic_migrated_time: Option<Time>,
    pub ray_cluster_name: Option<String>,
    pub ray_cluster_status: Option<RayClusterStatus>,
    pub target_capacity: Option<i32>,
    pub traffic_routed_percent: Option<i32>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AppStatus {
    pub message: Option<String>,
    /// Serve deployments of the application by name.
    pub serve_deployment_statuses: Option<BTreeMap<String, ServeDeploymentStatus>>,
    pub status: Option<String>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct ServeDeploymentStatus {
    pub message: Option<String>,
    pub status: Option<String>,
}
