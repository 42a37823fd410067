//! One bad RayCluster must not take the operator down: the operator binary,
//! as a process, against huge replica counts beside small clusters, a
//! ResourceQuota that refuses pods, SIGTERM in the middle of a big
//! scale-up, and a few hundred specs mutated at random from KubeRay's
//! samples. Memory is read from the operator's own `/metrics`.

mod support;

use std::process::{Child, Command};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Pod, ResourceQuota};
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kuberay_api::{RayCluster, RayJob};
use kuberay_testenv::harness::{self, TestNamespace, wait_until};
use kuberay_testenv::samples;
use support::free_port;

/// What the operator may use at most in these tests (the chart's limit is
/// 512Mi): the largest workload here holds a few thousand pods.
const MEMORY_CEILING: f64 = 256.0 * 1024.0 * 1024.0;

/// The operator binary, watching one namespace, with its log in a file.
struct Operator {
    child: Child,
    metrics: u16,
    log: tempfile::NamedTempFile,
}

impl Operator {
    fn start(ns: &str) -> Self {
        let metrics = free_port();
        let log = tempfile::NamedTempFile::new().unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_kuberay-operator"))
            .arg(format!("--kubeconfig={}", harness::kubeconfig().display()))
            .arg(format!("--metrics-addr=127.0.0.1:{metrics}"))
            .arg(format!(
                "--health-probe-bind-address=127.0.0.1:{}",
                free_port()
            ))
            .arg(format!("--watch-namespace={ns}"))
            .arg("--enable-leader-election=false")
            .env("RUST_LOG", "warn")
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .unwrap();
        Self {
            child,
            metrics,
            log,
        }
    }

    async fn metric(&self, name: &str, labels: &str) -> Option<f64> {
        let text = reqwest::get(format!("http://127.0.0.1:{}/metrics", self.metrics))
            .await
            .ok()?
            .text()
            .await
            .ok()?;
        let prefix = format!("{name}{labels} ");
        text.lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|v| v.parse().ok())
    }

    async fn rss(&self) -> Option<f64> {
        self.metric("process_resident_memory_bytes", "").await
    }

    async fn pod_creates(&self) -> f64 {
        self.metric(
            "kuberay_kube_client_requests_total",
            r#"{verb="create",group="",resource="pods"}"#,
        )
        .await
        .unwrap_or(0.0)
    }

    /// Panics if the process died; its log says why.
    fn assert_alive(&mut self) {
        if let Ok(Some(status)) = self.child.try_wait() {
            panic!("the operator exited ({status}):\n{}", self.log_text());
        }
        let log = self.log_text();
        assert!(!log.contains("panicked"), "the operator panicked:\n{log}");
    }

    fn log_text(&self) -> String {
        let text = std::fs::read_to_string(self.log.path()).unwrap_or_default();
        text.lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect::<Vec<_>>()
            .join("\n")
    }

    fn sigterm(&self) {
        nix::sys::signal::kill(
            nix::unistd::Pid::from_raw(self.child.id() as i32),
            nix::sys::signal::Signal::SIGTERM,
        )
        .unwrap();
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn setup(prefix: &str) -> TestNamespace {
    support::init_logs();
    harness::install_crds().await;
    harness::namespace(prefix).await
}

fn cluster(name: &str, workers: i64) -> serde_json::Value {
    serde_json::json!({
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name},
        "spec": {
            "rayVersion": "2.52.0",
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [
                {"name": "ray-head", "image": "rayproject/ray:2.52.0"}]}}},
            "workerGroupSpecs": [{"groupName": "w", "replicas": workers, "minReplicas": 0,
                "maxReplicas": 2_147_483_647, "rayStartParams": {},
                "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.52.0"}]}}}]
        }
    })
}

async fn apply(ns: &TestNamespace, obj: &serde_json::Value) -> Result<(), kube::Error> {
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(
        ns.client.clone(),
        &ns.name,
        &kube::api::ApiResource::from_gvk(&kube::api::GroupVersionKind::gvk(
            "ray.io",
            "v1",
            obj["kind"].as_str().unwrap(),
        )),
    );
    let name = obj["metadata"]["name"].as_str().unwrap().to_string();
    api.patch(
        &name,
        &PatchParams::apply("robustness").force(),
        &Patch::Apply(obj),
    )
    .await
    .map(|_| ())
}

fn is_ready(rc: &RayCluster) -> bool {
    rc.status
        .as_ref()
        .and_then(|s| s.state.as_ref())
        .is_some_and(|s| s.to_string() == "ready")
}

#[tokio::test]
async fn a_two_billion_replica_cluster_does_not_starve_fifty_small_ones() {
    let ns = setup("huge").await;
    let mut op = Operator::start(&ns.name);
    apply(&ns, &cluster("huge", 2_000_000_000)).await.unwrap();
    let started = Instant::now();
    for i in 0..50 {
        apply(&ns, &cluster(&format!("small-{i}"), 1))
            .await
            .unwrap();
    }
    let clusters = ns.api::<RayCluster>();
    let mut peak: f64 = 0.0;
    let deadline = Instant::now() + Duration::from_secs(180);
    loop {
        if let Some(rss) = op.rss().await {
            peak = peak.max(rss);
        }
        let list = clusters.list(&ListParams::default()).await.unwrap();
        let ready = list
            .items
            .iter()
            .filter(|c| c.name_any().starts_with("small-") && is_ready(c))
            .count();
        if ready == 50 {
            break;
        }
        op.assert_alive();
        assert!(
            Instant::now() < deadline,
            "only {ready} of 50 small clusters ready after 180 s beside a 2e9-replica one{}",
            harness::health()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let small_ready = started.elapsed();
    op.assert_alive();
    let huge = clusters.get("huge").await.unwrap();
    let reason = huge
        .status
        .as_ref()
        .and_then(|s| s.reason.clone())
        .unwrap_or_default();
    assert!(
        reason.starts_with("Creating workers in batches")
            && reason.contains("of 2000000000 workers"),
        "the huge cluster's status should say it is paced: {reason:?}"
    );
    let pods = ns
        .api::<Pod>()
        .list(&ListParams::default().labels("ray.io/cluster=huge"))
        .await
        .unwrap();
    if let Some(rss) = op.rss().await {
        peak = peak.max(rss);
    }
    eprintln!(
        "50 small clusters ready {:.1}s after a 2e9-replica cluster; the huge one has {} pods; operator peak RSS {:.0} MiB",
        small_ready.as_secs_f64(),
        pods.items.len(),
        peak / 1048576.0
    );
    assert!(peak > 0.0, "the operator's /metrics never answered");
    assert!(
        peak < MEMORY_CEILING,
        "peak RSS {:.0} MiB",
        peak / 1048576.0
    );
    // Stop creating before the namespace goes (and takes its pods).
    drop(op);
}

#[tokio::test]
async fn a_quota_refusal_costs_one_request_per_backoff_and_names_the_quota() {
    let ns = setup("quota").await;
    let quota: ResourceQuota = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "team-pods"},
        "spec": {"hard": {"pods": "3"}}
    }))
    .unwrap();
    ns.api::<ResourceQuota>()
        .patch(
            "team-pods",
            &PatchParams::apply("robustness"),
            &Patch::Apply(&quota),
        )
        .await
        .unwrap();
    // The quota controller must have counted usage before pods are refused.
    wait_until(
        "the quota to be counted",
        Duration::from_secs(60),
        || async {
            let q = ns.api::<ResourceQuota>().get("team-pods").await.ok()?;
            q.status?.used.map(|_| ())
        },
    )
    .await;
    let op = Operator::start(&ns.name);
    apply(&ns, &cluster("capped", 40)).await.unwrap();
    let clusters = ns.api::<RayCluster>();
    let message = wait_until(
        "the refusal in the status",
        Duration::from_secs(90),
        || async {
            let rc = clusters.get("capped").await.ok()?;
            let c = support::condition(&rc, "ReplicaFailure")?;
            (c.0 == "True").then_some(c.2)
        },
    )
    .await;
    assert!(message.contains("exceeded quota: team-pods"), "{message}");
    assert!(
        !message.contains("ErrorResponse") && !message.contains("Status {"),
        "a debug dump: {message}"
    );

    let before = op.pod_creates().await;
    let window = Duration::from_secs(20);
    let deadline = Instant::now() + window;
    // Watching the count for the whole window is the measurement itself.
    while Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let failing = op.pod_creates().await - before;
    eprintln!(
        "pod creations in {}s against a full quota: {failing}",
        window.as_secs()
    );
    // Backoff doubles from 1 s and each pass stops at the first refusal:
    // about five passes in 20 s. Without the first-refusal stop it would be
    // 37 requests per pass.
    assert!(
        failing <= 8.0,
        "{failing} create requests in {}s; the operator's warnings:\n{}",
        window.as_secs(),
        op.log_text()
    );
    let events: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
    let list = events.list(&ListParams::default()).await.unwrap();
    assert!(
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("FailedToCreateWorkerPod")
                && e.note
                    .as_deref()
                    .is_some_and(|n| n.contains("exceeded quota: team-pods"))),
        "no Warning event naming the quota"
    );
}

#[tokio::test]
async fn sigterm_mid_scale_up_exits_in_time_and_a_restart_duplicates_nothing() {
    let ns = setup("sigterm").await;
    let workers = 600;
    let mut op = Operator::start(&ns.name);
    apply(&ns, &cluster("big", workers)).await.unwrap();
    let pods = ns.api::<Pod>();
    let lp = ListParams::default().labels("ray.io/cluster=big,ray.io/node-type=worker");
    wait_until(
        "the scale-up to be under way",
        Duration::from_secs(90),
        || async {
            let n = pods.list(&lp).await.ok()?.items.len();
            (n > 64 && n < workers as usize).then_some(())
        },
    )
    .await;
    let signalled = Instant::now();
    op.sigterm();
    let status = loop {
        if let Some(s) = op.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            signalled.elapsed() < Duration::from_secs(30),
            "the operator was still running 30 s after SIGTERM"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!(
        "exited {:.1}s after SIGTERM ({status})",
        signalled.elapsed().as_secs_f64()
    );

    let _op = Operator::start(&ns.name);
    let clusters = ns.api::<RayCluster>();
    wait_until(
        "the cluster to converge",
        Duration::from_secs(180),
        || async { is_ready(&clusters.get("big").await.ok()?).then_some(()) },
    )
    .await;
    let live = pods.list(&lp).await.unwrap().items;
    assert_eq!(live.len(), workers as usize);
    // Nothing was created twice and then removed as surplus.
    let events = support::events(&ns, "big").await;
    assert!(
        !events
            .iter()
            .any(|(_, reason, _)| reason == "DeletedWorkerPod"),
        "{events:?}"
    );
}

/// A fixed-seed generator (xorshift64*): the same specs on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// Every object path of `v` whose value is an object, as JSON pointers.
fn object_paths(v: &serde_json::Value, at: String, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            out.push(at.clone());
            for (k, c) in m {
                object_paths(
                    c,
                    format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")),
                    out,
                );
            }
        }
        serde_json::Value::Array(a) => {
            for (i, c) in a.iter().enumerate() {
                object_paths(c, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
}

/// One random change of the kinds users get wrong.
fn mutate(rng: &mut Rng, doc: &mut serde_json::Value) -> String {
    let groups = doc
        .pointer("/spec/workerGroupSpecs")
        .or_else(|| doc.pointer("/spec/rayClusterSpec/workerGroupSpecs"))
        .and_then(|g| g.as_array())
        .map_or(0, Vec::len);
    let gpath = if doc.pointer("/spec/rayClusterSpec").is_some() {
        "/spec/rayClusterSpec/workerGroupSpecs"
    } else {
        "/spec/workerGroupSpecs"
    };
    let set = |doc: &mut serde_json::Value, path: &str, value: serde_json::Value| {
        if let Some(slot) = doc.pointer_mut(path) {
            *slot = value;
        }
    };
    let g = if groups > 0 { rng.below(groups) } else { 0 };
    match rng.below(12) {
        0 if groups > 0 => {
            set(
                doc,
                &format!("{gpath}/{g}/replicas"),
                (-(rng.below(5) as i64) - 1).into(),
            );
            "negative replicas".into()
        }
        1 if groups > 0 => {
            let v = [1_000_000i64, 2_000_000_000, 2_147_483_647][rng.below(3)];
            if let Some(grp) = doc.pointer_mut(&format!("{gpath}/{g}")) {
                grp["replicas"] = v.into();
                grp["maxReplicas"] = 2_147_483_647i64.into();
            }
            format!("replicas {v}")
        }
        2 if groups > 0 => {
            set(doc, &format!("{gpath}/{g}/minReplicas"), 9.into());
            set(doc, &format!("{gpath}/{g}/maxReplicas"), 2.into());
            "min above max".into()
        }
        3 => {
            let mut paths = Vec::new();
            object_paths(doc, String::new(), &mut paths);
            let limits: Vec<&String> = paths
                .iter()
                .filter(|p| p.ends_with("/resources/limits") || p.ends_with("/resources/requests"))
                .collect();
            if let Some(p) = limits.get(rng.below(limits.len().max(1))) {
                let q = ["lots", "-1", "1.5.5", "", "9999999999999999999999Ti"][rng.below(5)];
                set(doc, &format!("{p}/cpu"), q.into());
                format!("cpu {q:?} at {p}")
            } else {
                "none".into()
            }
        }
        4 => {
            let path = if gpath.contains("rayClusterSpec") {
                "/spec/rayClusterSpec/headGroupSpec/template/spec/containers"
            } else {
                "/spec/headGroupSpec/template/spec/containers"
            };
            set(doc, path, serde_json::json!([]));
            "no head containers".into()
        }
        5 if groups > 0 => {
            set(doc, &format!("{gpath}/{g}/groupName"), "".into());
            "empty group name".into()
        }
        6 if groups > 0 => {
            let first = doc.pointer(&format!("{gpath}/0")).cloned().unwrap();
            if let Some(a) = doc.pointer_mut(gpath).and_then(|v| v.as_array_mut()) {
                a.push(first);
            }
            "duplicate group".into()
        }
        7 => {
            let n = "n".repeat(45 + rng.below(25));
            doc["metadata"]["name"] = n.clone().into();
            format!("name of {} chars", n.len())
        }
        8 if groups > 0 => {
            set(doc, &format!("{gpath}/{g}/replicas"), "three".into());
            "replicas as a string".into()
        }
        9 => {
            doc["metadata"]["labels"] =
                serde_json::json!({"team": "données-équipe", "ünïcode": "x"});
            "unicode labels".into()
        }
        10 if groups > 0 => {
            if let Some(grp) = doc.pointer_mut(&format!("{gpath}/{g}")) {
                grp.as_object_mut().unwrap().remove("template");
            }
            "no worker template".into()
        }
        _ => {
            set(
                doc,
                &format!("{gpath}/{g}/rayStartParams"),
                serde_json::json!({"num-cpus": "many", "block": "false"}),
            );
            "bad rayStartParams".into()
        }
    }
}

#[tokio::test]
async fn a_few_hundred_mutated_samples_leave_the_operator_alive_and_every_object_answered() {
    let ns = setup("fuzz").await;
    let mut op = Operator::start(&ns.name);
    let bases: Vec<serde_json::Value> = samples::ray_objects()
        .into_iter()
        .filter(|s| matches!(s.kind(), "RayCluster" | "RayJob"))
        .map(|s| s.value)
        .collect();
    assert!(!bases.is_empty());
    let mut rng = Rng(0x5EED_0FC0_FFEE);
    let mut accepted: Vec<(String, String, String)> = Vec::new();
    let (mut refused, mut total) = (0, 0);
    for i in 0..240 {
        let mut doc = bases[rng.below(bases.len())].clone();
        let what = mutate(&mut rng, &mut doc);
        if rng.below(3) == 0 {
            mutate(&mut rng, &mut doc);
        }
        let base = doc["metadata"]["name"].as_str().unwrap_or("x").to_string();
        let name = format!("m{i}-{}", base.chars().take(60).collect::<String>());
        doc["metadata"]["name"] = name
            .chars()
            .take(63)
            .collect::<String>()
            .trim_end_matches('-')
            .into();
        doc["metadata"].as_object_mut().unwrap().remove("namespace");
        total += 1;
        match apply(&ns, &doc).await {
            Ok(()) => accepted.push((
                doc["kind"].as_str().unwrap().to_string(),
                doc["metadata"]["name"].as_str().unwrap().to_string(),
                what,
            )),
            Err(_) => refused += 1,
        }
    }
    // Valid clusters applied after them are still served.
    for i in 0..5 {
        apply(&ns, &cluster(&format!("valid-{i}"), 2))
            .await
            .unwrap();
    }
    let clusters = ns.api::<RayCluster>();
    let jobs = ns.api::<RayJob>();
    let events: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
    let mut peak: f64 = 0.0;
    let mut unanswered: Vec<(String, String, String)>;
    let started = Instant::now();
    let deadline = started + Duration::from_secs(240);
    loop {
        if let Some(rss) = op.rss().await {
            peak = peak.max(rss);
        }
        let warned: std::collections::BTreeSet<String> = events
            .list(&ListParams::default())
            .await
            .map(|l| {
                l.items
                    .into_iter()
                    .filter(|e| e.type_.as_deref() == Some("Warning"))
                    .filter_map(|e| e.regarding?.name)
                    .collect()
            })
            .unwrap_or_default();
        let rcs = clusters.list(&ListParams::default()).await.unwrap().items;
        let rjs = jobs.list(&ListParams::default()).await.unwrap().items;
        unanswered = accepted
            .iter()
            .filter(|(kind, name, _)| {
                let has_status = match kind.as_str() {
                    "RayCluster" => rcs
                        .iter()
                        .find(|c| &c.name_any() == name)
                        .is_some_and(|c| c.status.is_some()),
                    _ => rjs.iter().find(|j| &j.name_any() == name).is_some_and(|j| {
                        j.status
                            .as_ref()
                            .is_some_and(|s| s.job_deployment_status.is_some())
                    }),
                };
                !has_status && !warned.contains(name)
            })
            .cloned()
            .collect();
        // The valid clusters get every pod they ask for (a head and two
        // workers) although thousands of pods wait before theirs. Whether
        // those pods then run is up to the simulated nodes, which by then
        // have thousands of pending pods to start: not the operator's part.
        let selector = "ray.io/cluster in (valid-0,valid-1,valid-2,valid-3,valid-4)";
        let valid_pods = ns
            .api::<Pod>()
            .list_metadata(&ListParams::default().labels(selector))
            .await
            .map(|l| l.items)
            .unwrap_or_default();
        let valid_ready = (0..5)
            .filter(|i| {
                let name = format!("valid-{i}");
                let own = valid_pods
                    .iter()
                    .filter(|p| p.labels().get("ray.io/cluster") == Some(&name))
                    .count();
                own == 3
                    && rcs
                        .iter()
                        .any(|c| c.name_any() == name && c.status.is_some())
            })
            .count();
        if unanswered.is_empty() && valid_ready == 5 {
            break;
        }
        op.assert_alive();
        if Instant::now() >= deadline {
            let pods = ns.api::<Pod>().list(&ListParams::default()).await.unwrap();
            let mut phases = std::collections::BTreeMap::<String, usize>::new();
            for p in &pods.items {
                let phase = p.status.as_ref().and_then(|s| s.phase.clone());
                *phases.entry(phase.unwrap_or_default()).or_default() += 1;
            }
            let valid: Vec<_> = rcs
                .iter()
                .filter(|c| c.name_any().starts_with("valid-"))
                .map(|c| (c.name_any(), c.status.clone()))
                .collect();
            panic!(
                "after {}s, {} valid clusters of 5 have their pods and a status, and no status or Warning event for {} accepted objects: {:?}\npods by phase: {phases:?}\nvalid clusters: {valid:#?}",
                started.elapsed().as_secs(),
                valid_ready,
                unanswered.len(),
                unanswered.iter().take(10).collect::<Vec<_>>()
            );
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    op.assert_alive();
    eprintln!(
        "{total} mutated specs: {} accepted, {refused} refused by the API server; all answered in {:.1}s; peak RSS {:.0} MiB",
        accepted.len(),
        started.elapsed().as_secs_f64(),
        peak / 1048576.0
    );
    assert!(unanswered.is_empty());
    assert!(
        peak < MEMORY_CEILING,
        "peak RSS {:.0} MiB",
        peak / 1048576.0
    );
}
