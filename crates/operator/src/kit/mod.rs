//! A generic controller toolkit: the single way to run a controller, the
//! watch-fed caches of children, expectations, the applier, events,
//! conditions and per-object backoff. Nothing here knows a controller.

pub mod applier;
pub mod backoff;
pub mod cache;
pub mod clock;
pub mod conditions;
pub mod events;
pub mod expectations;
pub mod finalizer;
pub mod runner;
pub mod scope;
mod trim;
