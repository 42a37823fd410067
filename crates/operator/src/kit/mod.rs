//! A generic controller toolkit: the single way to run a controller, the
//! watch-fed caches of children, expectations, the applier, events,
//! conditions, per-object backoff and pacing, gauges read from a cache.
//! Nothing here knows a controller.

pub mod applier;
pub mod backoff;
pub mod cache;
pub mod clock;
pub mod conditions;
pub mod events;
pub mod expectations;
pub mod finalizer;
pub mod metrics;
pub mod pacing;
pub mod runner;
pub mod scope;
mod trim;
pub mod written;

use std::fmt::Debug;

use k8s_openapi::NamespaceResourceScope;
use kube::Resource;
use serde::de::DeserializeOwned;

/// A namespaced Kubernetes kind the toolkit watches, caches and writes.
pub trait Object:
    Resource<Scope = NamespaceResourceScope, DynamicType = ()>
    + Clone
    + DeserializeOwned
    + Debug
    + Send
    + Sync
    + 'static
{
}

impl<K> Object for K where
    K: Resource<Scope = NamespaceResourceScope, DynamicType = ()>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static
{
}
