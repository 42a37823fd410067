//! RayService end to end on real nodes with real Ray Serve: KubeRay's
//! `ray-service.sample.yaml`, its Serve application replaced by a small one
//! mounted from a ConfigMap (pods cannot fetch code from the internet),
//! answers through `<service>-serve-svc`; a Serve-only change is applied in
//! place; a cluster change is a zero-downtime upgrade while a request loop
//! inside the cluster counts failures. With GCS fault tolerance on a real
//! Redis, the applications survive the head pod's replacement. An
//! incremental upgrade moves real traffic through a real Gateway
//! controller (Traefik) and real Serve capacity, step by step.
//!
//! Every test here is named `e2e_*` (see `e2e.rs`).

mod e2e_support;
mod support;

use std::time::Duration;

use e2e_support::*;
use k8s_openapi::api::core::v1::{ConfigMap, Pod};
use kube::ResourceExt;
use kuberay_api::{RayCluster, RayService};
use kuberay_testenv::harness::{self, TestNamespace, wait_until};
use kuberay_testenv::samples;
use serde_json::{Value, json};
use support::cli::{kubectl, run, try_run};
use support::rayservice::{active, condition, pending, route_backends};
use support::wait_deleted;

/// A Serve application that answers its `message` argument.
const GREETER: &str = r#"
from ray import serve
from starlette.requests import Request


@serve.deployment(ray_actor_options={"num_cpus": 0.1})
class Greeter:
    def __init__(self, message: str):
        self.message = message

    async def __call__(self, request: Request) -> str:
        return self.message


def build(args):
    return Greeter.bind(args.get("message", "hello"))
"#;

fn serve_config(message: &str) -> String {
    format!(
        "applications:\n- name: greeter\n  import_path: greeter:build\n  route_prefix: /greet\n  args:\n    message: {message}\n  deployments:\n  - name: Greeter\n    num_replicas: 1\n"
    )
}

/// The shared sample with the greeter instead of the GitHub-hosted apps,
/// mounted into both containers and on their `PYTHONPATH`, and a head that
/// asks for 500m so two clusters fit a two-core machine during an upgrade.
fn sample(message: &str, mark: &str) -> Value {
    let mut v: Value = serde_yaml::from_str(&samples::required("ray-service.sample.yaml")).unwrap();
    v["spec"]["serveConfigV2"] = json!(serve_config(message));
    v["spec"]["rayClusterDeletionDelaySeconds"] = json!(15);
    let groups = v["spec"]["rayClusterConfig"]["workerGroupSpecs"]
        .as_array()
        .map_or(0, Vec::len);
    let mut paths = vec!["/spec/rayClusterConfig/headGroupSpec/template".to_string()];
    paths.extend(
        (0..groups).map(|i| format!("/spec/rayClusterConfig/workerGroupSpecs/{i}/template")),
    );
    for path in paths {
        let t = v.pointer_mut(&path).unwrap();
        t["spec"]["volumes"] = json!([{"name": "apps", "configMap": {"name": "greeter-app"}}]);
        let c = &mut t["spec"]["containers"][0];
        c["volumeMounts"] = json!([{"name": "apps", "mountPath": "/home/ray/apps"}]);
        c["env"] = json!([{"name": "PYTHONPATH", "value": "/home/ray/apps"}, {"name": "DEPLOY_MARK", "value": mark}]);
        if c["name"] == "ray-head" {
            c["resources"]["requests"]["cpu"] = json!("500m");
        }
    }
    v
}

async fn service(ns: &TestNamespace) -> RayService {
    ns.api::<RayService>()
        .get("rayservice-sample")
        .await
        .unwrap()
}

/// Waits for the service to satisfy `check`; a timeout shows its status
/// and the pods.
async fn wait_service(
    ns: &TestNamespace,
    what: &str,
    check: impl Fn(&RayService) -> bool,
) -> RayService {
    match support::watch_until(ns, "rayservice-sample", RAY_TIMEOUT, check).await {
        Ok(s) => s,
        Err(last) => {
            let last = support::last_status(&last);
            let pods = run(
                kubectl().args(["get", "pods", "-n", &ns.name, "-o", "wide"]),
                None,
            );
            let logs = pod_logs(ns).await;
            panic!(
                "timed out waiting for {what}; last status: {last}\npods:\n{pods}{logs}{}",
                harness::health()
            );
        }
    }
}

/// The last lines of every pod's log and its events, for a failure report.
async fn pod_logs(ns: &TestNamespace) -> String {
    let mut out = String::new();
    for p in ns
        .api::<Pod>()
        .list(&Default::default())
        .await
        .unwrap()
        .items
    {
        let name = p.name_any();
        let logs = kubectl()
            .args([
                "logs",
                "-n",
                &ns.name,
                &name,
                "--all-containers",
                "--tail",
                "40",
            ])
            .output()
            .unwrap();
        let describe = kubectl()
            .args(["describe", "pod", "-n", &ns.name, &name])
            .output()
            .unwrap();
        let d = String::from_utf8_lossy(&describe.stdout).to_string();
        let events = d.split("Events:").nth(1).unwrap_or_default().to_string();
        out += &format!(
            "--- {name}:\n{}{}\nevents:{events}\n",
            String::from_utf8_lossy(&logs.stdout),
            String::from_utf8_lossy(&logs.stderr)
        );
    }
    out
}

/// A successful answer to `GET path` on `service`'s `port`, from the test
/// process (the host routes the slot's service range).
async fn get_via_service(
    ns: &TestNamespace,
    service: &str,
    port: u16,
    path: &str,
) -> Option<reqwest::Response> {
    let svc = ns
        .api::<k8s_openapi::api::core::v1::Service>()
        .get(service)
        .await
        .ok()?;
    let ip = svc.spec?.cluster_ip?;
    get_from(&ip, port, path).await
}

/// A successful answer to `GET http://ip:port/path` from the test process.
async fn get_from(ip: &str, port: u16, path: &str) -> Option<reqwest::Response> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap();
    let r = client
        .get(format!("http://{ip}:{port}{path}"))
        .send()
        .await
        .ok()?;
    r.status().is_success().then_some(r)
}

/// The answer of `/greet` through the serve service.
async fn greet(ns: &TestNamespace) -> Option<String> {
    get_via_service(ns, "rayservice-sample-serve-svc", 8000, "/greet")
        .await?
        .text()
        .await
        .ok()
}

/// A pod that asks `/greet` through the serve service every 200 ms until
/// it has seen `until` 20 times (at most 10 minutes), then prints how many
/// requests failed and which answers came.
fn request_loop(until: &str) -> Value {
    let script = format!(
        r#"
import collections, time, urllib.request
url = "http://rayservice-sample-serve-svc:8000/greet"
answers, failures, seen, start = collections.Counter(), [], 0, time.time()
while seen < 20 and time.time() - start < 600:
    try:
        body = urllib.request.urlopen(url, timeout=5).read().decode()
        answers[body] += 1
        seen += body == "{until}"
    except Exception as e:
        failures.append(repr(e))
    time.sleep(0.2)
print("answers", dict(answers))
print("failures", len(failures), failures[:5])
"#
    );
    json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "request-loop"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "loop", "image": RAY_IMAGE, "command": ["python", "-c", script],
            "resources": {"requests": {"cpu": "50m", "memory": "64Mi"}},
        }]},
    })
}

/// The tests of this binary run one at a time: the zero-downtime upgrade
/// counts failed requests, and a second RayService starting beside it on
/// two cores made its old cluster refuse connections.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[tokio::test]
async fn e2e_rayservice_sample_serves_updates_in_place_and_upgrades_without_downtime() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let _permit = harness::ray_permit().await;
    operator_installed().await;
    let ns = harness::real_namespace("e2e-service").await;
    apply_json::<ConfigMap>(
        &ns,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeter-app"}, "data": {"greeter.py": GREETER}}),
    )
    .await;
    apply_json::<RayService>(&ns, sample("hello-v1", "1")).await;

    // Real Serve runs the application; the service answers through the serve service.
    let ready = wait_service(&ns, "the RayService Ready", |s| {
        condition(s, "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
    let first = active(&ready).unwrap();
    let apps = ready
        .status
        .as_ref()
        .unwrap()
        .active_service_status
        .as_ref()
        .unwrap()
        .application_statuses
        .clone()
        .unwrap();
    assert_eq!(
        apps["greeter"].status.as_deref(),
        Some("RUNNING"),
        "{apps:?}"
    );
    let deployments = apps["greeter"].serve_deployment_statuses.clone().unwrap();
    assert_eq!(
        deployments["Greeter"].status.as_deref(),
        Some("HEALTHY"),
        "{deployments:?}"
    );
    assert!(ready.status.as_ref().unwrap().num_serve_endpoints.unwrap() >= 1);
    let answer = wait_until("an answer through the serve service", RAY_TIMEOUT, || {
        greet(&ns)
    })
    .await;
    assert_eq!(answer, "hello-v1");

    // A Serve-only change goes to the running cluster, in place.
    apply_json::<RayService>(&ns, sample("hello-v2", "1")).await;
    wait_until("hello-v2 served", RAY_TIMEOUT, || async {
        (greet(&ns).await? == "hello-v2").then_some(())
    })
    .await;
    let s = service(&ns).await;
    assert_eq!(active(&s).as_deref(), Some(first.as_str()));
    assert_eq!(pending(&s), None);

    // A cluster change: a new cluster while requests keep flowing.
    apply_json::<Pod>(&ns, request_loop("hello-v3")).await;
    wait_until("the request loop running", RAY_TIMEOUT, || async {
        let p = ns.api::<Pod>().get("request-loop").await.ok()?;
        (p.status?.phase? == "Running").then_some(())
    })
    .await;
    apply_json::<RayService>(&ns, sample("hello-v3", "2")).await;
    let upgrading = wait_service(&ns, "UpgradeInProgress", |s| {
        condition(s, "UpgradeInProgress").is_some_and(|c| c.0 == "True")
    })
    .await;
    let second = pending(&upgrading).unwrap();
    assert_ne!(second, first);
    assert_eq!(
        condition(&upgrading, "Ready").unwrap().0,
        "True",
        "the old cluster serves meanwhile"
    );
    let done = wait_service(&ns, "the new cluster promoted", |s| {
        active(s).as_deref() == Some(second.as_str())
            && condition(s, "UpgradeInProgress").is_some_and(|c| c.0 == "False")
    })
    .await;
    assert_eq!(condition(&done, "Ready").unwrap().0, "True");
    let log = wait_pod_done(&ns, "request-loop").await;
    assert!(
        log.contains("failures 0 "),
        "requests failed during the upgrade:\n{log}"
    );
    assert!(
        log.contains("'hello-v2'") && log.contains("'hello-v3'"),
        "{log}"
    );
    // The old cluster goes after rayClusterDeletionDelaySeconds.
    wait_deleted::<RayCluster>(&ns, &first, RAY_TIMEOUT).await;
    assert_eq!(greet(&ns).await.as_deref(), Some("hello-v3"));
    let head = ray_pod(&ns, &second, "head").await;
    assert_eq!(
        head.labels().get("ray.io/serve").map(String::as_str),
        Some("true")
    );
}

/// How many times the operator's log says it submitted a Serve config to
/// `cluster`.
fn submissions_to(cluster: &str) -> usize {
    let log = try_run(
        kubectl().args([
            "logs",
            "-n",
            OPERATOR_NAMESPACE,
            "deploy/kuberay-operator",
            "--tail=-1",
        ]),
        None,
    )
    .unwrap_or_default();
    log.lines()
        .filter(|l| l.contains("submitting the Serve config") && l.contains(cluster))
        .count()
}

#[tokio::test]
async fn e2e_rayservice_with_gcs_ft_keeps_its_applications_across_a_head_restart() {
    let _alone = ONE_AT_A_TIME.lock().await;
    let _permit = harness::ray_permit().await;
    operator_installed().await;
    let ns = harness::real_namespace("e2e-service-ft").await;
    apply_documents(&ns, &redis_manifest()).await;
    apply_json::<ConfigMap>(
        &ns,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeter-app"}, "data": {"greeter.py": GREETER}}),
    )
    .await;
    let mut v = sample("still-here", "1");
    v["spec"]["rayClusterConfig"]["gcsFaultToleranceOptions"] = redis_ft_options();
    apply_json::<RayService>(&ns, v).await;
    let ready = wait_service(&ns, "the RayService Ready", |s| {
        condition(s, "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
    let cluster = active(&ready).unwrap();
    wait_until(
        "an answer through the serve service",
        RAY_TIMEOUT,
        || async { (greet(&ns).await? == "still-here").then_some(()) },
    )
    .await;
    let before = submissions_to(&cluster);

    let head = ray_pod(&ns, &cluster, "head").await;
    ns.api::<Pod>()
        .delete(&head.name_any(), &Default::default())
        .await
        .unwrap();
    let clusters = ns.api::<RayCluster>();
    wait_until("a new head ready", RAY_TIMEOUT, || async {
        let rc = clusters.get(&cluster).await.ok()?;
        let s = rc.status?;
        let ready = s
            .conditions?
            .iter()
            .any(|c| c.type_ == "HeadPodReady" && c.status == "True");
        (ready && s.head?.pod_name? != head.name_any()).then_some(())
    })
    .await;
    // The applications come back from the GCS state in Redis, on the same
    // cluster: no new cluster, the same answer.
    let again = wait_service(&ns, "the RayService Ready after the head restart", |s| {
        condition(s, "Ready").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert_eq!(active(&again).as_deref(), Some(cluster.as_str()));
    assert_eq!(pending(&again), None);
    wait_until("an answer after the head restart", RAY_TIMEOUT, || async {
        (greet(&ns).await? == "still-here").then_some(())
    })
    .await;
    // A resubmission happens only if the new head reported no application
    // at some point while Serve recovered; either way the answer is the same.
    eprintln!(
        "Serve config submissions to {cluster}: {before} before the head restart, {} after",
        submissions_to(&cluster)
    );
}

/// Real Serve's `target_capacity` on `cluster`, from its dashboard on the
/// head pod (a RayService's clusters have headless head services, as in
/// KubeRay).
async fn serve_target_capacity(ns: &TestNamespace, cluster: &str) -> Option<Option<i64>> {
    let head = live_ray_pods(ns, cluster, "head")
        .await
        .into_iter()
        .next()?;
    let ip = head.status?.pod_ip?;
    let r = get_from(&ip, 8265, "/api/serve/applications/").await?;
    let v: Value = r.json().await.ok()?;
    // Serve keeps it as a float (100.0); the operator sends whole percents.
    Some(v["target_capacity"].as_f64().map(|f| f.round() as i64))
}

/// What a request loop through the Gateway saw: failed requests (with
/// the first few errors) and each answer in the order it first came.
#[derive(Debug, Default)]
struct Traffic {
    requests: usize,
    failures: Vec<String>,
    answers: Vec<String>,
}

/// `/greet` through the Gateway at `gateway`: the answer, or why there
/// is none (a non-2xx answer or a transport error).
async fn greet_at(
    client: &reqwest::Client,
    gateway: std::net::SocketAddr,
) -> Result<String, String> {
    match client.get(format!("http://{gateway}/greet")).send().await {
        Ok(r) if r.status().is_success() => r.text().await.map_err(|e| e.to_string()),
        Ok(r) => Err(format!("HTTP {}", r.status())),
        Err(e) => {
            // reqwest's own text ("error sending request") hides whether
            // the connection was refused, reset or timed out.
            let mut why = e.to_string();
            let mut cause = std::error::Error::source(&e);
            while let Some(c) = cause {
                why = format!("{why}: {c}");
                cause = c.source();
            }
            Err(why)
        }
    }
}

/// The Gateway's access-log entries since `since` that took over 2 s or
/// did not answer 2xx: when each started (seconds after `since`), how long
/// it took, its status and the backend it went to.
fn troubled_requests(since: jiff::Timestamp) -> Vec<String> {
    let path = harness::control_plane()
        .expect("the Gateway runs next to this binary's control plane")
        .gateway_access_log();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| format!("{{\"error\": \"reading {}: {e}\"}}", path.display()));
    text.lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .filter_map(|e| {
            let start: jiff::Timestamp = e["StartUTC"].as_str()?.parse().ok()?;
            let took_ms = e["Duration"].as_f64()? / 1e6;
            let status = e["DownstreamStatus"].as_i64().unwrap_or(0);
            let at = (start.as_millisecond() - since.as_millisecond()) as f64 / 1e3;
            (at >= 0.0 && (took_ms > 2000.0 || !(200..300).contains(&status))).then(|| {
                format!(
                    "{at:.1}s took {took_ms:.0} ms, status {status}, backend {} ({})",
                    e["ServiceURL"], e["ServiceName"]
                )
            })
        })
        .collect()
}

/// Asks `/greet` through the Gateway at `gateway` every 100 ms until `stop`
/// is set; a non-2xx answer or a transport error is a failure, noted with
/// the seconds since `began` at which the request started and ended.
async fn gateway_loop(
    gateway: std::net::SocketAddr,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    began: std::time::Instant,
) -> Traffic {
    use std::sync::atomic::Ordering;
    // A new connection per request: a pooled keep-alive connection that
    // the proxy closes while idle fails the next request on the client's
    // side (a race every HTTP client has, unrelated to the upgrade), so
    // only the proxy's and Serve's answers count here.
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let mut t = Traffic::default();
    while !stop.load(Ordering::Relaxed) {
        t.requests += 1;
        let sent = began.elapsed().as_secs_f32();
        match greet_at(&client, gateway).await {
            Ok(body) if !t.answers.contains(&body) => t.answers.push(body),
            Ok(_) => {}
            Err(e) => t.failures.push(format!(
                "{sent:.1}s-{:.1}s: {e}",
                began.elapsed().as_secs_f32()
            )),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    t
}

/// An incremental upgrade on real nodes with real Serve and a real Gateway
/// controller (Traefik's Gateway API provider, built from the Go module
/// proxy): requests through the Gateway go on during the whole upgrade and
/// none fails; each `target_capacity` step reaches real Serve on both
/// clusters; the route's weights move 100/0 -> 50/50 -> 0/100; the answers
/// change from the old application to the new; the old cluster is deleted.
#[tokio::test]
async fn e2e_rayservice_incremental_upgrade_moves_real_traffic_and_serve_capacity() {
    use kuberay_operator::controllers::rayservice::gateway::{Gateway, HTTPRoute};
    use std::sync::atomic::{AtomicBool, Ordering};
    let _alone = ONE_AT_A_TIME.lock().await;
    let _permit = harness::ray_permit().await;
    operator_installed().await;
    let gateway_at = harness::gateway_controller().await;
    let ns = harness::real_namespace("e2e-incr").await;
    apply_json::<ConfigMap>(
        &ns,
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "greeter-app"}, "data": {"greeter.py": GREETER}}),
    )
    .await;
    let incremental = |message: &str, mark: &str| {
        let mut v = sample(message, mark);
        v["spec"]["rayClusterDeletionDelaySeconds"] = json!(5);
        v["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = json!(true);
        v["spec"]["upgradeStrategy"] = json!({"type": "NewClusterWithIncrementalUpgrade",
            "clusterUpgradeOptions": {"gatewayClassName": harness::GATEWAY_CLASS,
                "stepSizePercent": 50, "intervalSeconds": 5, "maxSurgePercent": 50}});
        v
    };
    apply_json::<RayService>(&ns, incremental("hello-v1", "1")).await;
    let ready = wait_service(&ns, "the RayService Ready", |s| {
        condition(s, "Ready").is_some_and(|c| c.0 == "True") && active(s).is_some()
    })
    .await;
    let first = active(&ready).unwrap();
    let tc = wait_until("real Serve's target_capacity", RAY_TIMEOUT, || {
        serve_target_capacity(&ns, &first)
    })
    .await;
    assert_eq!(tc, Some(100), "the first cluster takes all of it");

    // Traefik accepts and programs what the operator created, and the
    // Gateway answers with the first application.
    let gateways: kube::Api<Gateway> = ns.api();
    let routes: kube::Api<HTTPRoute> = ns.api();
    wait_until(
        "Traefik to program the Gateway and accept the route",
        RAY_TIMEOUT,
        || async {
            let g = gateways.get_opt("rayservice-sample-gateway").await.ok()??;
            let r = routes.get_opt("rayservice-sample-httproute").await.ok()??;
            use kuberay_operator::controllers::rayservice::gateway::{gateway_ready, route_ready};
            (gateway_ready(&g) && route_ready(&g, &r)).then_some(())
        },
    )
    .await;
    let client = reqwest::Client::new();
    let first_answer = wait_until("hello-v1 through the Gateway", RAY_TIMEOUT, || async {
        greet_at(&client, gateway_at).await.ok()
    })
    .await;
    assert_eq!(first_answer, "hello-v1");

    let stop = std::sync::Arc::new(AtomicBool::new(false));
    let began = std::time::Instant::now();
    let began_utc = jiff::Timestamp::now();
    let traffic = tokio::spawn(gateway_loop(gateway_at, stop.clone(), began));
    // Each change seen below, with the seconds since the loop began, so a
    // failed request can be placed among the upgrade's steps.
    let mut timeline = Vec::new();
    let note = |timeline: &mut Vec<String>, what: String| {
        timeline.push(format!("{:.1}s {what}", began.elapsed().as_secs_f32()))
    };
    apply_json::<RayService>(&ns, incremental("hello-v2", "2")).await;
    let upgrading = wait_service(&ns, "UpgradeInProgress", |s| {
        condition(s, "UpgradeInProgress").is_some_and(|c| c.0 == "True")
    })
    .await;
    let second = pending(&upgrading).unwrap();
    // What real Serve reports on each cluster, and the route's weights,
    // until the new cluster is promoted.
    let mut seen_new = Vec::new();
    let mut seen_old = Vec::new();
    let mut weights = Vec::new();
    let deadline = tokio::time::Instant::now() + RAY_TIMEOUT;
    loop {
        if let Some(Some(tc)) = serve_target_capacity(&ns, &second).await
            && seen_new.last() != Some(&tc)
        {
            note(
                &mut timeline,
                format!("new cluster's Serve target_capacity {tc}"),
            );
            seen_new.push(tc);
        }
        if let Some(Some(tc)) = serve_target_capacity(&ns, &first).await
            && seen_old.last() != Some(&tc)
        {
            note(
                &mut timeline,
                format!("old cluster's Serve target_capacity {tc}"),
            );
            seen_old.push(tc);
        }
        if let Ok(r) = routes.get("rayservice-sample-httproute").await {
            let w: Vec<i32> = route_backends(&r).into_iter().map(|b| b.1).collect();
            if weights.last() != Some(&w) {
                note(&mut timeline, format!("route weights {w:?}"));
                weights.push(w);
            }
        }
        let s = service(&ns).await;
        if active(&s).as_deref() == Some(second.as_str()) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "no promotion; new {seen_new:?} old {seen_old:?} weights {weights:?}; status {:#?}",
            s.status
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    assert!(
        seen_new.contains(&50) && seen_new.last() == Some(&100),
        "new cluster's Serve target_capacity: {seen_new:?}"
    );
    assert!(
        seen_old.contains(&50),
        "old cluster's Serve target_capacity: {seen_old:?}"
    );
    assert!(weights.contains(&vec![50, 50]), "{weights:?}");
    let new_backend = format!("{second}-serve-svc");
    wait_until("the route on the new cluster only", RAY_TIMEOUT, || async {
        let r = routes.get("rayservice-sample-httproute").await.ok()?;
        (route_backends(&r) == [(new_backend.clone(), 100)]).then_some(())
    })
    .await;
    note(&mut timeline, format!("route on {new_backend} only"));
    // The Gateway answers with the new application only, then the loop
    // stops: every request of the upgrade got an answer.
    wait_until("only hello-v2 through the Gateway", RAY_TIMEOUT, || async {
        let answers: Vec<String> =
            futures::future::join_all((0..10).map(|_| greet_at(&client, gateway_at)))
                .await
                .into_iter()
                .flatten()
                .collect();
        (answers.len() == 10 && answers.iter().all(|a| a == "hello-v2")).then_some(())
    })
    .await;
    stop.store(true, Ordering::Relaxed);
    let seen = traffic.await.unwrap();
    eprintln!(
        "incremental upgrade: {} requests through the Gateway, {} failed, answers {:?}; \
         Serve target_capacity new {seen_new:?} old {seen_old:?}; route weights {weights:?}\n{}",
        seen.requests,
        seen.failures.len(),
        seen.answers,
        timeline.join("\n")
    );
    assert!(
        seen.failures.is_empty(),
        "{} of {} requests through the Gateway failed during the upgrade, e.g. {:?}\n\
         what the test saw, in seconds since the requests began:\n{}\n\
         requests the Gateway logged as slow (over 2 s) or failed:\n{}",
        seen.failures.len(),
        seen.requests,
        &seen.failures[..seen.failures.len().min(5)],
        timeline.join("\n"),
        troubled_requests(began_utc).join("\n")
    );
    assert_eq!(seen.answers, ["hello-v1", "hello-v2"], "{seen:?}");
    wait_deleted::<RayCluster>(&ns, &first, RAY_TIMEOUT).await;
}
