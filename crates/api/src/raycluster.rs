//! `RayCluster`: a Ray head and any number of worker groups, plus the
//! options that shape them (autoscaling, GCS fault tolerance, auth, TLS,
//! network policy). RayJob and RayService embed [`RayClusterSpec`].

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    EnvFromSource, EnvVar, EnvVarSource, PodTemplateSpec, ResourceRequirements, SecurityContext,
    VolumeMount,
};
use k8s_openapi::api::networking::v1::{
    IngressTLS, NetworkPolicyEgressRule, NetworkPolicyIngressRule,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::embedded::EmbeddedService;
use crate::enums::string_enum;
use crate::schema::managed_by_rules;

/// Desired state of a Ray cluster.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[kube(
    group = "ray.io",
    version = "v1",
    kind = "RayCluster",
    namespaced,
    status = "RayClusterStatus",
    category = "all",
    printcolumn = r#"{"name":"desired workers","type":"integer","jsonPath":".status.desiredWorkerReplicas"}"#,
    printcolumn = r#"{"name":"available workers","type":"integer","jsonPath":".status.availableWorkerReplicas"}"#,
    printcolumn = r#"{"name":"cpus","type":"string","jsonPath":".status.desiredCPU"}"#,
    printcolumn = r#"{"name":"memory","type":"string","jsonPath":".status.desiredMemory"}"#,
    printcolumn = r#"{"name":"gpus","type":"string","jsonPath":".status.desiredGPU"}"#,
    printcolumn = r#"{"name":"tpus","type":"string","priority":1,"jsonPath":".status.desiredTPU"}"#,
    printcolumn = r#"{"name":"status","type":"string","jsonPath":".status.state"}"#,
    printcolumn = r#"{"name":"age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    printcolumn = r#"{"name":"head pod IP","type":"string","priority":1,"jsonPath":".status.head.podIP"}"#,
    printcolumn = r#"{"name":"head service IP","type":"string","priority":1,"jsonPath":".status.head.serviceIP"}"#
)]
#[serde(rename_all = "camelCase")]
pub struct RayClusterSpec {
    /// Authentication of Ray's dashboard and client endpoints.
    pub auth_options: Option<AuthOptions>,
    /// The Ray autoscaler sidecar, when `enableInTreeAutoscaling` is true.
    pub autoscaler_options: Option<AutoscalerOptions>,
    /// Run the Ray autoscaler as a sidecar of the head pod.
    pub enable_in_tree_autoscaling: Option<bool>,
    /// Keep the GCS state outside the head pod (Redis or an embedded store),
    /// so the cluster survives a head restart.
    pub gcs_fault_tolerance_options: Option<GcsFaultToleranceOptions>,
    /// The head node.
    pub head_group_spec: HeadGroupSpec,
    /// Annotations for the head service.
    pub head_service_annotations: Option<BTreeMap<String, String>>,
    /// The Ray history server's event collector.
    pub history_server_options: Option<HistoryServerOptions>,
    /// Which controller reconciles this cluster: `ray.io/kuberay-operator`
    /// (default) or `kueue.x-k8s.io/multikueue`.
    #[schemars(extend("x-kubernetes-validations" = managed_by_rules()))]
    pub managed_by: Option<String>,
    /// NetworkPolicies isolating the cluster's pods.
    pub network_policy: Option<NetworkPolicyOptions>,
    /// The Ray version the images run; informs version-dependent behaviour.
    pub ray_version: Option<String>,
    /// Delete all pods while keeping the cluster object.
    pub suspend: Option<bool>,
    /// TLS between Ray processes.
    pub tls_options: Option<TlsOptions>,
    /// What to do with running pods when the pod templates change.
    pub upgrade_strategy: Option<RayClusterUpgradeStrategy>,
    /// Worker groups, each a set of identical worker pods.
    pub worker_group_specs: Option<Vec<WorkerGroupSpec>>,
}

string_enum! {
    /// How Ray authenticates clients.
    pub enum AuthMode (closed) { Disabled = "disabled", Token = "token" }
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AuthOptions {
    /// Authenticate with Kubernetes service account tokens.
    pub enable_k8s_token_auth: Option<bool>,
    pub mode: Option<AuthMode>,
    /// Secret holding the auth token; generated when unset.
    pub secret_name: Option<String>,
}

string_enum! {
    /// How fast the autoscaler adds nodes.
    pub enum UpscalingMode (closed) {
        Default = "Default",
        Aggressive = "Aggressive",
        Conservative = "Conservative",
    }
}

string_enum! {
    /// Which generation of the Ray autoscaler runs.
    pub enum AutoscalerVersion (closed) { V1 = "v1", V2 = "v2" }
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct AutoscalerOptions {
    /// Arguments replacing the autoscaler container's default ones.
    pub args: Option<Vec<String>>,
    /// Command replacing the autoscaler container's default one.
    pub command: Option<Vec<String>>,
    pub env: Option<Vec<EnvVar>>,
    pub env_from: Option<Vec<EnvFromSource>>,
    /// Seconds a worker must be idle before the autoscaler removes it.
    pub idle_timeout_seconds: Option<i32>,
    /// Autoscaler image; defaults to the head container's image.
    pub image: Option<String>,
    pub image_pull_policy: Option<String>,
    pub resources: Option<ResourceRequirements>,
    pub security_context: Option<SecurityContext>,
    pub upscaling_mode: Option<UpscalingMode>,
    pub version: Option<AutoscalerVersion>,
    pub volume_mounts: Option<Vec<VolumeMount>>,
}

string_enum! {
    /// Where the GCS keeps its state.
    pub enum GcsBackend (closed) { Redis = "redis", Rocksdb = "rocksdb" }
}

string_enum! {
    /// What happens to the GCS storage volume when the cluster goes.
    pub enum GcsStorageDeletionPolicy (closed) {
        DeleteWithCluster = "DeleteWithCluster",
        Retain = "Retain",
    }
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsFaultToleranceOptions {
    #[schemars(extend("x-kubernetes-validations" = [
        {"rule": "self == oldSelf", "message": "gcsFaultToleranceOptions.backend is immutable"}
    ]))]
    pub backend: Option<GcsBackend>,
    /// Key namespace in external storage; defaults to the cluster's UID.
    pub external_storage_namespace: Option<String>,
    /// `host:port` of the Redis server.
    pub redis_address: Option<String>,
    pub redis_password: Option<RedisCredential>,
    pub redis_username: Option<RedisCredential>,
    /// A persistent volume for the embedded (rocksdb) backend.
    pub storage: Option<GcsStorage>,
}

/// A credential given inline or taken from a Secret or ConfigMap.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RedisCredential {
    pub value: Option<String>,
    pub value_from: Option<EnvVarSource>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct GcsStorage {
    pub access_modes: Option<Vec<String>>,
    /// An existing claim to use instead of creating one.
    pub claim_name: Option<String>,
    pub deletion_policy: Option<GcsStorageDeletionPolicy>,
    pub size: Option<Quantity>,
    pub storage_class_name: Option<String>,
    pub sub_path: Option<String>,
}

/// The head node's pod and services.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HeadGroupSpec {
    /// Create an Ingress for the dashboard.
    pub enable_ingress: Option<bool>,
    /// A Service merged into the generated head service.
    pub head_service: Option<EmbeddedService>,
    pub ingress_options: Option<IngressOptions>,
    /// Ray node labels (`ray start --labels`).
    pub labels: Option<BTreeMap<String, String>>,
    /// `ray start` parameters, flag name to value.
    pub ray_start_params: Option<BTreeMap<String, String>>,
    /// Ray logical resources, merged into `ray start --resources`.
    pub resources: Option<BTreeMap<String, String>>,
    /// Type of the head service (ClusterIP by default).
    pub service_type: Option<String>,
    /// Pod template of the head pod; its first container runs Ray.
    pub template: PodTemplateSpec,
}

string_enum! {
    pub enum IngressPathType (closed) {
        Exact = "Exact",
        Prefix = "Prefix",
        ImplementationSpecific = "ImplementationSpecific",
    }
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct IngressOptions {
    pub host: Option<String>,
    pub path: Option<String>,
    pub path_type: Option<IngressPathType>,
    pub tls: Option<Vec<IngressTLS>>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HistoryServerOptions {
    pub collector_options: Option<CollectorOptions>,
}

/// The event collector sidecar of the Ray history server.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct CollectorOptions {
    pub env: Option<Vec<EnvVar>>,
    pub image: Option<String>,
    pub image_pull_policy: Option<String>,
    pub resources: Option<ResourceRequirements>,
}

string_enum! {
    /// The baseline the generated NetworkPolicies start from.
    pub enum NetworkPolicyMode (closed) {
        DenyAll = "DenyAll",
        DenyAllIngress = "DenyAllIngress",
        DenyAllEgress = "DenyAllEgress",
    }
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyOptions {
    /// Extra rules for the head pod.
    pub head: Option<NetworkPolicyRules>,
    #[schemars(extend("default" = "DenyAll"))]
    pub mode: Option<NetworkPolicyMode>,
    /// Extra rules for every worker pod.
    pub worker: Option<NetworkPolicyRules>,
    /// Extra rules for the workers of one group.
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["groupName"]))]
    pub worker_groups: Option<Vec<WorkerGroupNetworkPolicyRules>>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct NetworkPolicyRules {
    pub egress_rules: Option<Vec<NetworkPolicyEgressRule>>,
    pub ingress_rules: Option<Vec<NetworkPolicyIngressRule>>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WorkerGroupNetworkPolicyRules {
    pub egress_rules: Option<Vec<NetworkPolicyEgressRule>>,
    pub group_name: String,
    pub ingress_rules: Option<Vec<NetworkPolicyIngressRule>>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TlsOptions {
    pub enabled: Option<bool>,
}

string_enum! {
    /// `Recreate` replaces every pod when a pod template changes; `None`
    /// leaves running pods alone.
    pub enum RayClusterUpgradeType (closed) { Recreate = "Recreate", None = "None" }
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayClusterUpgradeStrategy {
    #[serde(rename = "type")]
    pub type_: Option<RayClusterUpgradeType>,
}

/// A group of identical worker pods.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
// The replica bounds are required but defaulted by the API server, so
// clients may omit them; in Rust they stay optional.
#[schemars(extend("required" = ["groupName", "maxReplicas", "minReplicas", "template"]))]
pub struct WorkerGroupSpec {
    /// Unique within the cluster; part of the pod names.
    pub group_name: String,
    /// Idle timeout for this group's workers, overriding the autoscaler's.
    pub idle_timeout_seconds: Option<i32>,
    /// Ray node labels (`ray start --labels`).
    pub labels: Option<BTreeMap<String, String>>,
    #[schemars(extend("default" = 2147483647))]
    pub max_replicas: Option<i32>,
    #[schemars(extend("default" = 0))]
    pub min_replicas: Option<i32>,
    /// Pods per replica: a multi-host replica (e.g. a TPU slice) is this
    /// many pods created and deleted together.
    #[schemars(extend("default" = 1))]
    pub num_of_hosts: Option<i32>,
    #[schemars(extend("default" = 0))]
    pub priority: Option<i32>,
    /// `ray start` parameters, flag name to value.
    pub ray_start_params: Option<BTreeMap<String, String>>,
    /// Desired replicas, kept within `[minReplicas, maxReplicas]`.
    #[schemars(extend("default" = 0))]
    pub replicas: Option<i32>,
    /// Ray logical resources, merged into `ray start --resources`.
    pub resources: Option<BTreeMap<String, String>>,
    pub scale_strategy: Option<ScaleStrategy>,
    /// Delete this group's pods while keeping the group.
    pub suspend: Option<bool>,
    /// Pod template of the workers; its first container runs Ray.
    pub template: PodTemplateSpec,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ScaleStrategy {
    /// Pods to delete (by name), set by the autoscaler when scaling down.
    pub workers_to_delete: Option<Vec<String>>,
}

string_enum! {
    /// `status.state` of a RayCluster.
    pub enum ClusterState (open) {
        Ready = "ready",
        Unhealthy = "unhealthy",
        Failed = "failed",
        Suspending = "suspending",
        Suspended = "suspended",
    }
}

/// Observed state of a Ray cluster.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct RayClusterStatus {
    /// Worker pods that are running and not being deleted.
    pub available_worker_replicas: Option<i32>,
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Option<Vec<Condition>>,
    #[serde(rename = "desiredCPU")]
    pub desired_cpu: Option<Quantity>,
    #[serde(rename = "desiredGPU")]
    pub desired_gpu: Option<Quantity>,
    pub desired_memory: Option<Quantity>,
    #[serde(rename = "desiredTPU")]
    pub desired_tpu: Option<Quantity>,
    pub desired_worker_replicas: Option<i32>,
    /// Head service ports by name.
    pub endpoints: Option<BTreeMap<String, String>>,
    pub head: Option<HeadInfo>,
    pub last_update_time: Option<Time>,
    pub max_worker_replicas: Option<i32>,
    pub min_worker_replicas: Option<i32>,
    pub observed_generation: Option<i64>,
    /// Worker pods whose Ready condition is True.
    pub ready_worker_replicas: Option<i32>,
    pub reason: Option<String>,
    pub state: Option<ClusterState>,
    /// When the cluster last entered each state.
    pub state_transition_times: Option<BTreeMap<String, Time>>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
pub struct HeadInfo {
    #[serde(rename = "podIP")]
    pub pod_ip: Option<String>,
    #[serde(rename = "podName")]
    pub pod_name: Option<String>,
    #[serde(rename = "serviceIP")]
    pub service_ip: Option<String>,
    #[serde(rename = "serviceName")]
    pub service_name: Option<String>,
}
