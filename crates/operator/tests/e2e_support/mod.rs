//! What the end-to-end tests share: the operator installed once per test
//! binary with its chart, applying manifests, waiting for pods and jobs,
//! port-forwards, and reading the machine's state.

#![allow(dead_code)]

pub mod autoscaler;

use std::io::{BufRead, BufReader, Read, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{ListParams, LogParams, Patch, PatchParams};
use kuberay_api::RayJob;
use kuberay_testenv::harness::{self, TestNamespace, wait_until};
use kuberay_testenv::realnodes::images::operator_image;

use crate::support::cli::{helm, kubectl, repo, run, try_run};

/// Any `rayproject/ray` tag runs the one local image, whose Ray is the
/// version pinned in `hack/versions.env`.
pub const RAY_IMAGE: &str = "rayproject/ray:2.52.0";
/// Real Ray starts in tens of seconds; on a loaded two-core machine with
/// other clusters starting, a few minutes.
pub const RAY_TIMEOUT: Duration = Duration::from_secs(420);
pub const OPERATOR_NAMESPACE: &str = "kuberay-system";

/// Installs the operator once for the whole binary, as a KubeRay user
/// does: `helm install kuberay-operator helm-chart/kuberay-operator` with
/// the chart's defaults, its image built from this test's operator binary.
pub async fn operator_installed() {
    operator_installed_with(&[]).await
}

/// As [`operator_installed`], with chart values replaced by `--set-json`
/// arguments (e.g. a feature gate); the first call in a binary decides.
pub async fn operator_installed_with(set_json: &'static [&'static str]) {
    static INSTALLED: tokio::sync::OnceCell<()> = tokio::sync::OnceCell::const_new();
    INSTALLED
        .get_or_init(|| async {
            // Starts the control plane with real nodes if not yet there.
            let _ns = harness::real_namespace("e2e-operator").await;
            tokio::task::spawn_blocking(|| {
                let plane = harness::control_plane().expect(
                    "the end-to-end tests import the operator image into the nodes, which needs the control plane they start themselves (unset KUBERAY_TEST_KUBECONFIG)",
                );
                let binary = Path::new(env!("CARGO_BIN_EXE_kuberay-operator"));
                let image = operator_image(binary)
                    .unwrap_or_else(|e| panic!("building the operator image: {e}"));
                plane
                    .import_image(&image)
                    .unwrap_or_else(|e| panic!("importing the operator image: {e}"));
                let installed = try_run(
                    helm()
                        .arg(format!("--kubeconfig={}", harness::kubeconfig().display()))
                        .args(["install", "kuberay-operator"])
                        .arg(repo().join("helm-chart/kuberay-operator"))
                        .args(["--namespace", OPERATOR_NAMESPACE, "--create-namespace"])
                        .args(set_json.iter().flat_map(|v| ["--set-json", v]))
                        .args(["--wait", "--timeout", "5m"]),
                    None,
                );
                if let Err(e) = installed {
                    panic!(
                        "{e}\n{}{}",
                        namespace_report(OPERATOR_NAMESPACE),
                        harness::health()
                    );
                }
            })
            .await
            .expect("installing the operator panicked");
        })
        .await;
}

/// Applies one object given as JSON into the test's namespace.
pub async fn apply_json<K>(ns: &TestNamespace, value: serde_json::Value) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    apply_yaml(ns, &serde_yaml::to_string(&value).unwrap()).await
}

/// Applies one object given as YAML into the test's namespace.
pub async fn apply_yaml<K>(ns: &TestNamespace, yaml: &str) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + serde::Serialize
        + std::fmt::Debug,
{
    let mut obj: K = serde_yaml::from_str(yaml).unwrap();
    obj.meta_mut().namespace = Some(ns.name.clone());
    let name = obj.name_any();
    ns.api::<K>()
        .patch(
            &name,
            &PatchParams::apply("kuberay-e2e").force(),
            &Patch::Apply(&obj),
        )
        .await
        .unwrap_or_else(|e| panic!("applying {name}: {e}"))
}

/// Applies every document of a manifest, as `kubectl apply -f` does.
pub async fn apply_documents(ns: &TestNamespace, manifest: &str) {
    let manifest = manifest.to_string();
    let ns = ns.name.clone();
    tokio::task::spawn_blocking(move || {
        run(
            kubectl().args(["apply", "-n", &ns, "-f", "-"]),
            Some(&manifest),
        );
    })
    .await
    .unwrap();
}

fn phase(p: &Pod) -> &str {
    p.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or("")
}

/// Waits for a pod to finish and returns its log.
pub async fn wait_pod_done(ns: &TestNamespace, name: &str) -> String {
    let pods = ns.api::<Pod>();
    let pod = wait_until(&format!("pod {name} to finish"), RAY_TIMEOUT, || async {
        let p = pods.get(name).await.ok()?;
        matches!(phase(&p), "Succeeded" | "Failed").then_some(p)
    })
    .await;
    let logs = pods.logs(name, &LogParams::default()).await.unwrap();
    assert_eq!(
        phase(&pod),
        "Succeeded",
        "pod {name} failed; its log:\n{logs}"
    );
    logs
}

/// The one live pod of a cluster's node type (`head`, `worker`).
pub async fn ray_pod(ns: &TestNamespace, cluster: &str, node_type: &str) -> Pod {
    let live = live_ray_pods(ns, cluster, node_type).await;
    assert_eq!(live.len(), 1, "{cluster}: expected one {node_type} pod");
    live.into_iter().next().unwrap()
}

/// The pods of `cluster` of `node_type` (`head` or `worker`) not being
/// deleted; none if they cannot be listed (for polling).
pub async fn live_ray_pods(ns: &TestNamespace, cluster: &str, node_type: &str) -> Vec<Pod> {
    let lp = ListParams::default().labels(&format!(
        "ray.io/cluster={cluster},ray.io/node-type={node_type}"
    ));
    let list = ns.api::<Pod>().list(&lp).await.map(|l| l.items);
    list.unwrap_or_default()
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .collect()
}

/// Waits until a RayJob's deployment is Complete or Failed; a timeout
/// reports its last status and its pods.
pub async fn wait_job_finished(ns: &TestNamespace, name: &str) -> RayJob {
    let api = ns.api::<RayJob>();
    let deadline = tokio::time::Instant::now() + RAY_TIMEOUT;
    loop {
        if let Ok(job) = api.get(name).await {
            let done = job
                .status
                .as_ref()
                .and_then(|s| s.job_deployment_status.as_ref())
                .is_some_and(|d| matches!(d.to_string().as_str(), "Complete" | "Failed"));
            if done {
                return job;
            }
            if tokio::time::Instant::now() > deadline {
                let pods = run(
                    kubectl().args(["get", "pods", "-n", &ns.name, "-o", "wide"]),
                    None,
                );
                panic!(
                    "RayJob {name} did not finish in {}s; status: {:?}\npods:\n{pods}{}{}",
                    RAY_TIMEOUT.as_secs(),
                    job.status,
                    namespace_report(&ns.name),
                    harness::health()
                );
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

/// The log of the pod of the Job named `job` (a K8sJobMode submitter).
pub async fn job_pod_logs(ns: &TestNamespace, job: &str) -> String {
    let pods = ns.api::<Pod>();
    let lp = ListParams::default().labels(&format!("job-name={job}"));
    let list = pods.list(&lp).await.unwrap();
    let mut out = String::new();
    for p in list.items {
        out += &pods
            .logs(&p.name_any(), &LogParams::default())
            .await
            .unwrap_or_default();
    }
    out
}

/// A RayJob with a head-only cluster small enough to run beside others.
pub fn small_rayjob(name: &str, mode: &str, entrypoint: &str) -> String {
    serde_yaml::to_string(&serde_json::json!({
        "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": name},
        "spec": {
            "submissionMode": mode,
            "entrypoint": entrypoint,
            "rayClusterSpec": {
                "rayVersion": "2.52.0",
                "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{
                    "name": "ray-head", "image": RAY_IMAGE,
                    "resources": {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}},
                }]}}},
            },
        },
    }))
    .unwrap()
}

/// How many packets the slot's egress firewall has refused so far.
pub fn egress_rejections() -> u64 {
    let plane = harness::control_plane().expect("a control plane started by this binary");
    let slot = plane.real_nodes().expect("real nodes").slot();
    let out = run(
        Command::new("ip")
            .args(["netns", "exec", &slot.netns(), "iptables", "-w", "-L"])
            .args([
                kuberay_testenv::realnodes::slot::EGRESS_CHAIN,
                "-v",
                "-n",
                "-x",
            ]),
        None,
    );
    out.lines()
        .find(|l| l.contains("REJECT"))
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no REJECT rule in the egress chain:\n{out}"))
}

/// `kubectl port-forward` to a local port, stopped on drop.
pub struct PortForward {
    child: Child,
    pub port: u16,
}

impl PortForward {
    pub fn start(namespace: &str, target: &str, remote: u16) -> Self {
        let mut child = kubectl()
            .args([
                "port-forward",
                "-n",
                namespace,
                target,
                &format!(":{remote}"),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let first = lines.next().and_then(Result::ok).unwrap_or_default();
        // "Forwarding from 127.0.0.1:40123 -> 8265"
        let port = first
            .split("127.0.0.1:")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .and_then(|p| p.parse().ok());
        let Some(port) = port else {
            let _ = child.kill();
            let mut err = String::new();
            let _ = child.stderr.take().unwrap().read_to_string(&mut err);
            panic!("kubectl port-forward {target} did not start: {first}{err}");
        };
        // Keep draining stdout so kubectl never blocks on a full pipe.
        std::thread::spawn(move || for _ in lines {});
        Self { child, port }
    }

    /// A GET through the forward; the body of a 200 answer.
    pub fn get(&self, path: &str) -> String {
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let attempt = (|| -> std::io::Result<String> {
                let mut s = std::net::TcpStream::connect(("127.0.0.1", self.port))?;
                s.set_read_timeout(Some(Duration::from_secs(10)))?;
                write!(s, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n")?;
                let mut body = String::new();
                s.read_to_string(&mut body)?;
                Ok(body)
            })();
            match attempt {
                Ok(body) if body.starts_with("HTTP/1.") && body[9..12] == *"200" => return body,
                other if std::time::Instant::now() > deadline => {
                    panic!("GET {path} through port-forward failed: {other:?}")
                }
                _ => std::thread::sleep(Duration::from_millis(500)),
            }
        }
    }
}

impl Drop for PortForward {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Every line of `ps` (pid and full command line).
pub fn ps_lines() -> Vec<String> {
    let out = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Processes whose command line names `dir`: every node component is
/// given paths inside its control plane's directory.
pub fn processes_mentioning(dir: &Path) -> Vec<String> {
    let needle = dir.display().to_string();
    ps_lines()
        .into_iter()
        .filter(|l| l.contains(&needle))
        .collect()
}

/// What went wrong in a namespace, for a failure message: its pods (with
/// their nodes), their descriptions (conditions, container states, events)
/// and the logs of every container, current and previous.
pub fn namespace_report(namespace: &str) -> String {
    let show = |args: &[&str]| {
        let out = try_run(kubectl().args(args), None).unwrap_or_else(|e| e);
        format!("\n$ kubectl {}\n{out}", args.join(" "))
    };
    // The short, telling parts first: CI keeps only part of a long report.
    let mut report = show(&[
        "get",
        "nodes",
        "-o",
        "custom-columns=NAME:.metadata.name,TAINTS:.spec.taints[*].key",
    ]);
    report += &show(&["get", "events", "-n", namespace, "--sort-by=.lastTimestamp"]);
    report += &show(&["get", "pods", "-n", namespace, "-o", "wide"]);
    report += &show(&["describe", "pods", "-n", namespace]);
    let names = try_run(
        kubectl().args(["get", "pods", "-n", namespace, "-o", "name"]),
        None,
    )
    .unwrap_or_default();
    for pod in names.lines() {
        report += &show(&[
            "logs",
            "-n",
            namespace,
            pod,
            "--all-containers",
            "--tail=60",
        ]);
        report += &show(&[
            "logs",
            "-n",
            namespace,
            pod,
            "--all-containers",
            "--previous",
            "--tail=60",
        ]);
    }
    report
}

/// A Redis for GCS fault tolerance: Debian's `redis-server` (in the Ray
/// image) as the pod `redis` behind the Service `redis:6379`, its password
/// from the Secret `redis-auth` (key `password`), nothing kept on disk.
pub fn redis_manifest() -> String {
    format!(
        r#"
apiVersion: v1
kind: Secret
metadata: {{name: redis-auth}}
stringData: {{password: "{REDIS_PASSWORD}"}}
---
apiVersion: v1
kind: Pod
metadata:
  name: redis
  labels: {{app: redis}}
spec:
  containers:
  - name: redis
    image: {RAY_IMAGE}
    command: [bash, -c, 'exec redis-server --port 6379 --bind 0.0.0.0 --protected-mode no --save "" --appendonly no --requirepass "$REDIS_PASSWORD"']
    env:
    - name: REDIS_PASSWORD
      valueFrom: {{secretKeyRef: {{name: redis-auth, key: password}}}}
    ports: [{{containerPort: 6379}}]
    resources: {{requests: {{cpu: 100m, memory: 128Mi}}}}
---
apiVersion: v1
kind: Service
metadata: {{name: redis}}
spec:
  selector: {{app: redis}}
  ports: [{{port: 6379, targetPort: 6379}}]
"#
    )
}

/// The password of [`redis_manifest`]'s Redis.
pub const REDIS_PASSWORD: &str = "e2e-gcs-ft-3f9a";

/// `gcsFaultToleranceOptions` for [`redis_manifest`]'s Redis.
pub fn redis_ft_options() -> serde_json::Value {
    serde_json::json!({
        "redisAddress": "redis:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}},
    })
}
