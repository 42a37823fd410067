//! The KubeRay operator in Rust: one module per controller, plus the
//! shared machinery every controller uses once (caches, expectations, the
//! applier, events, conditions).

pub mod applier;
pub mod backoff;
pub mod cache;
pub mod client;
pub mod conditions;
pub mod config;
pub mod dashboard;
pub mod events;
pub mod expectations;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod options;
pub mod quantity;
pub mod raycluster;
pub mod rayjob;
pub mod rbac;
pub mod scope;
pub mod server;
mod trim;
