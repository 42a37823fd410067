//! The controllers, one folder per kind.

pub mod raycluster;
pub mod rayjob;
