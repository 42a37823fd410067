//! The liveness and readiness probes of Ray containers, KubeRay's
//! commands for each Ray version.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ExecAction, HTTPGetAction, Probe};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use kuberay_api::RayClusterSpec;
use kuberay_api::names::*;
use kuberay_api::validation::parse_ray_version;

const PROBE_COMMAND: &str =
    "wget --tries 1 -T {timeout} -q -O- http://localhost:{port}/{path} | grep success";

fn wget(timeout: i32, port: &str, path: &str) -> String {
    PROBE_COMMAND
        .replace("{timeout}", &timeout.to_string())
        .replace("{port}", port)
        .replace("{path}", path)
}

/// Liveness and readiness probes where the user set none: Ray's unified
/// health endpoint from Ray 2.53, else KubeRay's wget checks of the raylet
/// (and, on the head, the GCS through the dashboard).
pub(super) fn add_probes(
    spec: &RayClusterSpec,
    c: &mut Container,
    params: &BTreeMap<String, String>,
    is_head: bool,
    serve_worker: bool,
) {
    let agent_port = params
        .get("dashboard-agent-listen-port")
        .cloned()
        .unwrap_or_else(|| DASHBOARD_AGENT_PORT.to_string());
    let dashboard_port = params
        .get("dashboard-port")
        .cloned()
        .unwrap_or_else(|| DASHBOARD_PORT.1.to_string());
    let unified = spec
        .ray_version
        .as_deref()
        .and_then(parse_ray_version)
        .is_some_and(|v| v >= (2, 53, 0));
    let raylet = wget(2, &agent_port, "api/local_raylet_healthz");
    let mut checks = vec![raylet.clone()];
    if is_head {
        // KubeRay passes the readiness failure threshold (10) as this timeout.
        checks.push(wget(10, &dashboard_port, "api/gcs_healthz"));
    }
    let handler = |p: &mut Probe| {
        if unified {
            p.http_get = Some(HTTPGetAction {
                path: Some("/api/healthz".into()),
                port: IntOrString::Int(agent_port.parse().unwrap_or(DASHBOARD_AGENT_PORT)),
                ..Default::default()
            });
        } else {
            p.exec = Some(ExecAction {
                command: Some(vec!["bash".into(), "-c".into(), checks.join(" && ")]),
            });
        }
    };
    let timeout = if is_head { 5 } else { 2 };
    if c.liveness_probe.is_none() {
        let mut p = Probe {
            initial_delay_seconds: Some(30),
            timeout_seconds: Some(timeout),
            period_seconds: Some(5),
            success_threshold: Some(1),
            failure_threshold: Some(120),
            ..Default::default()
        };
        handler(&mut p);
        c.liveness_probe = Some(p);
    }
    if c.readiness_probe.is_none() {
        let mut p = Probe {
            initial_delay_seconds: Some(10),
            timeout_seconds: Some(timeout),
            period_seconds: Some(5),
            success_threshold: Some(1),
            failure_threshold: Some(10),
            ..Default::default()
        };
        handler(&mut p);
        if serve_worker {
            // A Serve worker is ready only while its proxy is healthy; one
            // failure takes it out of the serve service at once.
            let serve_port = c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(SERVE_PORT.0))
                .map_or(SERVE_PORT.1, |p| p.container_port);
            p.failure_threshold = Some(1);
            p.http_get = None;
            p.exec = Some(ExecAction {
                command: Some(vec![
                    "bash".into(),
                    "-c".into(),
                    format!(
                        "{raylet} && {}",
                        wget(10, &serve_port.to_string(), "-/healthz")
                    ),
                ]),
            });
        }
        c.readiness_probe = Some(p);
    }
}
