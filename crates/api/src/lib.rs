//! The `ray.io/v1` API of KubeRay v1.7: RayCluster, RayJob, RayService and
//! RayCronJob, with their defaults and pure validation. No client and no I/O:
//! the operator, the CRD generator and tests all build on these types.

pub mod crd;
pub mod defaults;
pub mod embedded;
mod enums;
pub mod features;
pub mod names;
pub mod raycluster;
pub mod raycronjob;
pub mod rayjob;
pub mod rayservice;
pub mod schema;
pub mod tolerant;
pub mod validation;

pub use raycluster::{RayCluster, RayClusterSpec, RayClusterStatus};
pub use raycronjob::{RayCronJob, RayCronJobSpec, RayCronJobStatus};
pub use rayjob::{RayJob, RayJobSpec, RayJobStatus};
pub use rayservice::{RayService, RayServiceSpec, RayServiceStatuses};

/// The API group of every kind here.
pub const GROUP: &str = "ray.io";
