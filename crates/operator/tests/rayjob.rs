//! The RayJob controller on the local control plane: simulated nodes run the
//! pods, a stand-in dashboard plays Ray (the dashboard client itself is
//! tested against a real Ray head in `dashboard.rs`).

mod support;

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::Job;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kuberay_api::rayjob::{JobDeploymentStatus as D, JobStatus};
use kuberay_api::{RayCluster, RayJob};
use kuberay_operator::runtime::config::Config;
use kuberay_testenv::harness::{TestNamespace, wait_until};
use serde_json::json;
use support::fake_dashboard::FakeDashboard;
use support::*;

async fn setup_jobs(prefix: &str) -> (TestNamespace, Operator, FakeDashboard) {
    let fake = FakeDashboard::start().await;
    let (ns, op) = setup(prefix, Config::default()).await;
    op.kill();
    let op = Operator::start_with(&ns.name, Config::default(), Arc::new(fake.clone()));
    (ns, op, fake)
}

async fn wait_job(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&RayJob) -> bool,
) -> RayJob {
    wait_for(ns, name, what, check).await
}

fn deployment(j: &RayJob) -> D {
    j.status
        .as_ref()
        .and_then(|s| s.job_deployment_status.clone())
        .unwrap_or(D::New)
}

fn status(j: &RayJob) -> kuberay_api::RayJobStatus {
    j.status.clone().unwrap_or_default()
}

#[tokio::test]
async fn k8s_job_mode_runs_to_complete_and_shuts_the_cluster_down() {
    let (ns, _op, fake) = setup_jobs("rj-k8s").await;
    let yaml = rayjob(
        "demo",
        json!({"shutdownAfterJobFinishes": true, "runtimeEnvYAML": "pip: [requests]\n", "metadata": {"team": "ml"}}),
    );
    apply::<RayJob>(&ns, &yaml).await;
    // Simulated pods start at once, so Initializing may not outlive one
    // status write; accept what may follow it; the names are set by then.
    let init = wait_job(&ns, "demo", "Initializing with a cluster name", |j| {
        matches!(deployment(j), D::Initializing | D::Running)
            && status(j).ray_cluster_name.is_some()
    })
    .await;
    let st = status(&init);
    let cluster = st.ray_cluster_name.clone().unwrap();
    assert!(
        cluster.starts_with("demo-") && cluster.len() == "demo-".len() + 5,
        "{cluster}"
    );
    let job_id = st.job_id.clone().unwrap();
    assert!(job_id.starts_with("demo-"));
    let rc = wait_until("the RayCluster", TIMEOUT, || async {
        ns.api::<RayCluster>().get_opt(&cluster).await.ok()?
    })
    .await;
    let labels = rc.labels();
    assert_eq!(labels["ray.io/originated-from-crd"], "RayJob");
    assert_eq!(labels["ray.io/originated-from-cr-name"], "demo");
    assert_eq!(rc.owner_references()[0].kind, "RayJob");

    let running = wait_job(&ns, "demo", "Running", |j| deployment(j) == D::Running).await;
    let url = status(&running).dashboard_url.unwrap();
    assert_eq!(
        url,
        format!("{cluster}-head-svc.{}.svc.cluster.local:8265", ns.name)
    );
    let submitter = ns.api::<Job>().get("demo").await.unwrap();
    let c = job_container(&submitter);
    let cmd = &c.args.as_ref().unwrap()[0];
    assert!(
        cmd.contains(&format!("ray job submit --address http://{url} --no-wait")),
        "{cmd}"
    );
    assert!(
        cmd.contains(r#"--runtime-env-json "{\"pip\":[\"requests\"]}""#),
        "{cmd}"
    );
    assert!(cmd.contains(&format!("--submission-id {job_id}")), "{cmd}");
    assert!(
        c.env
            .as_ref()
            .unwrap()
            .iter()
            .any(|e| e.name == "RAY_JOB_SUBMISSION_ID" && e.value.as_deref() == Some(&job_id))
    );
    assert_eq!(submitter.spec.unwrap().backoff_limit, Some(2));
    // Made on the first pass in Running, as KubeRay does.
    wait_until("the job's head service", TIMEOUT, || async {
        ns.api::<k8s_openapi::api::core::v1::Service>()
            .get_opt("demo-head-svc")
            .await
            .ok()?
    })
    .await;

    fake.set(&job_id, "RUNNING");
    wait_job(&ns, "demo", "jobStatus RUNNING", |j| {
        status(j).job_status == Some(JobStatus::Running)
    })
    .await;
    fake.set(&job_id, "SUCCEEDED");
    // Ray is done, but the submitter still runs: not Complete yet.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(
        deployment(&ns.api::<RayJob>().get("demo").await.unwrap()),
        D::Running
    );
    finish_submitter(&ns, "demo", 0).await;
    let done = wait_job(&ns, "demo", "Complete", |j| deployment(j) == D::Complete).await;
    let s = status(&done);
    assert_eq!(
        (s.job_status, s.succeeded, s.failed),
        (Some(JobStatus::Succeeded), Some(1), Some(0))
    );
    assert!(s.end_time.is_some() && s.start_time.is_some());
    assert!(s.ray_job_info.unwrap().end_time.is_some());
    wait_until(
        "the cluster to be deleted (shutdownAfterJobFinishes)",
        TIMEOUT,
        || async {
            ns.api::<RayCluster>()
                .get_opt(&cluster)
                .await
                .ok()?
                .is_none()
                .then_some(())
        },
    )
    .await;
    wait_events(
        &ns,
        "demo",
        &[
            "CreatedRayCluster",
            "CreatedRayJobSubmitter",
            "DeletedRayCluster",
        ],
    )
    .await;
}

#[tokio::test]
async fn http_mode_submits_through_the_dashboard_and_retries_on_a_new_cluster() {
    let (ns, _op, fake) = setup_jobs("rj-http").await;
    let yaml = rayjob(
        "web",
        json!({"submissionMode": "HTTPMode", "backoffLimit": 1, "submitterPodTemplate": null,
        "entrypointNumCpus": 0.5, "runtimeEnvYAML": "env_vars: {A: b}\n"}),
    );
    apply::<RayJob>(&ns, &yaml).await;
    let first = wait_job(&ns, "web", "Running", |j| deployment(j) == D::Running).await;
    let (id1, cluster1) = (
        status(&first).job_id.unwrap(),
        status(&first).ray_cluster_name.unwrap(),
    );
    wait_until("the submission", TIMEOUT, || async { fake.status(&id1) }).await;
    let body = fake.submissions.lock().unwrap()[0].clone();
    assert_eq!(body["submission_id"], id1.as_str());
    assert_eq!(body["entrypoint"], "python -c 'print(1)'");
    assert_eq!(body["entrypoint_num_cpus"], 0.5);
    assert_eq!(body["runtime_env"], json!({"env_vars": {"A": "b"}}));
    assert!(
        ns.api::<Job>().get_opt("web").await.unwrap().is_none(),
        "no submitter Job in HTTPMode"
    );

    fake.set(&id1, "FAILED");
    let retried = wait_job(&ns, "web", "a second attempt", |j| {
        deployment(j) == D::Running && status(j).ray_cluster_name.as_deref() != Some(&cluster1)
    })
    .await;
    assert_eq!(status(&retried).failed, Some(1));
    let id2 = status(&retried).job_id.unwrap();
    assert_ne!(id1, id2, "each attempt is a new submission");
    wait_until("the first cluster to be deleted", TIMEOUT, || async {
        ns.api::<RayCluster>()
            .get_opt(&cluster1)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    wait_until("the second submission", TIMEOUT, || async {
        fake.status(&id2)
    })
    .await;
    fake.set(&id2, "FAILED");
    let failed = wait_job(&ns, "web", "Failed for good", |j| {
        deployment(j) == D::Failed
    })
    .await;
    let s = status(&failed);
    assert_eq!(
        (s.reason.as_deref(), s.failed),
        (Some("AppFailed"), Some(2))
    );
}

#[tokio::test]
async fn deadlines_fail_the_job_and_are_not_retried() {
    let (ns, _op, fake) = setup_jobs("rj-deadline").await;
    apply::<RayJob>(
        &ns,
        &rayjob(
            "slow",
            json!({"activeDeadlineSeconds": 6, "backoffLimit": 2}),
        ),
    )
    .await;
    let running = wait_job(&ns, "slow", "Running", |j| deployment(j) == D::Running).await;
    fake.set(&status(&running).job_id.unwrap(), "RUNNING");
    let failed = wait_job(&ns, "slow", "DeadlineExceeded", |j| {
        deployment(j) == D::Failed
    })
    .await;
    let s = status(&failed);
    assert_eq!(s.reason.as_deref(), Some("DeadlineExceeded"));
    assert!(s.message.unwrap().contains("ActiveDeadlineSeconds: 6"));
    assert_eq!(s.failed, Some(1), "not retried");

    // A cluster that can never be scheduled: the job explains why it waits,
    // then hits the pre-running deadline.
    let stuck = rayjob("stuck", json!({"preRunningDeadlineSeconds": 8}));
    let mut v: serde_json::Value = serde_yaml::from_str(&stuck).unwrap();
    v["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]["nodeSelector"] =
        json!({"no-such": "node"});
    apply::<RayJob>(&ns, &serde_yaml::to_string(&v).unwrap()).await;
    let waiting = wait_job(&ns, "stuck", "an explanation while initializing", |j| {
        status(j)
            .message
            .is_some_and(|m| m.contains("Unschedulable"))
    })
    .await;
    assert!(
        status(&waiting)
            .message
            .unwrap()
            .starts_with("Waiting for RayCluster")
    );
    let failed = wait_job(&ns, "stuck", "PreRunningDeadlineExceeded", |j| {
        deployment(j) == D::Failed
    })
    .await;
    assert_eq!(
        status(&failed).reason.as_deref(),
        Some("PreRunningDeadlineExceeded")
    );
}

#[tokio::test]
async fn suspend_holds_a_new_job_and_stops_a_running_one() {
    let (ns, _op, _fake) = setup_jobs("rj-suspend").await;
    apply::<RayJob>(
        &ns,
        &rayjob(
            "queued",
            json!({"suspend": true, "shutdownAfterJobFinishes": true}),
        ),
    )
    .await;
    wait_job(&ns, "queued", "Suspended", |j| {
        deployment(j) == D::Suspended
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        ns.api::<RayCluster>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty(),
        "no cluster while queued"
    );
    let api = ns.api::<RayJob>();
    api.patch(
        "queued",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    let running = wait_job(&ns, "queued", "Running", |j| deployment(j) == D::Running).await;
    let cluster = status(&running).ray_cluster_name.unwrap();
    api.patch(
        "queued",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    let suspended = wait_job(&ns, "queued", "Suspended again", |j| {
        deployment(j) == D::Suspended
    })
    .await;
    assert_eq!(status(&suspended).ray_cluster_name, None);
    assert!(
        ns.api::<RayCluster>()
            .get_opt(&cluster)
            .await
            .unwrap()
            .is_none()
    );
    wait_until("the submitter Job to be deleted", TIMEOUT, || async {
        ns.api::<Job>()
            .get_opt("queued")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn deletion_rules_remove_workers_then_the_cluster() {
    let (ns, _op, fake) = setup_jobs("rj-rules").await;
    let rules = json!({"deletionStrategy": {"deletionRules": [
        {"condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}, "policy": "DeleteWorkers"},
        {"condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 6}, "policy": "DeleteCluster"}
    ]}});
    apply::<RayJob>(&ns, &rayjob("ruled", rules)).await;
    let running = wait_job(&ns, "ruled", "Running", |j| deployment(j) == D::Running).await;
    let (id, cluster) = (
        status(&running).job_id.unwrap(),
        status(&running).ray_cluster_name.unwrap(),
    );
    fake.set(&id, "SUCCEEDED");
    finish_submitter(&ns, "ruled", 0).await;
    wait_job(&ns, "ruled", "Complete", |j| deployment(j) == D::Complete).await;
    wait_until("workers gone, head kept", TIMEOUT, || async {
        let rc = ns.api::<RayCluster>().get(&cluster).await.ok()?;
        let suspended = rc
            .spec
            .worker_group_specs?
            .iter()
            .all(|g| g.suspend == Some(true));
        (suspended
            && pods(&ns, &cluster, "worker").await.is_empty()
            && pods(&ns, &cluster, "head").await.len() == 1)
            .then_some(())
    })
    .await;
    wait_until("the cluster deleted after its TTL", TIMEOUT, || async {
        ns.api::<RayCluster>()
            .get_opt(&cluster)
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn a_cluster_selector_job_borrows_and_keeps_the_cluster() {
    let (ns, _op, fake) = setup_jobs("rj-selector").await;
    let cluster = "shared";
    let rc = format!(
        "apiVersion: ray.io/v1\nkind: RayCluster\nmetadata:\n  name: {cluster}\nspec:\n  headGroupSpec:\n    rayStartParams: {{}}\n    template:\n      spec:\n        containers:\n        - name: ray-head\n          image: rayproject/ray:2.52.0\n"
    );
    apply::<RayCluster>(&ns, &rc).await;
    let yaml = rayjob(
        "borrower",
        json!({"rayClusterSpec": null, "clusterSelector": {"ray.io/cluster": cluster}, "submissionMode": "HTTPMode", "submitterPodTemplate": null}),
    );
    apply::<RayJob>(&ns, &yaml).await;
    let running = wait_job(&ns, "borrower", "Running", |j| deployment(j) == D::Running).await;
    assert_eq!(status(&running).ray_cluster_name.as_deref(), Some(cluster));
    let id = status(&running).job_id.unwrap();
    wait_until("the submission", TIMEOUT, || async { fake.status(&id) }).await;
    fake.set(&id, "SUCCEEDED");
    wait_job(&ns, "borrower", "Complete", |j| {
        deployment(j) == D::Complete
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(
        ns.api::<RayCluster>()
            .get_opt(cluster)
            .await
            .unwrap()
            .is_some(),
        "a borrowed cluster is never deleted"
    );
    assert_eq!(
        ns.api::<RayCluster>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .len(),
        1
    );
}

#[tokio::test]
async fn interactive_mode_waits_for_the_users_job_id() {
    let (ns, _op, fake) = setup_jobs("rj-interactive").await;
    apply::<RayJob>(&ns, &rayjob("chat", json!({"submissionMode": "InteractiveMode", "entrypoint": null, "submitterPodTemplate": null}))).await;
    let waiting = wait_job(&ns, "chat", "Waiting", |j| deployment(j) == D::Waiting).await;
    assert_eq!(status(&waiting).job_id, None);
    fake.set("mine-1", "RUNNING");
    ns.api::<RayJob>()
        .patch(
            "chat",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"jobId": "mine-1"}})),
        )
        .await
        .unwrap();
    wait_job(&ns, "chat", "Running with the user's job", |j| {
        deployment(j) == D::Running && status(j).job_status == Some(JobStatus::Running)
    })
    .await;
}

#[tokio::test]
async fn a_failing_submitter_fails_the_job_with_its_reason() {
    let (ns, _op, _fake) = setup_jobs("rj-subfail").await;
    apply::<RayJob>(
        &ns,
        &rayjob("broken", json!({"submitterConfig": {"backoffLimit": 0}})),
    )
    .await;
    wait_job(&ns, "broken", "Running", |j| deployment(j) == D::Running).await;
    finish_submitter(&ns, "broken", 1).await;
    let failed = wait_job(&ns, "broken", "Failed", |j| deployment(j) == D::Failed).await;
    let s = status(&failed);
    assert_eq!(s.reason.as_deref(), Some("SubmissionFailed"));
    assert!(
        s.message
            .unwrap()
            .starts_with("Job submission has failed. Reason: BackoffLimitExceeded")
    );
}

#[tokio::test]
async fn an_invalid_spec_is_reported_and_a_fix_starts_the_job() {
    let (ns, _op, _fake) = setup_jobs("rj-invalid").await;
    apply::<RayJob>(
        &ns,
        &rayjob("oops", json!({"runtimeEnvYAML": "pip: [unclosed"})),
    )
    .await;
    let bad = wait_job(&ns, "oops", "ValidationFailed", |j| {
        deployment(j) == D::ValidationFailed
    })
    .await;
    assert!(
        status(&bad)
            .message
            .unwrap()
            .contains("spec.runtimeEnvYAML: is not valid YAML")
    );
    let events = wait_until("the Warning event", TIMEOUT, || async {
        let e = events(&ns, "oops").await;
        e.iter()
            .any(|(t, r, _)| t == "Warning" && r == "InvalidRayJobSpec")
            .then_some(e)
    })
    .await;
    assert!(events.iter().any(|(_, _, n)| n.contains("runtimeEnvYAML")));
    assert!(
        ns.api::<RayCluster>()
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
    );
    apply::<RayJob>(
        &ns,
        &rayjob("oops", json!({"runtimeEnvYAML": "pip: [requests]"})),
    )
    .await;
    wait_job(&ns, "oops", "Running after the fix", |j| {
        deployment(j) == D::Running
    })
    .await;
}

#[tokio::test]
async fn sidecar_mode_runs_the_submitter_in_the_head() {
    let (ns, _op, _fake) = setup_jobs("rj-sidecar").await;
    apply::<RayJob>(
        &ns,
        &rayjob(
            "side",
            json!({"submissionMode": "SidecarMode", "submitterPodTemplate": null}),
        ),
    )
    .await;
    let running = wait_job(&ns, "side", "Running", |j| deployment(j) == D::Running).await;
    let cluster = status(&running).ray_cluster_name.unwrap();
    let rc = ns.api::<RayCluster>().get(&cluster).await.unwrap();
    assert_eq!(
        rc.annotations()["ray.io/disable-provisioned-head-restart"],
        "true"
    );
    let head = &pods(&ns, &cluster, "head").await[0];
    let spec = head.spec.as_ref().unwrap();
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let sub = spec
        .containers
        .iter()
        .find(|c| c.name == "ray-job-submitter")
        .expect("submitter container");
    assert!(
        sub.args.as_ref().unwrap()[0].contains("ray job submit --address http://127.0.0.1:8265")
    );
    assert!(ns.api::<Job>().get_opt("side").await.unwrap().is_none());
}

#[tokio::test]
async fn every_rayjob_sample_gets_going() {
    let all = kuberay_testenv::samples::ray_objects();
    let (ns, _op, _fake) = setup_jobs("rj-samples").await;
    let mut started = Vec::new();
    for (i, s) in all.iter().filter(|s| s.kind() == "RayJob").enumerate() {
        let mut v = s.value.clone();
        let name = format!("sample-{i}");
        v["metadata"] = json!({"name": name, "namespace": ns.name});
        let j: RayJob = serde_json::from_value(v).unwrap();
        ns.api::<RayJob>()
            .patch(
                &name,
                &PatchParams::apply("kuberay-tests"),
                &Patch::Apply(&j),
            )
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", s.id()));
        started.push((name, s.id(), j.spec.cluster_selector.is_some()));
    }
    for (name, id, selector) in started {
        // A borrowed cluster does not exist here; every other job must get
        // past Initializing to the state its mode allows.
        let want: &[D] = if selector {
            &[D::Initializing]
        } else {
            &[D::Running, D::Waiting]
        };
        let api = ns.api::<RayJob>();
        let reached = tokio::time::timeout(TIMEOUT, async {
            loop {
                if let Ok(j) = api.get(&name).await
                    && want.contains(&deployment(&j))
                {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        })
        .await;
        if reached.is_err() {
            let j = api.get(&name).await.unwrap();
            panic!("{id} did not reach {want:?}: status {:?}", j.status);
        }
    }
}
