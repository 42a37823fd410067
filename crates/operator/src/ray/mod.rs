//! What several controllers (and the kubectl plugin) share about Ray: the
//! pods of a cluster with their `ray start` command, the services, the
//! autoscaler's sidecar and RBAC, auth, quantities, the RayCluster's
//! condition types, GCS fault tolerance and the dashboard's job client.

pub mod auth;
pub mod autoscaler;
pub mod conditions;
pub mod dashboard;
pub mod gcs_ft;
pub mod pod;
pub mod quantity;
pub mod service;
