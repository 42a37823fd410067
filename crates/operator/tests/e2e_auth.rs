//! Token authentication (`authOptions.mode: token`) on real nodes with real
//! Ray: the K8sJobMode submitter authenticates with the cluster's token, the
//! dashboard refuses a caller without it, and in HTTPMode the operator's
//! own dashboard calls carry it (read from the cluster's Secret).
//!
//! Every test here is named `e2e_*` (see `tests/e2e.rs`).

mod e2e_support;
mod support;

use e2e_support::*;
use kuberay_api::RayJob;
use kuberay_testenv::harness;
use serde_json::json;
use support::cli::{kubectl, run};

fn assert_succeeded(job: &RayJob) {
    let status = job.status.as_ref().unwrap();
    assert_eq!(
        status
            .job_status
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("SUCCEEDED"),
        "{status:?}"
    );
}

/// What the dashboard answers, from inside the head pod, to a caller that
/// sends no token.
const UNAUTHENTICATED_GET: &str = r#"
import urllib.request, urllib.error
try:
    urllib.request.urlopen("http://127.0.0.1:8265/api/jobs/", timeout=10)
    print("status 200")
except urllib.error.HTTPError as e:
    print("status", e.code)
"#;

#[tokio::test]
async fn e2e_token_auth_jobs_authenticate_and_strangers_are_refused() {
    let _permit = harness::ray_permit().await;
    operator_installed().await;
    let ns = harness::real_namespace("e2e-auth").await;

    // K8sJobMode: the submitter pod runs `ray job submit` with the token.
    let mut job: serde_json::Value = serde_yaml::from_str(&small_rayjob(
        "tok",
        "K8sJobMode",
        "python -c \"import ray; ray.init(); print('authenticated driver')\"",
    ))
    .unwrap();
    job["spec"]["rayClusterSpec"]["authOptions"] = json!({"mode": "token"});
    let _: RayJob = apply_json(&ns, job).await;
    let done = wait_job_finished(&ns, "tok").await;
    assert_succeeded(&done);
    let logs = job_pod_logs(&ns, "tok").await;
    assert!(
        logs.contains("authenticated driver"),
        "submitter log:\n{logs}"
    );

    // The token is really required: without it the dashboard refuses.
    let cluster = done
        .status
        .as_ref()
        .and_then(|s| s.ray_cluster_name.clone())
        .unwrap();
    let head = ray_pod(&ns, &cluster, "head").await;
    let answer = run(
        kubectl()
            .args(["exec", "-n", &ns.name, &head.metadata.name.unwrap()])
            .args(["-c", "ray-head", "--", "python", "-c", UNAUTHENTICATED_GET]),
        None,
    );
    assert!(
        answer.contains("status 401") || answer.contains("status 403"),
        "the dashboard answered a caller without the token: {answer}"
    );

    // HTTPMode on the same cluster: the operator submits and follows the
    // job itself, so its requests carry the token.
    let http: RayJob = apply_json(
        &ns,
        json!({
            "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "tok-http"},
            "spec": {
                "submissionMode": "HTTPMode",
                "entrypoint": "echo submitted by the operator",
                "clusterSelector": {"ray.io/cluster": cluster},
            },
        }),
    )
    .await;
    let done = wait_job_finished(&ns, &http.metadata.name.unwrap()).await;
    assert_succeeded(&done);
}
