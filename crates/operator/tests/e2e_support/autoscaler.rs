//! The autoscaling scenario `e2e_autoscaler_v1` and `e2e_autoscaler_v2`
//! both run: the real Ray autoscaler (the sidecar the operator injects)
//! scales a worker group up for detached actors that need a CPU and down
//! once they are gone, through `replicas` and `workersToDelete`, with the
//! operator down while one scale-down is requested.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::ListParams;
use kuberay_api::RayCluster;
use kuberay_testenv::harness::{self, TestNamespace};
use serde_json::json;

use super::*;
use crate::support::cli::{kubectl, run, try_run};

/// Seconds a worker stays idle before the autoscaler removes it: short,
/// so the test does not wait minutes, long enough not to race the actor
/// placement.
const IDLE_SECONDS: i64 = 15;

/// The cluster the scenario scales: a head with no CPU for Ray (every actor
/// needs a worker), one group of 1-CPU workers from 0 up to 3, small
/// requests so three fit on this machine, and no `scaleStrategy` (the
/// autoscaler's first patch creates it).
pub fn cluster(name: &str, version: &str) -> serde_json::Value {
    json!({
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name},
        "spec": {
            "rayVersion": "2.52.0",
            "enableInTreeAutoscaling": true,
            "autoscalerOptions": {
                "version": version,
                "idleTimeoutSeconds": IDLE_SECONDS,
                "upscalingMode": "Default",
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
            },
            "headGroupSpec": {
                "rayStartParams": {"num-cpus": "0"},
                "template": {"spec": {"containers": [{
                    "name": "ray-head", "image": RAY_IMAGE,
                    "resources": {"requests": {"cpu": "100m", "memory": "1Gi"}, "limits": {"memory": "3Gi"}},
                }]}},
            },
            "workerGroupSpecs": [{
                "groupName": "small", "replicas": 0, "minReplicas": 0, "maxReplicas": 3,
                "rayStartParams": {"num-cpus": "1"},
                "template": {"spec": {"containers": [{
                    "name": "ray-worker", "image": RAY_IMAGE,
                    "resources": {"requests": {"cpu": "100m", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
                }]}},
            }],
        },
    })
}

/// Python run in the head: `hold NAME` starts a detached 1-CPU actor (and
/// returns at once: it stays pending until a worker joins), `where NAME`
/// prints the pod it runs in, `drop NAME` kills it, `workers` counts the
/// live Ray nodes with CPUs.
const DRIVER: &str = r#"
import socket, sys
import ray
ray.init(address="auto", namespace="e2e-autoscaler", logging_level="ERROR")

@ray.remote(num_cpus=1)
class Holder:
    def host(self):
        return socket.gethostname()

cmd, arg = sys.argv[1], (sys.argv[2] if len(sys.argv) > 2 else "")
if cmd == "hold":
    Holder.options(name=arg, lifetime="detached").remote()
elif cmd == "where":
    print("OUT=" + ray.get(ray.get_actor(arg).host.remote(), timeout=60))
elif cmd == "drop":
    ray.kill(ray.get_actor(arg))
elif cmd == "workers":
    print("OUT=%d" % sum(1 for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0))
"#;

fn driver(ns: &TestNamespace, head: &str, args: &[&str]) -> Result<String, String> {
    try_run(
        kubectl()
            .args(["exec", "-n", &ns.name, head, "-c", "ray-head", "--"])
            .args(["python", "-c", DRIVER])
            .args(args),
        None,
    )
    // Ray may print warnings of its own around the answer.
    .map(|out| {
        out.lines()
            .find_map(|l| l.trim().strip_prefix("OUT="))
            .unwrap_or(out.trim())
            .to_string()
    })
}

/// Waits for `check`; a timeout panics with the namespace's pods, their
/// descriptions and logs (the autoscaler's included).
async fn wait<T, F, Fut>(ns: &TestNamespace, what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    match tokio::time::timeout(
        RAY_TIMEOUT,
        harness::wait_until(what, RAY_TIMEOUT * 2, check),
    )
    .await
    {
        Ok(v) => v,
        Err(_) => panic!(
            "timed out waiting for {what}\n{}",
            namespace_report(&ns.name)
        ),
    }
}

async fn workers(ns: &TestNamespace, cluster: &str) -> Vec<Pod> {
    let lp =
        ListParams::default().labels(&format!("ray.io/cluster={cluster},ray.io/node-type=worker"));
    ns.api::<Pod>().list(&lp).await.unwrap().items
}

fn running(p: &Pod) -> bool {
    p.metadata.deletion_timestamp.is_none()
        && p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
}

/// The group's `replicas` and `workersToDelete` as the spec has them.
async fn group(ns: &TestNamespace, cluster: &str) -> (i32, Vec<String>) {
    let rc = ns.api::<RayCluster>().get(cluster).await.unwrap();
    let g = &rc.spec.worker_group_specs.unwrap()[0];
    let to_delete = g
        .scale_strategy
        .as_ref()
        .and_then(|s| s.workers_to_delete.clone())
        .unwrap_or_default();
    (g.replicas.unwrap_or_default(), to_delete)
}

/// Waits until Ray has `n` live workers and the group has `n` running
/// pods; their names.
async fn scaled_to(ns: &TestNamespace, cluster: &str, head: &str, n: usize) -> BTreeSet<String> {
    wait(
        ns,
        &format!("{n} running workers that Ray sees"),
        || async {
            let pods = workers(ns, cluster).await;
            let names: BTreeSet<String> = pods
                .iter()
                .filter(|p| running(p))
                .map(|p| p.name_any())
                .collect();
            let all_live = pods
                .iter()
                .filter(|p| p.metadata.deletion_timestamp.is_none())
                .count();
            if names.len() != n || all_live != n {
                return None;
            }
            let seen: usize = driver(ns, head, &["workers"]).ok()?.parse().ok()?;
            (seen == n).then_some(names)
        },
    )
    .await
}

fn scale_operator(replicas: u32) {
    run(
        kubectl().args([
            "scale",
            "deployment/kuberay-operator",
            "-n",
            OPERATOR_NAMESPACE,
            &format!("--replicas={replicas}"),
        ]),
        None,
    );
}

async fn operator_pods() -> usize {
    let api: kube::Api<Pod> = kube::Api::namespaced(harness::client().await, OPERATOR_NAMESPACE);
    api.list(&ListParams::default().labels("app.kubernetes.io/name=kuberay-operator"))
        .await
        .unwrap()
        .items
        .len()
}

async fn event_messages(ns: &TestNamespace, reason: &str) -> Vec<String> {
    let api: kube::Api<k8s_openapi::api::events::v1::Event> =
        kube::Api::namespaced(harness::client().await, &ns.name);
    api.list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(reason))
        .filter_map(|e| e.note)
        .collect()
}

/// The whole scenario for autoscaler `version` ("v1" or "v2").
pub async fn scales_up_on_demand_and_down_when_idle(version: &str) {
    let _permit = harness::ray_permit().await;
    operator_installed().await;
    let ns = harness::real_namespace(&format!("e2e-as-{version}")).await;
    let name = "autoscale";
    apply_json::<RayCluster>(&ns, cluster(name, version)).await;
    let head = wait(
        &ns,
        "the head pod with its autoscaler running and ready",
        || async {
            let head = super::live_ray_pods(&ns, name, "head")
                .await
                .into_iter()
                .next()?;
            let statuses = head.status.as_ref()?.container_statuses.clone()?;
            (statuses.len() == 2 && statuses.iter().all(|c| c.ready)).then_some(head)
        },
    )
    .await;
    let head_name = head.name_any();
    let head_uid = head.uid().unwrap();
    assert!(
        workers(&ns, name).await.is_empty(),
        "replicas 0 starts no worker"
    );

    // Up, one actor at a time: 0 -> 1 -> 2.
    driver(&ns, &head_name, &["hold", "a0"]).unwrap();
    let one = scaled_to(&ns, name, &head_name, 1).await;
    let a0_pod = driver(&ns, &head_name, &["where", "a0"]).unwrap();
    assert!(
        one.contains(&a0_pod),
        "a0 runs in {a0_pod}, workers are {one:?}"
    );
    driver(&ns, &head_name, &["hold", "a1"]).unwrap();
    let two = scaled_to(&ns, name, &head_name, 2).await;
    let a1_pod = driver(&ns, &head_name, &["where", "a1"]).unwrap();
    assert!(
        two.contains(&a1_pod) && a1_pod != a0_pod,
        "a1 runs in {a1_pod}, workers are {two:?}"
    );
    assert_eq!(group(&ns, name).await.0, 2);
    let scaled = event_messages(&ns, "ScaledWorkerGroup").await;
    for step in ["small 0 -> 1", "small 1 -> 2"] {
        assert!(
            scaled
                .iter()
                .any(|m| m.contains(step) && m.contains("autoscaler")),
            "no event says {step}: {scaled:?}"
        );
    }

    // Down, with the operator away when the autoscaler asks: the request
    // waits in the spec, and the operator that comes back deletes exactly
    // the idle pod.
    scale_operator(0);
    wait(&ns, "the operator to stop", || async {
        (operator_pods().await == 0).then_some(())
    })
    .await;
    driver(&ns, &head_name, &["drop", "a1"]).unwrap();
    let (replicas, listed) = wait(
        &ns,
        "the autoscaler to ask for the idle worker's removal",
        || async {
            let (r, listed) = group(&ns, name).await;
            (!listed.is_empty()).then_some((r, listed))
        },
    )
    .await;
    assert_eq!(replicas, 1, "workersToDelete {listed:?}");
    assert_eq!(
        listed,
        std::slice::from_ref(&a1_pod),
        "exactly the idle worker is named"
    );
    let still: BTreeSet<String> = workers(&ns, name)
        .await
        .iter()
        .map(|p| p.name_any())
        .collect();
    assert_eq!(still, two, "nothing is deleted while the operator is away");
    scale_operator(1);
    let left = scaled_to(&ns, name, &head_name, 1).await;
    assert_eq!(
        left,
        BTreeSet::from([a0_pod.clone()]),
        "only the idle worker went"
    );
    wait(&ns, "workersToDelete to be emptied", || async {
        group(&ns, name).await.1.is_empty().then_some(())
    })
    .await;
    assert_eq!(
        driver(&ns, &head_name, &["where", "a0"]).unwrap(),
        a0_pod,
        "the busy worker kept its actor"
    );

    // Down to zero.
    driver(&ns, &head_name, &["drop", "a0"]).unwrap();
    wait(
        &ns,
        "the group back at 0 with an empty workersToDelete",
        || async {
            let (r, listed) = group(&ns, name).await;
            (r == 0 && listed.is_empty() && workers(&ns, name).await.is_empty()).then_some(())
        },
    )
    .await;
    let head_now = ray_pod(&ns, name, "head").await;
    assert_eq!(
        head_now.uid().unwrap(),
        head_uid,
        "scaling never rebuilds the head"
    );
}
