//! The RayCluster's status condition types (KubeRay's strings), read by the
//! RayCluster controller that sets them and by whatever waits on a cluster.

pub const PROVISIONED: &str = "RayClusterProvisioned";
pub const HEAD_POD_READY: &str = "HeadPodReady";
/// KubeRay's `RayClusterReplicaFailure` condition; its type string is this.
pub const REPLICA_FAILURE: &str = "ReplicaFailure";
pub const SUSPENDING: &str = "RayClusterSuspending";
pub const SUSPENDED: &str = "RayClusterSuspended";
