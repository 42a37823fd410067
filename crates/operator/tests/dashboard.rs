//! The dashboard client against a real Ray head (the Ray wheel from PyPI,
//! on loopback): submit, poll to SUCCEEDED, a failing entrypoint, stop,
//! logs, list, delete, and a duplicate submission ID.

use std::sync::OnceLock;
use std::time::Duration;

use kuberay_operator::ray::dashboard::{DashboardClient, DashboardError, JobInfo, SubmitRequest};
use kuberay_testenv::harness::wait_until;
use kuberay_testenv::ray::RayHead;

fn head() -> &'static RayHead {
    static HEAD: OnceLock<RayHead> = OnceLock::new();
    HEAD.get_or_init(|| RayHead::start(2).unwrap_or_else(|e| panic!("Ray head did not start: {e}")))
}

fn submit(entrypoint: &str, id: &str) -> SubmitRequest {
    SubmitRequest {
        entrypoint: entrypoint.into(),
        submission_id: Some(id.into()),
        ..Default::default()
    }
}

async fn wait_status(c: &DashboardClient, id: &str, want: &str) -> JobInfo {
    wait_until(
        &format!("job {id} to reach {want}"),
        Duration::from_secs(120),
        || async {
            c.get_job(id)
                .await
                .ok()
                .flatten()
                .filter(|j| j.status == want)
        },
    )
    .await
}

#[tokio::test]
async fn a_job_runs_to_success_with_its_logs_and_metadata() {
    let c = DashboardClient::new(&head().dashboard);
    let mut req = submit("python -c 'print(6 * 7)'", "ok-1");
    req.metadata = Some([("owner".to_string(), "tests".to_string())].into());
    req.runtime_env = Some(serde_json::json!({"env_vars": {"GREETING": "hi"}}));
    assert_eq!(c.submit(&req).await.unwrap(), "ok-1");
    let done = wait_status(&c, "ok-1", "SUCCEEDED").await;
    assert!(done.start_time.is_some() && done.end_time >= done.start_time);
    assert_eq!(done.metadata.unwrap()["owner"], "tests");
    assert!(c.logs("ok-1").await.unwrap().contains("42"));
    assert!(
        c.list_jobs()
            .await
            .unwrap()
            .iter()
            .any(|j| j.submission_id.as_deref() == Some("ok-1"))
    );
    // A second submission with the same ID is refused, recognisably.
    match c.submit(&req).await {
        Err(DashboardError::AlreadyExists(id)) => assert_eq!(id, "ok-1"),
        other => panic!("expected AlreadyExists, got {other:?}"),
    }
    assert!(c.delete_job("ok-1").await.unwrap());
    assert_eq!(c.get_job("ok-1").await.unwrap(), None);
}

#[tokio::test]
async fn a_failing_entrypoint_ends_failed() {
    let c = DashboardClient::new(&head().dashboard);
    c.submit(&submit("python -c 'import sys; sys.exit(3)'", "bad-1"))
        .await
        .unwrap();
    let failed = wait_status(&c, "bad-1", "FAILED").await;
    assert!(failed.message.unwrap_or_default().contains("exit code 3"));
}

#[tokio::test]
async fn a_running_job_can_be_stopped() {
    let c = DashboardClient::new(&head().dashboard);
    c.submit(&submit("sleep 600", "long-1")).await.unwrap();
    wait_status(&c, "long-1", "RUNNING").await;
    assert!(c.stop_job("long-1").await.unwrap());
    wait_status(&c, "long-1", "STOPPED").await;
    assert!(
        !c.stop_job("long-1").await.unwrap(),
        "stopping a stopped job is a no-op"
    );
}

#[tokio::test]
async fn unknown_jobs_and_dead_dashboards_are_told_apart() {
    let c = DashboardClient::new(&head().dashboard);
    assert_eq!(c.get_job("no-such-job").await.unwrap(), None);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let dead = DashboardClient::new(&format!("http://127.0.0.1:{port}"));
    match dead.get_job("x").await {
        Err(DashboardError::Unreachable { .. }) => {}
        other => panic!("expected Unreachable, got {other:?}"),
    }
}
