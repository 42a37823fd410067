//! Kubernetes objects embedded in Ray specs. k8s-openapi's top-level types
//! always serialise `apiVersion` and `kind`; embedded copies keep every part
//! optional so what a user wrote reads back exactly as written.

use k8s_openapi::api::core::v1::{ServiceSpec, ServiceStatus};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

/// A Service template merged into a generated Service.
#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct EmbeddedService {
    pub api_version: Option<String>,
    pub kind: Option<String>,
    pub metadata: Option<ObjectMeta>,
    pub spec: Option<ServiceSpec>,
    pub status: Option<ServiceStatus>,
}
