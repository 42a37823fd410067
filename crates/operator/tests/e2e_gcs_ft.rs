//! GCS fault tolerance on real nodes with a real Redis (Debian's
//! `redis-server`, run from the Ray image, its password in a Secret): a
//! detached actor outlives its head pod, the workers ride out the restart,
//! deletion removes the cluster's keys from Redis, and with Redis gone the
//! deletion still ends, with a Warning saying what may be left. And the
//! embedded store: KubeRay's `ray-cluster.embedded-gcs-ft.yaml`, unchanged,
//! keeps its GCS in RocksDB on a claim the test control plane's host-path
//! provisioner binds, and a detached actor outlives the head the same way.
//!
//! Every test here is named `e2e_*` (see `tests/e2e.rs`).

mod e2e_support;
mod support;

use std::time::{Duration, Instant};

use e2e_support::*;
use k8s_openapi::api::core::v1::{PersistentVolume, PersistentVolumeClaim, Pod};
use kube::ResourceExt;
use kube::api::DeleteParams;
use kuberay_api::RayCluster;
use kuberay_testenv::harness::{self, TestNamespace, wait_until};
use kuberay_testenv::samples;
use support::cli::{kubectl, run, try_run};

const FINALIZER: &str = "ray.io/gcs-ft-redis-cleanup-finalizer";
/// The embedded store is alpha in KubeRay v1.7, off unless asked for; every
/// test here runs with it on (it only widens what is accepted).
const EMBEDDED_GATE: &[&str] =
    &[r#"featureGates=[{"name":"GCSFaultToleranceEmbeddedStorage","enabled":true}]"#];

/// A small cluster keeping its GCS in that Redis; the head runs no tasks,
/// so the actor lives on a worker that must outlast the head.
fn cluster_manifest(name: &str, workers: i32, annotations: &str) -> String {
    format!(
        r#"
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: {name}
  annotations: {{{annotations}}}
spec:
  rayVersion: "2.52.0"
  gcsFaultToleranceOptions:
    redisAddress: "redis:6379"
    redisPassword:
      valueFrom: {{secretKeyRef: {{name: redis-auth, key: password}}}}
  headGroupSpec:
    rayStartParams: {{num-cpus: "0"}}
    template:
      spec:
        containers:
        - name: ray-head
          image: {RAY_IMAGE}
          resources:
            requests: {{cpu: 500m, memory: 1Gi}}
            limits: {{cpu: "1", memory: 2Gi}}
  workerGroupSpecs:
  - groupName: small
    replicas: {workers}
    minReplicas: 0
    maxReplicas: 2
    rayStartParams: {{num-cpus: "1"}}
    template:
      spec:
        containers:
        - name: ray-worker
          image: {RAY_IMAGE}
          resources:
            requests: {{cpu: 500m, memory: 1Gi}}
            limits: {{cpu: "1", memory: 2Gi}}
"#
    )
}

fn exec(ns: &TestNamespace, pod: &str, container: &str, cmd: &[&str]) -> String {
    run(
        kubectl()
            .args(["exec", "-n", &ns.name, pod, "-c", container, "--"])
            .args(cmd),
        None,
    )
}

/// The Redis keys whose name holds `namespace` (Ray prefixes every key of
/// a cluster with its storage namespace).
fn redis_keys(ns: &TestNamespace, namespace: &str) -> usize {
    let script = format!(
        "redis-cli -a \"$REDIS_PASSWORD\" --no-auth-warning --scan --pattern '*{namespace}*'"
    );
    exec(ns, "redis", "redis", &["bash", "-c", &script])
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

fn ready_condition(rc: &RayCluster, type_: &str) -> Option<String> {
    rc.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| c.status.clone())
}

async fn wait_cluster<T>(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&RayCluster) -> Option<T>,
) -> T {
    let api = ns.api::<RayCluster>();
    let found = tokio::time::timeout(
        RAY_TIMEOUT,
        wait_until(what, RAY_TIMEOUT * 2, || async {
            check(&api.get(name).await.ok()?)
        }),
    )
    .await;
    found.unwrap_or_else(|_| {
        let report = namespace_report(&ns.name);
        let status = try_run(
            kubectl().args(["get", "raycluster", name, "-n", &ns.name, "-o", "yaml"]),
            None,
        )
        .unwrap_or_else(|e| e);
        panic!(
            "{name}: {what} not seen in {}s\n{status}{report}",
            RAY_TIMEOUT.as_secs()
        )
    })
}

/// How long RayCluster `name` took to go, waiting at most `within`.
async fn deletion_time(ns: &TestNamespace, name: &str, within: Duration) -> Duration {
    let started = Instant::now();
    support::wait_deleted::<RayCluster>(ns, name, within).await;
    started.elapsed()
}

async fn warnings(ns: &TestNamespace, name: &str) -> Vec<(String, String)> {
    support::events(ns, name)
        .await
        .into_iter()
        .filter(|(t, _, _)| t == "Warning")
        .map(|(_, r, n)| (r, n))
        .collect()
}

const ACTOR: &str = r#"
import ray
ray.init(address="auto", namespace="gcsft", logging_level="ERROR")

@ray.remote
class Counter:
    def __init__(self):
        self.n = 0

    def incr(self):
        self.n += 1
        return self.n

c = Counter.options(name="counter", lifetime="detached").remote()
print("count", ray.get(c.incr.remote()))
"#;

const CALL_ACTOR: &str = r#"
import ray
ray.init(address="auto", namespace="gcsft", logging_level="ERROR")
print("count", ray.get(ray.get_actor("counter").incr.remote(), timeout=60))
"#;

#[tokio::test]
async fn e2e_a_head_restart_keeps_the_cluster_state_and_deletion_cleans_redis() {
    let _permit = harness::ray_permit().await;
    operator_installed_with(EMBEDDED_GATE).await;
    let ns = harness::real_namespace("e2e-gcsft").await;
    apply_documents(&ns, &redis_manifest()).await;
    let rc: RayCluster = apply_yaml(&ns, &cluster_manifest("ft", 1, "")).await;
    let uid = rc.uid().unwrap();

    wait_cluster(&ns, "ft", "the cluster ready", |rc| {
        (rc.status.as_ref()?.state.as_ref()?.to_string() == "ready").then_some(())
    })
    .await;
    let rc = ns.api::<RayCluster>().get("ft").await.unwrap();
    assert!(
        rc.finalizers().iter().any(|f| f == FINALIZER),
        "{:?}",
        rc.finalizers()
    );
    let head = ray_pod(&ns, "ft", "head").await;
    let worker = ray_pod(&ns, "ft", "worker").await;
    let restarts = |p: &Pod| -> i32 {
        p.status
            .as_ref()
            .and_then(|s| s.container_statuses.as_ref())
            .map_or(0, |cs| cs.iter().map(|c| c.restart_count).sum())
    };
    let worker_restarts = restarts(&worker);

    let out = exec(&ns, &head.name_any(), "ray-head", &["python", "-c", ACTOR]);
    assert!(out.contains("count 1"), "{out}");
    // The GCS wrote to Redis under the cluster's UID.
    assert!(
        redis_keys(&ns, &uid) > 0,
        "no key of namespace {uid} in Redis"
    );

    // The head goes; a new one comes, and the status says so meanwhile.
    let started = Instant::now();
    ns.api::<Pod>()
        .delete(&head.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    wait_cluster(&ns, "ft", "HeadPodReady False", |rc| {
        (ready_condition(rc, "HeadPodReady")? == "False").then_some(())
    })
    .await;
    let new_head = wait_cluster(&ns, "ft", "HeadPodReady True on a new head", |rc| {
        let s = rc.status.as_ref()?;
        let pod = s.head.as_ref()?.pod_name.clone()?;
        (ready_condition(rc, "HeadPodReady")? == "True" && pod != head.name_any()).then_some(pod)
    })
    .await;
    let rc = ns.api::<RayCluster>().get("ft").await.unwrap();
    assert_eq!(
        ready_condition(&rc, "RayClusterProvisioned").as_deref(),
        Some("True")
    );
    eprintln!("new head {new_head} ready after {:?}", started.elapsed());

    // The detached actor is still known to the new GCS and answers with
    // the state it kept on the worker.
    let out = exec(&ns, &new_head, "ray-head", &["python", "-c", CALL_ACTOR]);
    assert!(out.contains("count 2"), "{out}");
    // The worker reconnected: same pod, no container restart.
    let worker_now = ray_pod(&ns, "ft", "worker").await;
    assert_eq!(worker_now.uid(), worker.uid());
    assert_eq!(
        restarts(&worker_now),
        worker_restarts,
        "the worker restarted"
    );
    let nodes = exec(
        &ns,
        &new_head,
        "ray-head",
        &[
            "python",
            "-c",
            "import ray; ray.init(address='auto', logging_level='ERROR'); print('alive', sum(n['Alive'] for n in ray.nodes()))",
        ],
    );
    assert!(nodes.contains("alive 2"), "{nodes}");

    // Deletion: the Ray pods go, the clean-up Job empties Redis, the
    // finalizer goes.
    ns.api::<RayCluster>()
        .delete("ft", &DeleteParams::background())
        .await
        .unwrap();
    let took = deletion_time(&ns, "ft", RAY_TIMEOUT).await;
    eprintln!("cluster deleted {took:?} after the request");
    assert_eq!(redis_keys(&ns, &uid), 0, "keys of {uid} left in Redis");
    let events = support::events(&ns, "ft").await;
    assert!(
        events.iter().any(|(_, r, _)| r == "CreatedRedisCleanupJob"),
        "{events:?}"
    );
    assert!(warnings(&ns, "ft").await.is_empty(), "{events:?}");

    // Redis down: deletion still ends, within the bound, and says what
    // may be left behind.
    let bound = 180;
    let annotations = format!("ray.io/gcs-ft-deletion-timeout: \"{bound}\"");
    let down: RayCluster = apply_yaml(&ns, &cluster_manifest("ftdown", 0, &annotations)).await;
    let down_uid = down.uid().unwrap();
    wait_cluster(&ns, "ftdown", "the head running", |rc| {
        rc.status.as_ref()?.head.as_ref()?.pod_ip.clone()
    })
    .await;
    ns.api::<Pod>()
        .delete("redis", &DeleteParams::default())
        .await
        .unwrap();
    support::wait_deleted::<Pod>(&ns, "redis", RAY_TIMEOUT).await;
    ns.api::<RayCluster>()
        .delete("ftdown", &DeleteParams::background())
        .await
        .unwrap();
    let took = deletion_time(&ns, "ftdown", Duration::from_secs(bound + 60)).await;
    eprintln!("with Redis down, cluster deleted {took:?} after the request");
    assert!(took < Duration::from_secs(bound + 30), "took {took:?}");
    let warned = warnings(&ns, "ftdown").await;
    let left = warned
        .iter()
        .find(|(r, _)| r == "RedisCleanupFailed" || r == "ForceDeletedStuckCluster")
        .unwrap_or_else(|| panic!("no warning about Redis: {warned:?}"));
    eprintln!("warning: {left:?}");
    assert!(left.1.contains(&down_uid), "{left:?}");
    assert!(left.1.contains("redis:6379"), "{left:?}");
}

#[tokio::test]
async fn e2e_the_embedded_store_on_a_claim_keeps_the_state_across_a_head_restart() {
    let _permit = harness::ray_permit().await;
    operator_installed_with(EMBEDDED_GATE).await;
    let ns = harness::real_namespace("e2e-gcsrocks").await;
    let name = "raycluster-embedded-gcs-ft";
    let claim_name = format!("{name}-gcs-pvc");
    let rc: RayCluster =
        apply_yaml(&ns, &samples::required("ray-cluster.embedded-gcs-ft.yaml")).await;
    wait_cluster(&ns, name, "the cluster ready", |rc| {
        (rc.status.as_ref()?.state.as_ref()?.to_string() == "ready").then_some(())
    })
    .await;

    // The claim was made for the cluster, owned by it, and bound by the
    // control plane's default class; the head mounts it.
    let claim = ns
        .api::<PersistentVolumeClaim>()
        .get(&claim_name)
        .await
        .unwrap();
    assert_eq!(
        claim.status.as_ref().and_then(|s| s.phase.as_deref()),
        Some("Bound")
    );
    assert!(
        claim
            .owner_references()
            .iter()
            .any(|o| o.uid == rc.uid().unwrap()),
        "{:?}",
        claim.owner_references()
    );
    let volume = claim.spec.as_ref().unwrap().volume_name.clone().unwrap();
    let head = ray_pod(&ns, name, "head").await;
    let stored = exec(
        &ns,
        &head.name_any(),
        "ray-head",
        &["ls", "-A", "/data/gcs"],
    );
    assert!(!stored.trim().is_empty(), "nothing written under /data/gcs");

    let out = exec(&ns, &head.name_any(), "ray-head", &["python", "-c", ACTOR]);
    assert!(out.contains("count 1"), "{out}");
    ns.api::<Pod>()
        .delete(&head.name_any(), &DeleteParams::default())
        .await
        .unwrap();
    let new_head = wait_cluster(&ns, name, "HeadPodReady True on a new head", |rc| {
        let s = rc.status.as_ref()?;
        let pod = s.head.as_ref()?.pod_name.clone()?;
        (ready_condition(rc, "HeadPodReady")? == "True" && pod != head.name_any()).then_some(pod)
    })
    .await;
    // A GCS without its state would know no actor named counter: the new
    // head read it back from RocksDB on the claim.
    let out = exec(&ns, &new_head, "ray-head", &["python", "-c", CALL_ACTOR]);
    assert!(out.contains("count 2"), "{out}");

    // DeleteWithCluster (the default): the claim goes with the cluster and
    // the provisioner removes the released volume.
    ns.api::<RayCluster>()
        .delete(name, &DeleteParams::background())
        .await
        .unwrap();
    support::wait_deleted::<RayCluster>(&ns, name, RAY_TIMEOUT).await;
    wait_until("the claim and its volume gone", RAY_TIMEOUT, || async {
        let claim = ns
            .api::<PersistentVolumeClaim>()
            .get_opt(&claim_name)
            .await
            .ok()?;
        let pv = kube::Api::<PersistentVolume>::all(ns.client.clone())
            .get_opt(&volume)
            .await
            .ok()?;
        (claim.is_none() && pv.is_none()).then_some(())
    })
    .await;
}
