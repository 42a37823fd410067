//! The operator process: flags and config file, the settings controllers
//! read, the counted Kubernetes client, metrics, the HTTP endpoints, leader
//! election, and the manager that runs the controllers it is given. Knows
//! nothing of Ray or of any controller.

pub mod client;
pub mod config;
pub mod leader;
pub mod manager;
pub mod metrics;
pub mod options;
pub mod server;
