//! Running the operator inside a test: one instance per test, scoped to the
//! test's namespace so tests never share (or fight over) a cluster, on a
//! runtime of its own so it outlives the test's awaits and can be killed
//! abruptly like a crashed process.

#![allow(dead_code)]

pub mod cli;
pub mod fake_dashboard;
pub mod rayservice;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::events::v1::Event;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kuberay_api::RayCluster;
use kuberay_operator::controllers::{self, Shared};
use kuberay_operator::kit::clock::{Clock, SystemClock};
use kuberay_operator::kit::runner::Env;
use kuberay_operator::runtime::client::{RequestCounts, counted};
use kuberay_operator::runtime::config::Config;
use kuberay_operator::runtime::manager::stop_on;
use kuberay_testenv::harness::{self, TestNamespace, wait_until};
use serde_json::json;

pub const TIMEOUT: Duration = Duration::from_secs(90);

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

pub struct Operator {
    stop: Option<std::sync::mpsc::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    pub requests: RequestCounts,
    pub metrics: std::sync::Arc<kuberay_operator::runtime::metrics::Metrics>,
}

impl Operator {
    /// Starts the controllers for namespace `ns`, reaching dashboards directly.
    pub fn start(ns: &str, cfg: Config) -> Self {
        Self::start_with(
            ns,
            cfg,
            std::sync::Arc::new(kuberay_operator::ray::dashboard::DirectDashboards),
        )
    }

    /// Starts the controllers for namespace `ns`, reaching dashboards through `dashboards`.
    pub fn start_with(
        ns: &str,
        cfg: Config,
        dashboards: std::sync::Arc<dyn kuberay_operator::ray::dashboard::Dashboards>,
    ) -> Self {
        Self::start_as(ns, cfg, dashboards, harness::kubeconfig().to_path_buf())
    }

    /// Like [`Operator::start_with`], with the credentials of `kubeconfig`
    /// (a ServiceAccount's, to test RBAC).
    pub fn start_as(
        ns: &str,
        cfg: Config,
        dashboards: std::sync::Arc<dyn kuberay_operator::ray::dashboard::Dashboards>,
        kubeconfig: std::path::PathBuf,
    ) -> Self {
        Self::start_timed(
            ns,
            cfg,
            dashboards,
            std::sync::Arc::new(SystemClock),
            kubeconfig,
        )
    }

    /// Like [`Operator::start_as`], reading the time from `clock`.
    pub fn start_timed(
        ns: &str,
        cfg: Config,
        dashboards: std::sync::Arc<dyn kuberay_operator::ray::dashboard::Dashboards>,
        clock: std::sync::Arc<dyn Clock>,
        kubeconfig: std::path::PathBuf,
    ) -> Self {
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let ns = ns.to_string();
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            let (client, counts) = rt.block_on(async {
                let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
                let config = kube::Config::from_custom_kubeconfig(kc, &Default::default())
                    .await
                    .unwrap();
                counted(config).unwrap()
            });
            let env = Env {
                events_client: client.clone(),
                client,
                scope: kuberay_operator::kit::scope::Scope::namespaces_of([ns]),
                concurrency: 8,
                metrics: kuberay_operator::runtime::metrics::Metrics::new(true, counts.clone()),
                readiness: Default::default(),
            };
            ready_tx.send((counts, env.metrics.clone())).unwrap();
            let shared = Shared {
                env,
                cfg,
                dashboards,
                clock,
            };
            rt.spawn(controllers::run(shared, stop_on(std::future::pending())));
            let _ = stop_rx.recv();
            // Abrupt, like a killed process: in-flight work is dropped.
            rt.shutdown_background();
        });
        let (requests, metrics) = ready_rx.recv().unwrap();
        Self {
            stop: Some(stop_tx),
            thread: Some(thread),
            requests,
            metrics,
        }
    }

    /// Stops the operator at once, mid-reconcile if need be.
    pub fn kill(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Operator logs show with a failing test's output (RUST_LOG to tune).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "warn,kube_client::client::builder=off".into()),
        )
        .with_test_writer()
        .try_init();
}

/// A namespace with the CRDs installed and an operator watching it.
pub async fn setup(prefix: &str, cfg: Config) -> (TestNamespace, Operator) {
    init_logs();
    harness::install_crds().await;
    let ns = harness::namespace(prefix).await;
    let op = Operator::start(&ns.name, cfg);
    (ns, op)
}

/// Server-side applies a manifest (YAML) into the test namespace.
pub async fn apply<K>(ns: &TestNamespace, yaml: &str) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let mut obj: K = serde_yaml::from_str(yaml).unwrap();
    obj.meta_mut().namespace = Some(ns.name.clone());
    let name = obj.meta().name.clone().unwrap();
    ns.api::<K>()
        .patch(
            &name,
            &PatchParams::apply("kuberay-tests").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap()
}

/// The cluster's pods of one node type (`head`, `worker`), terminating ones excluded.
pub async fn pods(ns: &TestNamespace, cluster: &str, node_type: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!(
        "ray.io/cluster={cluster},ray.io/node-type={node_type}"
    ));
    let list = ns.api::<Pod>().list(&lp).await.unwrap();
    list.items
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Waits until the cluster has exactly `workers` workers and one head, all Running.
pub async fn wait_running(ns: &TestNamespace, cluster: &str, workers: usize) -> (Pod, Vec<Pod>) {
    wait_until(
        &format!("{cluster}: a Running head and {workers} Running workers"),
        TIMEOUT,
        || async {
            let heads = pods(ns, cluster, "head").await;
            let ws = pods(ns, cluster, "worker").await;
            let running =
                |p: &Pod| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
            (heads.len() == 1 && ws.len() == workers && heads.iter().chain(&ws).all(running))
                .then(|| (heads[0].clone(), ws))
        },
    )
    .await
}

/// Waits for the cluster's status to satisfy `check`.
pub async fn wait_status(
    ns: &TestNamespace,
    cluster: &str,
    what: &str,
    check: impl Fn(&RayCluster) -> bool,
) -> RayCluster {
    wait_for(ns, cluster, what, check).await
}

pub fn condition(rc: &RayCluster, type_: &str) -> Option<(String, String, String)> {
    let c = rc
        .status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == type_)?;
    Some((c.status.clone(), c.reason.clone(), c.message.clone()))
}

/// The events about object `name`, as (type, reason, note).
pub async fn events(ns: &TestNamespace, name: &str) -> Vec<(String, String, String)> {
    let api: Api<Event> = Api::namespaced(ns.client.clone(), &ns.name);
    let list = api.list(&ListParams::default()).await.unwrap();
    list.items
        .into_iter()
        .filter(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some(name))
        .map(|e| {
            (
                e.type_.unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.note.unwrap_or_default(),
            )
        })
        .collect()
}

/// The events about `name` once each of `reasons` is among them. The
/// operator records an event after the change it reports (a delete, a
/// status write), so a test that has just seen the change waits for its
/// event instead of listing at once.
pub async fn wait_events(
    ns: &TestNamespace,
    name: &str,
    reasons: &[&str],
) -> Vec<(String, String, String)> {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    loop {
        let seen = events(ns, name).await;
        let missing: Vec<_> = reasons
            .iter()
            .filter(|r| !seen.iter().any(|e| e.1 == **r))
            .collect();
        if missing.is_empty() {
            return seen;
        }
        if tokio::time::Instant::now() > deadline {
            panic!("no {missing:?} event about {name} within {TIMEOUT:?}: {seen:?}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// Completes (or fails) the simulated submitter pod, as a real `ray job`
/// command would on exit.
pub async fn finish_submitter(ns: &TestNamespace, job: &str, exit_code: i32) {
    let pods = ns.api::<Pod>();
    let lp = ListParams::default().labels(&format!("job-name={job}"));
    let pod = wait_until("the submitter pod", TIMEOUT, || async {
        pods.list(&lp)
            .await
            .ok()?
            .items
            .into_iter()
            .find(|p| p.metadata.deletion_timestamp.is_none())
    })
    .await;
    let now = jiff::Timestamp::now().to_string();
    let phase = if exit_code == 0 {
        "Succeeded"
    } else {
        "Failed"
    };
    let patch = json!({"status": {"phase": phase, "containerStatuses": [{
        "name": "ray-job-submitter", "image": "rayproject/ray:2.52.0", "imageID": "", "ready": false, "restartCount": 0,
        "state": {"terminated": {"exitCode": exit_code, "reason": if exit_code == 0 {"Completed"} else {"Error"}, "startedAt": now, "finishedAt": now}}
    }]}});
    pods.patch_status(
        &pod.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&patch),
    )
    .await
    .unwrap();
}

/// The API calls counted in an operator's `/metrics` text.
pub fn calls_in_metrics(text: &str) -> Vec<kuberay_operator::runtime::client::ApiCall> {
    let label = |line: &str, name: &str| -> Option<String> {
        let start = line.find(&format!("{name}=\""))? + name.len() + 2;
        let len = line[start..].find('"')?;
        Some(line[start..start + len].to_string())
    };
    text.lines()
        .filter(|l| l.starts_with("kuberay_kube_client_requests_total{"))
        .filter_map(|l| {
            Some(kuberay_operator::runtime::client::ApiCall {
                verb: label(l, "verb")?,
                group: label(l, "group")?,
                resource: label(l, "resource")?,
            })
        })
        .collect()
}

/// A RayJob with a one-worker cluster; `extra` is merged into its spec.
pub fn rayjob(name: &str, extra: serde_json::Value) -> String {
    let mut v = json!({
        "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name},
        "spec": {
            "entrypoint": "python -c 'print(1)'",
            "rayClusterSpec": {
                "rayVersion": "2.52.0",
                "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.52.0"}]}}},
                "workerGroupSpecs": [{"groupName": "w", "replicas": 1, "minReplicas": 0, "maxReplicas": 2, "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.52.0"}]}}}]
            },
            // Simulated submitter pods wait for the test to finish them.
            "submitterPodTemplate": {"metadata": {"annotations": {"sim.kuberay-rs.dev/keep-running": "true"}},
                "spec": {"restartPolicy": "Never", "containers": [{"name": "ray-job-submitter", "image": "rayproject/ray:2.52.0"}]}}
        }
    });
    for (k, val) in extra.as_object().unwrap() {
        if val.is_null() {
            v["spec"].as_object_mut().unwrap().remove(k);
        } else {
            v["spec"][k] = val.clone();
        }
    }
    serde_yaml::to_string(&v).unwrap()
}

/// A RayCluster `rbac` with a child of every kind the operator makes: the
/// autoscaler's ServiceAccount, Role and RoleBinding, the auth token Secret,
/// the head ingress, and one worker.
pub const CLUSTER_WITH_EVERY_CHILD: &str = r#"
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: rbac
spec:
  rayVersion: "2.52.0"
  enableInTreeAutoscaling: true
  authOptions: {mode: token}
  headGroupSpec:
    enableIngress: true
    rayStartParams: {}
    template:
      spec:
        containers: [{name: ray-head, image: "rayproject/ray:2.52.0"}]
  workerGroupSpecs:
  - groupName: w
    replicas: 1
    minReplicas: 0
    maxReplicas: 3
    rayStartParams: {}
    template:
      spec:
        containers: [{name: ray-worker, image: "rayproject/ray:2.52.0"}]
"#;

/// Waits for every child of [`CLUSTER_WITH_EVERY_CHILD`] but its pods;
/// under RBAC, a refused request shows as a child that never appears.
pub async fn wait_every_child(ns: &TestNamespace) {
    use k8s_openapi::api::core::v1::{Secret, ServiceAccount};
    use k8s_openapi::api::networking::v1::Ingress;
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    wait_until(
        "the autoscaler's RBAC, token and ingress",
        TIMEOUT,
        || async {
            ns.api::<Role>().get_opt("rbac").await.ok()??;
            ns.api::<RoleBinding>().get_opt("rbac").await.ok()??;
            ns.api::<ServiceAccount>().get_opt("rbac").await.ok()??;
            ns.api::<Secret>().get_opt("rbac").await.ok()??;
            ns.api::<Ingress>()
                .get_opt("rbac-head-ingress")
                .await
                .ok()?
        },
    )
    .await;
}

/// A RayCluster with a head and one worker group `small` of `replicas`
/// (simulated nodes run them), as YAML.
pub fn cluster_yaml(name: &str, replicas: i32) -> String {
    format!(
        r#"
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: {name}
spec:
  rayVersion: "2.46.0"
  headGroupSpec:
    rayStartParams: {{}}
    template:
      spec:
        containers:
        - name: ray-head
          image: rayproject/ray:2.46.0
          resources: {{limits: {{cpu: "1", memory: 2Gi}}}}
  workerGroupSpecs:
  - groupName: small
    replicas: {replicas}
    minReplicas: 0
    maxReplicas: 100
    rayStartParams: {{}}
    template:
      spec:
        containers:
        - name: ray-worker
          image: rayproject/ray:2.46.0
          resources: {{limits: {{cpu: "1", memory: 1Gi}}}}
"#
    )
}

/// The first container of a Job's pod template.
pub fn job_container(
    job: &k8s_openapi::api::batch::v1::Job,
) -> &k8s_openapi::api::core::v1::Container {
    &job.spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap()
        .containers[0]
}

/// Waits until the `K` named `name` no longer exists.
pub async fn wait_deleted<K>(ns: &TestNamespace, name: &str, timeout: Duration)
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api = ns.api::<K>();
    wait_until(
        &format!("{} {name} deleted", K::kind(&())),
        timeout,
        || async { api.get_opt(name).await.ok()?.is_none().then_some(()) },
    )
    .await;
}

/// Stack of the thread [`watch_until`] watches on.
const WATCH_STACK: usize = 16 << 20;

/// Watches the `K` named `name` until a version of it satisfies `check`;
/// after `timeout`, `Err` with the last version seen, for the caller's
/// failure report. A watch hands over every version the API server
/// stores, so a state that lasts a moment (an upgrade or a retry finished
/// between two polls on a busy machine) is still seen; a poll can miss it.
pub async fn watch_until<K>(
    ns: &TestNamespace,
    name: &str,
    timeout: Duration,
    check: impl Fn(&K) -> bool,
) -> Result<K, Option<K>>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + 'static,
{
    use futures::StreamExt;
    use kube::runtime::{WatchStreamExt, watcher};
    // The watch runs on a thread of its own with a large stack: in a debug
    // build kube's watcher state machine takes about 1.2 MiB of stack to
    // poll and decoding a RayJob about 0.8 MiB more, past a test thread's
    // 2 MiB (it overflowed). Versions come back over a channel; dropping
    // the receiver or `stop` ends the thread.
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (namespace, watched) = (ns.name.clone(), name.to_string());
    std::thread::Builder::new()
        .name(format!("watch {watched}"))
        .stack_size(WATCH_STACK)
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            rt.block_on(async move {
                let api = Api::<K>::namespaced(harness::client().await, &namespace);
                let forward = async {
                    let mut versions = watcher::watch_object(api, &watched)
                        .default_backoff()
                        .boxed();
                    while let Some(v) = versions.next().await {
                        if let Ok(Some(k)) = v
                            && tx.send(k).is_err()
                        {
                            break;
                        }
                    }
                };
                tokio::select! {
                    _ = forward => {}
                    _ = stopped => {}
                }
            });
        })
        .unwrap();
    let mut last = None;
    let found = tokio::time::timeout(timeout, async {
        while let Some(k) = rx.recv().await {
            if check(&k) {
                return Some(k);
            }
            last = Some(k);
        }
        None
    })
    .await;
    let _ = stop.send(());
    found.ok().flatten().ok_or(last)
}

/// The `status` of a version [`watch_until`] saw last, as JSON, for a
/// failure report.
pub fn last_status<K: serde::Serialize>(last: &Option<K>) -> String {
    match last {
        None => "never seen".into(),
        Some(k) => {
            let status = serde_json::to_value(k).map(|v| v["status"].clone());
            let status = status.unwrap_or_default();
            serde_json::to_string_pretty(&status).unwrap_or_default()
        }
    }
}

/// [`watch_until`] within the suite's [`TIMEOUT`], panicking with `what`
/// and the last status seen.
pub async fn wait_for<K>(
    ns: &TestNamespace,
    name: &str,
    what: &str,
    check: impl Fn(&K) -> bool,
) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug
        + Send
        + 'static,
{
    watch_until(ns, name, TIMEOUT, check)
        .await
        .unwrap_or_else(|last| {
            panic!(
                "timed out after {}s waiting for {what}; last status: {}{}",
                TIMEOUT.as_secs(),
                last_status(&last),
                harness::health()
            )
        })
}
