//! Serve on one cluster, the pure part: when to submit `serveConfigV2`,
//! what the dashboard's report becomes in the status, and what a cluster
//! that is not ready waits for, in words.

use std::collections::BTreeMap;

use kuberay_api::rayservice::{AppStatus, ServeDeploymentStatus};
use serde_json::Value;

use crate::ray::dashboard::ServeDetails;

/// Ray Serve's name for an application without one.
const DEFAULT_APP: &str = "default";
const RUNNING: &str = "RUNNING";

/// Why the config must be (re)submitted to a cluster, or `None`: nothing was
/// submitted to it yet (by this process), it reports no application (its
/// head restarted without GCS fault tolerance), or the config changed.
pub fn submission_reason(
    submitted: Option<&str>,
    config: &str,
    details: &ServeDetails,
) -> Option<&'static str> {
    match submitted {
        None => Some("nothing has been submitted to the cluster yet"),
        Some(_) if details.applications.is_empty() => Some(
            "the cluster reports no Serve application (its head restarted without GCS fault tolerance?)",
        ),
        Some(s) if s != config => Some("serveConfigV2 changed"),
        Some(_) => None,
    }
}

/// `serveConfigV2` as the JSON body of `PUT /api/serve/applications/`.
pub fn config_body(yaml: &str) -> Result<Value, String> {
    serde_yaml::from_str::<Value>(yaml).map_err(|e| format!("serveConfigV2 is not valid YAML: {e}"))
}

/// The applications as the status shows them, and whether every one runs
/// (a cluster with none is not ready).
pub fn applications(details: &ServeDetails) -> (bool, BTreeMap<String, AppStatus>) {
    let apps: BTreeMap<String, AppStatus> = details
        .applications
        .iter()
        .map(|(name, app)| {
            let name = if name.is_empty() { DEFAULT_APP } else { name };
            let deployments = app
                .deployments
                .iter()
                .map(|(d, s)| {
                    (
                        d.clone(),
                        ServeDeploymentStatus {
                            status: Some(s.status.clone()),
                            message: Some(s.message.clone()),
                        },
                    )
                })
                .collect();
            (
                name.to_string(),
                AppStatus {
                    status: Some(app.status.clone()),
                    message: Some(app.message.clone()),
                    serve_deployment_statuses: Some(deployments),
                },
            )
        })
        .collect();
    let ready = !apps.is_empty() && apps.values().all(|a| a.status.as_deref() == Some(RUNNING));
    (ready, apps)
}

/// What the applications that do not run yet wait for: each one's status
/// and Ray's message, and its deployments that are not healthy.
pub fn waiting_for(apps: &BTreeMap<String, AppStatus>) -> String {
    if apps.is_empty() {
        return "no Serve application is deployed yet".into();
    }
    let mut parts = Vec::new();
    for (name, app) in apps {
        let status = app.status.as_deref().unwrap_or_default();
        if status == RUNNING {
            continue;
        }
        let mut part = format!("application {name} is {status}");
        if let Some(m) = app.message.as_deref().filter(|m| !m.is_empty()) {
            part += &format!(" ({})", first_line(m));
        }
        for (d, ds) in app.serve_deployment_statuses.iter().flatten() {
            let s = ds.status.as_deref().unwrap_or_default();
            if s != "HEALTHY" {
                part += &format!("; deployment {d} is {s}");
                if let Some(m) = ds.message.as_deref().filter(|m| !m.is_empty()) {
                    part += &format!(" ({})", first_line(m));
                }
            }
        }
        parts.push(part);
    }
    parts.join("; ")
}

/// Ray's message in one line: its first line and, for a traceback, the
/// last one (the exception).
fn first_line(m: &str) -> String {
    let mut lines = m.lines().map(str::trim).filter(|l| !l.is_empty());
    let first = lines.next().unwrap_or_default();
    let line = match lines.next_back() {
        Some(last) => format!("{first} ... {last}"),
        None => first.to_string(),
    };
    line.chars().take(400).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn details(v: serde_json::Value) -> ServeDetails {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn submits_first_time_after_head_restart_and_on_change_only() {
        let running = details(serde_json::json!({"applications": {"a": {"status": "RUNNING"}}}));
        let none = ServeDetails::default();
        assert!(submission_reason(None, "x", &running).is_some());
        assert!(submission_reason(Some("x"), "x", &none).is_some());
        assert!(submission_reason(Some("x"), "y", &running).is_some());
        assert_eq!(submission_reason(Some("x"), "x", &running), None);
    }

    #[test]
    fn ready_only_when_every_application_runs_and_the_message_names_the_rest() {
        let d = details(serde_json::json!({"applications": {
            "fruit": {"status": "RUNNING", "deployments": {"Mango": {"status": "HEALTHY"}}},
            "": {"status": "DEPLOYING", "message": "Deploying app\nmore", "deployments": {
                "Pear": {"status": "UPDATING", "message": "1 replica starting"}, "Fig": {"status": "HEALTHY"}}}
        }}));
        let (ready, apps) = applications(&d);
        assert!(!ready);
        assert!(apps.contains_key("default"));
        assert_eq!(
            waiting_for(&apps),
            "application default is DEPLOYING (Deploying app ... more); deployment Pear is UPDATING (1 replica starting)"
        );
        assert!(!applications(&ServeDetails::default()).0);
        let ok = details(serde_json::json!({"applications": {"a": {"status": "RUNNING"}}}));
        assert!(applications(&ok).0);
    }
}
