//! The `kuberay-operator` binary as a process: health and readiness, the
//! metrics endpoint, leader election between two replicas with hand-over,
//! graceful shutdown on SIGTERM.

mod support;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::Lease;
use kuberay_api::RayCluster;
use kuberay_testenv::harness::{self, TestNamespace, wait_until};
use support::*;

struct Process {
    child: Child,
    metrics: u16,
    health: u16,
    /// Its output (the operator's log), for failure reports.
    log: tempfile::NamedTempFile,
}

impl Process {
    fn start(kubeconfig: &std::path::Path, extra: &[String], name: &str) -> Self {
        let (metrics, health) = (free_port(), free_port());
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kuberay-operator"))
            .arg(format!("--kubeconfig={}", kubeconfig.display()))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics}"))
            .arg(format!("--health-probe-bind-address=127.0.0.1:{health}"))
            .arg("--enable-metrics")
            .args(extra)
            .env("POD_NAME", name)
            .env("RUST_LOG", "info")
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            metrics,
            health,
            log,
        }
    }

    /// The last lines of its log.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    async fn get(&self, port: u16, path: &str) -> Option<(u16, String)> {
        let resp = reqwest::get(format!("http://127.0.0.1:{port}{path}"))
            .await
            .ok()?;
        let status = resp.status().as_u16();
        Some((status, resp.text().await.ok()?))
    }

    fn signal(&self, sig: nix::sys::signal::Signal) {
        nix::sys::signal::kill(nix::unistd::Pid::from_raw(self.child.id() as i32), sig).unwrap();
    }

    /// Non-GET requests this process made, other than to its Lease.
    async fn writes_besides_lease(&self) -> u64 {
        let (_, text) = self.get(self.metrics, "/metrics").await.unwrap();
        text.lines()
            .filter(|l| {
                l.starts_with("kuberay_kube_client_requests_total{")
                    && !["get", "list", "watch"]
                        .iter()
                        .any(|v| l.contains(&format!("verb=\"{v}\"")))
            })
            .filter(|l| !l.contains("resource=\"leases\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn namespace(prefix: &str) -> TestNamespace {
    harness::install_crds().await;
    harness::namespace(prefix).await
}

#[tokio::test]
async fn health_readiness_and_metrics() {
    // Against an API server that never answers, the operator is alive but
    // never ready: its caches cannot sync.
    let dir = tempfile::tempdir().unwrap();
    let dead = dir.path().join("dead.kubeconfig");
    let port = free_port();
    std::fs::write(
        &dead,
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:{port}'}}}}]\nusers: [{{name: u, user: {{}}}}]\ncontexts: [{{name: x, context: {{cluster: c, user: u}}}}]\ncurrent-context: x\n"
        ),
    )
    .unwrap();
    let unready = Process::start(&dead, &["--enable-leader-election=false".into()], "unready");
    wait_until(
        "/healthz of an operator without API server",
        TIMEOUT,
        || async {
            unready
                .get(unready.health, "/healthz")
                .await
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(unready.get(unready.health, "/readyz").await.unwrap().0, 503);

    let ns = namespace("proc-metrics").await;
    let op = Process::start(
        harness::kubeconfig(),
        &[
            "--enable-leader-election=false".into(),
            format!("--watch-namespace={}", ns.name),
        ],
        "single",
    );
    wait_until("/readyz once caches are synced", TIMEOUT, || async {
        op.get(op.health, "/readyz")
            .await
            .filter(|(s, _)| *s == 200)
    })
    .await;
    apply::<RayCluster>(&ns, &cluster("metered")).await;
    wait_status(&ns, "metered", "provisioned", |rc| {
        condition(rc, "RayClusterProvisioned").is_some_and(|c| c.0 == "True")
    })
    .await;
    let uid = ns
        .api::<RayCluster>()
        .get("metered")
        .await
        .unwrap()
        .metadata
        .uid
        .unwrap();
    let labels = format!(r#"name="metered",namespace="{}",uid="{uid}""#, ns.name);
    // The condition gauge reads the watch cache, which may get the status
    // write a moment after the reconcile recorded the duration.
    let provisioned =
        format!(r#"kuberay_cluster_condition_provisioned{{{labels},condition="true"}} 1"#);
    let text = wait_until("the provisioned metrics", TIMEOUT, || async {
        let (_, t) = op.get(op.metrics, "/metrics").await?;
        (t.contains("kuberay_cluster_provisioned_duration_seconds{") && t.contains(&provisioned))
            .then_some(t)
    })
    .await;
    assert!(
        text.contains(&format!(
            r#"kuberay_cluster_info{{{labels},owner_kind="None"}} 1"#
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            r#"kuberay_cluster_condition_provisioned{{{labels},condition="true"}} 1"#
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "kuberay_cluster_provisioned_duration_seconds{{{labels}}}"
        )),
        "{text}"
    );
    assert!(
        text.contains(
            r#"controller_runtime_reconcile_total{controller="raycluster",result="success"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains(
            r#"kuberay_kube_client_requests_total{verb="create",group="",resource="pods"}"#
        ),
        "{text}"
    );
}

fn cluster(name: &str) -> String {
    format!(
        "apiVersion: ray.io/v1\nkind: RayCluster\nmetadata:\n  name: {name}\nspec:\n  headGroupSpec:\n    rayStartParams: {{}}\n    template:\n      spec:\n        containers:\n        - name: ray-head\n          image: rayproject/ray:2.52.0\n  workerGroupSpecs:\n  - groupName: w\n    replicas: 3\n    minReplicas: 0\n    maxReplicas: 10\n    rayStartParams: {{}}\n    template:\n      spec:\n        containers:\n        - name: ray-worker\n          image: rayproject/ray:2.52.0\n"
    )
}

async fn holder(ns: &TestNamespace) -> Option<String> {
    let lease = ns
        .api::<Lease>()
        .get_opt("ray-operator-leader")
        .await
        .ok()??;
    lease.spec?.holder_identity.filter(|h| !h.is_empty())
}

#[tokio::test]
async fn one_replica_leads_and_a_killed_leader_hands_over() {
    let ns = namespace("proc-leader").await;
    let args = |_: &str| -> Vec<String> {
        vec![
            format!("--watch-namespace={}", ns.name),
            format!("--leader-election-namespace={}", ns.name),
        ]
    };
    let a = Process::start(harness::kubeconfig(), &args("a"), "replica-a");
    let b = Process::start(harness::kubeconfig(), &args("b"), "replica-b");
    let leader = wait_until("a leader", TIMEOUT, || async { holder(&ns).await }).await;
    let (leader_proc, follower) = if leader == "replica-a" {
        (a, b)
    } else {
        (b, a)
    };
    apply::<RayCluster>(&ns, &cluster("led")).await;
    wait_running(&ns, "led", 3).await;
    wait_until(
        "the follower's readiness (standing by)",
        TIMEOUT,
        || async {
            follower
                .get(follower.health, "/readyz")
                .await
                .filter(|(s, _)| *s == 200)
        },
    )
    .await;
    assert_eq!(
        follower.writes_besides_lease().await,
        0,
        "the follower wrote something"
    );

    // Kill the leader outright: the follower takes over once the lease expires.
    leader_proc.signal(nix::sys::signal::Signal::SIGKILL);
    let killed_at = Instant::now();
    let new_leader = wait_until("a new leader", TIMEOUT, || async {
        holder(&ns).await.filter(|h| *h != leader)
    })
    .await;
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(45), "hand-over took {took:?}");
    drop(leader_proc);
    assert_ne!(new_leader, leader);
    // The new leader adopts what exists and keeps reconciling: no duplicates.
    apply::<RayCluster>(&ns, &cluster("after")).await;
    wait_running(&ns, "after", 3).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(pods(&ns, "led", "worker").await.len(), 3);
    assert_eq!(pods(&ns, "led", "head").await.len(), 1);
    eprintln!("leader hand-over after SIGKILL took {took:?}");
}

#[tokio::test]
async fn sigterm_releases_the_lease_and_exits_cleanly() {
    let ns = namespace("proc-term").await;
    let args = vec![
        format!("--watch-namespace={}", ns.name),
        format!("--leader-election-namespace={}", ns.name),
    ];
    let mut a = Process::start(harness::kubeconfig(), &args, "term-a");
    wait_until("term-a leads", TIMEOUT, || async {
        holder(&ns).await.filter(|h| h == "term-a")
    })
    .await;
    let b = Process::start(harness::kubeconfig(), &args, "term-b");
    wait_until("term-b stands by", TIMEOUT, || async {
        b.get(b.health, "/readyz").await.filter(|(s, _)| *s == 200)
    })
    .await;
    a.signal(nix::sys::signal::Signal::SIGTERM);
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(s) = a.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "term-a did not exit after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert!(
        status.success(),
        "exit status {status}; log:\n{}",
        a.log_tail()
    );
    // The lease was given up on the way out, not left to expire.
    let lease = ns.api::<Lease>().get("ray-operator-leader").await.unwrap();
    let held_by = lease
        .spec
        .and_then(|s| s.holder_identity)
        .filter(|h| !h.is_empty());
    assert_ne!(
        held_by.as_deref(),
        Some("term-a"),
        "the lease is still held by the stopped replica; its log:\n{}",
        a.log_tail()
    );
    wait_until("term-b to take over", TIMEOUT, || async {
        holder(&ns).await.filter(|h| h == "term-b")
    })
    .await;
}

/// A kind whose CRD is never installed: a watch of it never lists.
#[derive(kube::CustomResource, Clone, Debug, serde::Deserialize, serde::Serialize)]
#[kube(
    group = "absent.kuberay-rs.dev",
    version = "v1",
    kind = "Absent",
    namespaced,
    schema = "disabled"
)]
struct AbsentSpec {}

#[derive(Debug, thiserror::Error)]
#[error("never")]
struct Never;

impl kuberay_operator::kit::runner::Reason for Never {
    fn reason(&self) -> &'static str {
        "Never"
    }
}

#[tokio::test]
async fn a_stop_before_the_first_list_ends_a_controller_at_once() {
    use kuberay_operator::kit::runner::{Env, Runner};
    // A stop that comes while the primary kind has not been listed yet
    // (SIGTERM during start-up on a slow API server) must not wait for a
    // list that will never come: the watch is what the stop ends.
    let ns = namespace("proc-early").await;
    let env = Env {
        client: ns.client.clone(),
        events_client: ns.client.clone(),
        scope: kuberay_operator::kit::scope::Scope::namespaces_of([ns.name.clone()]),
        concurrency: 1,
        metrics: kuberay_operator::runtime::metrics::Metrics::new(true, Default::default()),
        readiness: Default::default(),
    };
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let run = tokio::spawn(Runner::<Absent>::new("absent", &env).run(
        std::sync::Arc::new(()),
        |_, _| async { Err::<kube::runtime::controller::Action, _>(Never) },
        async move {
            let _ = stopped.await;
        },
    ));
    // Long enough for the watch to have failed and be backing off.
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!run.is_finished(), "the controller ended before its stop");
    stop.send(()).unwrap();
    tokio::time::timeout(TIMEOUT, run)
        .await
        .expect("the controller did not end after its stop")
        .unwrap();
}
