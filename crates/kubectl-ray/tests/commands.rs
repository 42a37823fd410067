//! `kubectl ray` against the local control plane (simulated nodes, no
//! operator): each command's output, with golden tables written from
//! KubeRay v1.7's plugin source and tests, the objects `create` makes, and
//! bad input.

use std::process::Stdio;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Secret};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kuberay_api::RayCluster;
use kuberay_testenv::harness::{self, TestNamespace, wait_until};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

struct Out {
    code: i32,
    stdout: String,
    stderr: String,
}

/// Runs the plugin as a user would, against the test control plane.
async fn ray(ns: &TestNamespace, args: &[&str]) -> Out {
    ray_with_stdin(ns, args, None).await
}

async fn ray_with_stdin(ns: &TestNamespace, args: &[&str], stdin: Option<&str>) -> Out {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-ray"));
    cmd.arg(format!("--kubeconfig={}", harness::kubeconfig().display()))
        .args(["-n", &ns.name])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run(cmd, stdin).await
}

async fn run(mut cmd: tokio::process::Command, stdin: Option<&str>) -> Out {
    let mut child = cmd.spawn().expect("the kubectl-ray binary runs");
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).await.unwrap();
    }
    drop(input);
    let out = tokio::time::timeout(Duration::from_secs(120), child.wait_with_output())
        .await
        .expect("kubectl ray finished within 2 minutes")
        .unwrap();
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8(out.stdout).unwrap(),
        stderr: String::from_utf8(out.stderr).unwrap(),
    }
}

impl Out {
    fn ok(self) -> Self {
        assert_eq!(
            self.code, 0,
            "failed: stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        self
    }

    /// A failure reported as one line on stderr, exit code 1, no panic.
    fn one_line_error(self) -> String {
        assert_eq!(
            self.code, 1,
            "expected a failure: stdout:\n{}\nstderr:\n{}",
            self.stdout, self.stderr
        );
        let lines: Vec<&str> = self.stderr.lines().collect();
        assert_eq!(
            lines.len(),
            1,
            "expected one line on stderr, got:\n{}",
            self.stderr
        );
        assert!(lines[0].starts_with("Error: "), "{}", self.stderr);
        assert!(!self.stderr.contains("panicked") && !self.stderr.contains("RUST_BACKTRACE"));
        lines[0].to_string()
    }
}

/// The table with each row's last cell (the age, never padded) replaced by
/// `AGE`, as ages vary from run to run.
fn without_ages(table: &str) -> String {
    table
        .lines()
        .enumerate()
        .map(|(i, l)| {
            if i == 0 {
                return l.to_string();
            }
            let cut = l.trim_end().rfind(' ').map_or(0, |i| i + 1);
            format!("{}AGE", &l[..cut])
        })
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

async fn setup(prefix: &str) -> TestNamespace {
    harness::install_crds().await;
    harness::namespace(prefix).await
}

async fn create_cluster(ns: &TestNamespace, name: &str, spec: Value) -> RayCluster {
    let rc: RayCluster = serde_json::from_value(json!({
        "apiVersion": "ray.io/v1", "kind": "RayCluster",
        "metadata": {"name": name, "namespace": ns.name}, "spec": spec,
    }))
    .unwrap();
    ns.api::<RayCluster>()
        .create(&PostParams::default(), &rc)
        .await
        .unwrap()
}

fn minimal_spec() -> Value {
    json!({"headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.52.0"}]}}}})
}

async fn set_status(ns: &TestNamespace, name: &str, status: Value) {
    ns.api::<RayCluster>()
        .patch_status(
            name,
            &PatchParams::default(),
            &Patch::Merge(json!({"status": status})),
        )
        .await
        .unwrap();
}

/// KubeRay's `TestRayClusterGetRun` status, on a real API server.
fn kuberay_test_status() -> Value {
    json!({
        "desiredWorkerReplicas": 2, "availableWorkerReplicas": 2,
        "desiredCPU": "6", "desiredGPU": "1", "desiredTPU": "1", "desiredMemory": "24Gi",
        "state": "ready",
        "conditions": [
            {"type": "ReplicaFailure", "status": "False", "reason": "HeadPodNotFound", "message": "Head Pod not found", "lastTransitionTime": "2024-07-21T00:00:00Z"},
            {"type": "RayClusterProvisioned", "status": "True", "reason": "AllPodRunningAndReadyFirstTime", "message": "All Ray Pods are ready for the first time", "lastTransitionTime": "2025-01-20T00:00:00Z"},
            {"type": "HeadPodReady", "status": "True", "reason": "HeadPodRunningAndReady", "message": "Head Pod ready", "lastTransitionTime": "2024-11-05T00:00:00Z"},
        ]
    })
}

#[tokio::test]
async fn get_cluster_prints_kuberays_table() {
    let ns = setup("kr-get-cluster").await;
    create_cluster(&ns, "raycluster-kuberay", minimal_spec()).await;
    set_status(&ns, "raycluster-kuberay", kuberay_test_status()).await;
    create_cluster(&ns, "starting", minimal_spec()).await;
    set_status(&ns, "starting", json!({"conditions": [{"type": "HeadPodReady", "status": "False", "reason": "HeadPodNotFound", "message": "the head pod is Pending: 0/3 nodes are available", "lastTransitionTime": "2025-01-20T00:00:00Z"}]})).await;

    let n = &ns.name;
    let out = ray(&ns, &["get", "cluster"]).await.ok();
    // Columns as KubeRay's printer pads them (widths from the longest cell + 3).
    let pad = |s: &str, w: usize| format!("{s:<w$}");
    let nw = n.len().max("NAMESPACE".len()) + 3;
    let expected = format!(
        "NAME                 {}DESIRED WORKERS   AVAILABLE WORKERS   CPUS   GPUS   TPUS   MEMORY   CONDITION               STATUS   AGE\n\
         raycluster-kuberay   {}2                 2                   6      1      1      24Gi     RayClusterProvisioned   ready    AGE\n\
         starting             {}0                 0                   0      0      0      0                                         AGE\n",
        pad("NAMESPACE", nw),
        pad(n, nw),
        pad(n, nw)
    );
    assert_eq!(without_ages(&out.stdout), expected);
    // Beyond KubeRay: why a cluster is not ready, on stderr.
    assert_eq!(
        out.stderr,
        format!(
            "{n}/starting is not ready: the head pod is Pending: 0/3 nodes are available (HeadPodNotFound)\n"
        )
    );

    // One cluster by name, the `list`/`clusters` aliases, and -A.
    let one = ray(&ns, &["list", "clusters", "raycluster-kuberay"])
        .await
        .ok();
    assert_eq!(one.stdout.lines().count(), 2);
    let all = ray(&ns, &["get", "cluster", "-A"]).await.ok();
    assert!(
        all.stdout
            .lines()
            .filter(|l| l.contains(n.as_str()))
            .count()
            == 2,
        "{}",
        all.stdout
    );

    // Not found, as KubeRay words it.
    let e = ray(&ns, &["get", "cluster", "nope"]).await.one_line_error();
    assert_eq!(
        e,
        format!("Error: Ray cluster nope not found in namespace {n}")
    );
    let e = ray(&ns, &["get", "cluster", "nope", "-A"])
        .await
        .one_line_error();
    assert_eq!(e, "Error: Ray cluster nope not found in any namespace");
    // MaximumNArgs(1), as KubeRay's e2e test checks.
    ray(&ns, &["get", "cluster", "a", "b"])
        .await
        .one_line_error();

    // -o json|yaml print the objects.
    let json_out = ray(&ns, &["get", "cluster", "raycluster-kuberay", "-o", "json"])
        .await
        .ok();
    let v: Value = serde_json::from_str(&json_out.stdout).unwrap();
    assert_eq!(v["status"]["desiredMemory"], "24Gi");
    let yaml_out = ray(&ns, &["get", "cluster", "-o", "yaml"]).await.ok();
    let v: Value = serde_yaml::from_str(&yaml_out.stdout).unwrap();
    assert_eq!(v["kind"], "List");
    assert_eq!(v["items"].as_array().unwrap().len(), 2);

    // An empty namespace prints nothing, as kubectl's printer.
    let empty = harness::namespace("kr-empty").await;
    let out = ray(&empty, &["get", "cluster"]).await.ok();
    assert_eq!(out.stdout, "");
}

/// A pod as the operator makes them, Running on a simulated node.
async fn ray_pod(
    ns: &TestNamespace,
    name: &str,
    cluster: &str,
    node_type: &str,
    group: &str,
    requests: Value,
) -> Pod {
    let pod: Pod = serde_json::from_value(json!({
        "metadata": {"name": name, "labels": {
            "ray.io/is-ray-node": "yes", "ray.io/cluster": cluster,
            "ray.io/node-type": node_type, "ray.io/group": group}},
        "spec": {"containers": [{"name": format!("ray-{node_type}"), "image": "rayproject/ray:2.52.0",
            "resources": {"requests": requests}}]}
    }))
    .unwrap();
    ns.api::<Pod>()
        .create(&PostParams::default(), &pod)
        .await
        .unwrap()
}

async fn wait_ready(ns: &TestNamespace, name: &str) {
    let pods = ns.api::<Pod>();
    wait_until(
        &format!("pod {name} Running and Ready"),
        Duration::from_secs(60),
        || async {
            let p = pods.get(name).await.ok()?;
            let s = p.status?;
            let ready = s
                .conditions
                .iter()
                .flatten()
                .any(|c| c.type_ == "Ready" && c.status == "True");
            (s.phase.as_deref() == Some("Running") && ready).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn get_workergroup_and_node_print_kuberays_tables() {
    let ns = setup("kr-get-wg").await;
    let mut spec = minimal_spec();
    // KubeRay's e2e cluster: one worker of 1 CPU and 1Gi, min 1, max 5;
    // and a second group with GPUs and no bounds.
    spec["workerGroupSpecs"] = json!([
        {"groupName": "workergroup", "replicas": 1, "minReplicas": 1, "maxReplicas": 5, "rayStartParams": {},
         "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.52.0",
            "resources": {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}}]}}},
        {"groupName": "gpus", "replicas": 2, "rayStartParams": {},
         "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.52.0",
            "resources": {"limits": {"cpu": "500m", "memory": "2G", "nvidia.com/gpu": "1"}}}]}}}
    ]);
    create_cluster(&ns, "raycluster-kuberay", spec).await;
    ray_pod(
        &ns,
        "raycluster-kuberay-head",
        "raycluster-kuberay",
        "head",
        "headgroup",
        json!({"cpu": "1", "memory": "2Gi"}),
    )
    .await;
    ray_pod(
        &ns,
        "raycluster-kuberay-workergroup-worker-abcde",
        "raycluster-kuberay",
        "worker",
        "workergroup",
        json!({"cpu": "1", "memory": "1Gi"}),
    )
    .await;
    wait_ready(&ns, "raycluster-kuberay-workergroup-worker-abcde").await;

    let out = ray(&ns, &["get", "workergroups"]).await.ok();
    assert_eq!(
        out.stdout,
        "NAME          MIN   MAX          REPLICAS   CPUS   GPUS   TPUS   MEMORY   CLUSTER\n\
         workergroup   1     5            1/1        1      0      0      1Gi      raycluster-kuberay\n\
         gpus          0     2147483647   0/2        1      2      0      4G       raycluster-kuberay\n"
    );
    let one = ray(
        &ns,
        &["get", "workergroup", "gpus", "-c", "raycluster-kuberay"],
    )
    .await
    .ok();
    assert_eq!(one.stdout.lines().count(), 2);
    let all = ray(
        &ns,
        &[
            "get",
            "workergroup",
            "-A",
            "--ray-cluster",
            "raycluster-kuberay",
        ],
    )
    .await
    .ok();
    assert!(all.stdout.starts_with("NAMESPACE"), "{}", all.stdout);
    let e = ray(&ns, &["get", "workergroups", "fakeWorkerGroupsName"])
        .await
        .one_line_error();
    assert_eq!(
        e,
        format!(
            "Error: Ray worker group fakeWorkerGroupsName not found in namespace {} in any Ray cluster",
            ns.name
        )
    );

    let out = ray(&ns, &["get", "nodes"]).await.ok();
    assert_eq!(
        without_ages(&out.stdout),
        "NAME                                          CPUS   GPUS   TPUS   MEMORY   CLUSTER              TYPE     WORKER GROUP   AGE\n\
         raycluster-kuberay-head                       1      0      0      2Gi      raycluster-kuberay   head     headgroup      AGE\n\
         raycluster-kuberay-workergroup-worker-abcde   1      0      0      1Gi      raycluster-kuberay   worker   workergroup    AGE\n"
    );
    let e = ray(&ns, &["get", "node", "nope", "-c", "raycluster-kuberay"])
        .await
        .one_line_error();
    assert_eq!(
        e,
        format!(
            "Error: Ray node nope not found in namespace {} in Ray cluster raycluster-kuberay",
            ns.name
        )
    );
    let pods = ray(
        &ns,
        &["get", "node", "raycluster-kuberay-head", "-o", "json"],
    )
    .await
    .ok();
    let v: Value = serde_json::from_str(&pods.stdout).unwrap();
    assert_eq!(v["kind"], "Pod");
}

#[tokio::test]
async fn get_token_prints_the_clusters_token() {
    let ns = setup("kr-token").await;
    let mut spec = minimal_spec();
    spec["authOptions"] = json!({"mode": "token"});
    create_cluster(&ns, "secure", spec).await;
    create_cluster(&ns, "open", minimal_spec()).await;
    let secret: Secret = serde_json::from_value(
        json!({"metadata": {"name": "secure"}, "stringData": {"auth_token": "s3cret"}}),
    )
    .unwrap();
    ns.api::<Secret>()
        .create(&PostParams::default(), &secret)
        .await
        .unwrap();
    let out = ray(&ns, &["get", "token", "secure"]).await.ok();
    assert_eq!(out.stdout, "s3cret");
    let e = ray(&ns, &["get", "token", "open"]).await.one_line_error();
    assert_eq!(
        e,
        format!(
            "Error: RayCluster {}/open was not configured to use authentication tokens",
            ns.name
        )
    );
    let e = ray(&ns, &["get", "token"]).await.one_line_error();
    assert!(e.contains("required"), "{e}");
}

/// The RayCluster KubeRay's plugin applies for `create cluster NAME` with
/// `--worker-replicas 2 --labels app=ray --head-cpu 1 --autoscaler v2`
/// (its generation code and tests).
fn expected_cluster(ns: &str) -> Value {
    json!({
        "apiVersion": "ray.io/v1", "kind": "RayCluster",
        "metadata": {"name": "made", "namespace": ns, "labels": {"app": "ray"}},
        "spec": {
            "rayVersion": "2.52.0",
            "enableInTreeAutoscaling": true,
            "autoscalerOptions": {"version": "v2"},
            "headGroupSpec": {"template": {"spec": {"containers": [{
                "name": "ray-head", "image": "rayproject/ray:2.52.0",
                "ports": [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": 8265, "name": "dashboard"}, {"containerPort": 10001, "name": "client"}],
                "resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}}]}}},
            "workerGroupSpecs": [{"groupName": "default-group", "replicas": 2, "numOfHosts": 1,
                "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.52.0",
                    "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}}]}}}]
        }
    })
}

/// The parts of `actual` that `expected` names, so that server-set fields
/// (uid, defaults) do not matter.
fn assert_contains(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, v) in e {
                assert_contains(a.get(k).unwrap_or(&Value::Null), v, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "{path}: {actual} vs {expected}");
            for (i, (x, y)) in a.iter().zip(e).enumerate() {
                assert_contains(x, y, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "at {path}"),
    }
}

#[tokio::test]
async fn create_cluster_applies_kuberays_object() {
    let ns = setup("kr-create").await;
    let n = ns.name.clone();
    let flags = [
        "made",
        "--worker-replicas",
        "2",
        "--labels",
        "app=ray",
        "--head-cpu",
        "1",
        "--autoscaler",
        "v2",
    ];

    // --dry-run prints exactly the object, creating nothing.
    let mut args = vec!["create", "cluster"];
    args.extend(flags);
    args.push("--dry-run");
    let dry = ray(&ns, &args).await.ok();
    let printed: Value = serde_yaml::from_str(&dry.stdout).unwrap();
    assert_eq!(printed, expected_cluster(&n));
    assert!(
        ns.api::<RayCluster>()
            .get_opt("made")
            .await
            .unwrap()
            .is_none()
    );

    let mut args = vec!["create", "cluster"];
    args.extend(flags);
    let out = ray(&ns, &args).await.ok();
    assert_eq!(out.stdout, "Created Ray cluster: made\n");
    let rc = ns.api::<RayCluster>().get("made").await.unwrap();
    let managers: Vec<_> = rc
        .metadata
        .managed_fields
        .iter()
        .flatten()
        .filter_map(|m| m.manager.clone())
        .collect();
    assert_eq!(managers, ["ray-kubectl-plugin"]);
    let actual = serde_json::to_value(&rc).unwrap();
    assert_contains(&actual, &expected_cluster(&n), "");
    // Nothing beyond what KubeRay sets (the API server adds no defaults here).
    assert_eq!(
        actual["spec"]["headGroupSpec"].as_object().unwrap().len(),
        1,
        "{}",
        actual["spec"]["headGroupSpec"]
    );

    let e = ray(&ns, &args).await.one_line_error();
    assert_eq!(
        e,
        format!("Error: the Ray cluster made in namespace {n} already exists")
    );

    // --wait without an operator times out, saying so.
    let e = ray(
        &ns,
        &["create", "cluster", "waits", "--wait", "--timeout", "2s"],
    )
    .await;
    assert!(e.stdout.contains("Created Ray cluster: waits"));
    assert_eq!(
        e.one_line_error(),
        format!(
            "Error: timed out waiting for Ray cluster waits in namespace {n} to be provisioned"
        )
    );

    // --file: the config's namespace must match -n; flags that shape the cluster are refused.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("c.yaml");
    std::fs::write(
        &file,
        "worker-groups:\n- name: small\n  replicas: 3\n  cpu: 1\nhead:\n  cpu: 1\n",
    )
    .unwrap();
    let f = file.to_str().unwrap();
    ray(&ns, &["create", "cluster", "fromfile", "--file", f])
        .await
        .ok();
    let rc = serde_json::to_value(ns.api::<RayCluster>().get("fromfile").await.unwrap()).unwrap();
    assert_eq!(rc["spec"]["workerGroupSpecs"][0]["groupName"], "small");
    assert_eq!(rc["spec"]["workerGroupSpecs"][0]["replicas"], 3);
    assert_eq!(
        rc["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["resources"],
        json!({"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "4Gi"}})
    );
    let e = ray(
        &ns,
        &[
            "create",
            "cluster",
            "x",
            "--file",
            f,
            "--head-cpu",
            "3",
            "--worker-replicas",
            "1",
        ],
    )
    .await
    .one_line_error();
    assert_eq!(
        e,
        "Error: the following flags are incompatible with --file: [head-cpu worker-replicas]"
    );
    std::fs::write(&file, "namespace: elsewhere\n").unwrap();
    let e = ray(&ns, &["create", "cluster", "x", "--file", f])
        .await
        .one_line_error();
    assert_eq!(
        e,
        format!(
            "Error: the namespace in the config file \"elsewhere\" does not match the namespace \"{n}\". You must pass --namespace=elsewhere to perform this operation"
        )
    );
    let e = ray(&ns, &["create", "cluster", "x", "--head-memory", "softmax"])
        .await
        .one_line_error();
    assert!(
        e.starts_with("Error: head-memory is not a valid resource quantity: quantities must match"),
        "{e}"
    );
    let e = ray(&ns, &["create", "cluster", "x", "--worker-tpu", "1"])
        .await
        .one_line_error();
    assert!(
        e.starts_with(
            "Error: cloud.google.com/gke-tpu-accelerator is not set in --worker-node-selectors"
        ),
        "{e}"
    );
}

#[tokio::test]
async fn create_workergroup_and_scale_change_the_cluster_as_kuberay() {
    let ns = setup("kr-wg").await;
    let n = ns.name.clone();
    create_cluster(&ns, "rc", minimal_spec()).await;
    let out = ray(
        &ns,
        &[
            "create",
            "workergroup",
            "extra",
            "--ray-cluster",
            "rc",
            "--worker-cpu",
            "1",
            "--worker-gpu",
            "1",
            "--worker-node-selectors",
            "zone=a",
        ],
    )
    .await
    .ok();
    assert_eq!(
        out.stdout,
        format!("Updated Ray cluster {n}/rc with new worker group\n")
    );
    let rc = serde_json::to_value(ns.api::<RayCluster>().get("rc").await.unwrap()).unwrap();
    let resources = json!({"cpu": "1", "memory": "4Gi", "nvidia.com/gpu": "1"});
    // What KubeRay's plugin sends; the API server adds the CRD's defaults (priority).
    assert_contains(
        &rc["spec"]["workerGroupSpecs"],
        &json!([{"groupName": "extra", "replicas": 1, "numOfHosts": 1, "minReplicas": 1, "maxReplicas": 10, "rayStartParams": {},
            "template": {"spec": {"nodeSelector": {"zone": "a"}, "containers": [{"name": "ray-worker", "image": "rayproject/ray:2.52.0",
                "resources": {"requests": resources, "limits": resources}}]}}}]),
        "",
    );
    let e = ray(&ns, &["create", "workergroup", "extra", "-c", "rc"])
        .await
        .one_line_error();
    assert_eq!(
        e,
        format!("Error: worker group extra already exists in Ray cluster {n}/rc")
    );
    let e = ray(&ns, &["create", "workergroup", "g"])
        .await
        .one_line_error();
    assert!(e.contains("--ray-cluster"), "{e}");
    let e = ray(&ns, &["create", "workergroup", "g", "-c", "nope"])
        .await
        .one_line_error();
    assert_eq!(
        e,
        "Error: error getting Ray cluster: rayclusters.ray.io \"nope\" not found"
    );

    let out = ray(
        &ns,
        &[
            "scale",
            "cluster",
            "rc",
            "-w",
            "extra",
            "-r",
            "3",
            "--max-replicas",
            "4",
        ],
    )
    .await
    .ok();
    assert_eq!(
        out.stdout,
        format!(
            "Updated worker group extra in Ray cluster rc in namespace {n} (Scaled maxReplicas: 10 to 4, Scaled Replicas: 1 to 3)\n"
        )
    );
    let rc = ns.api::<RayCluster>().get("rc").await.unwrap();
    let g = &rc.spec.worker_group_specs.unwrap()[0];
    assert_eq!(
        (g.replicas, g.min_replicas, g.max_replicas),
        (Some(3), Some(1), Some(4))
    );
    let out = ray(
        &ns,
        &[
            "scale",
            "cluster",
            "rc",
            "--worker-group",
            "extra",
            "--replicas",
            "3",
        ],
    )
    .await
    .ok();
    assert_eq!(
        out.stdout,
        format!(
            "Worker group extra in Ray cluster rc in namespace {n} already matches the requested configuration. Skipping.\n"
        )
    );
    let e = ray(&ns, &["scale", "cluster", "rc", "-w", "extra", "-r", "5"])
        .await
        .one_line_error();
    assert_eq!(
        e,
        "Error: cannot set --replicas (5) greater than --max-replicas (4)"
    );
    let e = ray(&ns, &["scale", "cluster", "rc", "-w", "nope", "-r", "1"])
        .await
        .one_line_error();
    assert_eq!(
        e,
        format!(
            "Error: worker group nope not found in Ray cluster rc in namespace {n}. Available worker groups: extra"
        )
    );
    let e = ray(&ns, &["scale", "cluster", "rc", "-w", "extra"])
        .await
        .one_line_error();
    assert!(
        e.starts_with("Error: must specify at least one of --replicas"),
        "{e}"
    );
    let e = ray(&ns, &["scale", "cluster", "missing", "-w", "g", "-r", "1"])
        .await
        .one_line_error();
    assert_eq!(
        e,
        format!(
            "Error: failed to scale worker group g in Ray cluster missing in namespace {n}: rayclusters.ray.io \"missing\" not found"
        )
    );
    let e = ray(&ns, &["scale", "cluster", "rc", "-r", "1"])
        .await
        .one_line_error();
    assert!(e.contains("--worker-group"), "{e}");
}

#[tokio::test]
async fn delete_asks_first_unless_told_yes() {
    let ns = setup("kr-delete").await;
    create_cluster(&ns, "a", minimal_spec()).await;
    create_cluster(&ns, "b", minimal_spec()).await;
    let api = ns.api::<RayCluster>();

    let out = ray_with_stdin(&ns, &["delete", "a"], Some("n\n"))
        .await
        .ok();
    assert_eq!(
        out.stdout,
        "Are you sure you want to delete the following resources?\n- raycluster/a\n(y/yes/n/no)Canceled deletion.\n"
    );
    assert!(api.get_opt("a").await.unwrap().is_some());
    let e = ray_with_stdin(&ns, &["delete", "a"], None)
        .await
        .one_line_error();
    assert_eq!(e, "Error: Failed to read user input: EOF");
    let out = ray_with_stdin(&ns, &["delete", "raycluster/a"], Some("yes\n"))
        .await
        .ok();
    assert!(
        out.stdout.ends_with("(y/yes/n/no)Deleted raycluster a\n"),
        "{}",
        out.stdout
    );
    let out = ray(&ns, &["delete", "RayCluster/b", "-y"]).await.ok();
    assert_eq!(out.stdout, "Deleted raycluster b\n");
    let e = ray(&ns, &["delete", "-y", "rayjob/nope"])
        .await
        .one_line_error();
    assert_eq!(
        e,
        "Error: failed to delete rayjob/nope: rayjobs.ray.io \"nope\" not found"
    );
    let e = ray(&ns, &["delete", "-y", "pod/x"]).await.one_line_error();
    assert_eq!(e, "Error: unsupported resource type: pod");
    ray(&ns, &["delete"]).await.one_line_error();
}

#[tokio::test]
async fn version_reads_the_operators_image_tag() {
    let ns = setup("kr-version").await;
    let deployments = Api::<Deployment>::all(ns.client.clone());
    let lp = kube::api::ListParams::default()
        .labels("app.kubernetes.io/name in (kuberay-operator,kuberay)");
    assert!(
        deployments.list(&lp).await.unwrap().items.is_empty(),
        "another test installed an operator"
    );
    let out = ray(&ns, &["version"]).await.ok();
    let plugin_line = format!(
        "kubectl ray plugin version: {}",
        kuberay_operator::runtime::config::KUBERAY_VERSION
    );
    assert_eq!(
        out.stdout,
        format!(
            "{plugin_line}\nwarning: KubeRay operator installation cannot be found: no KubeRay operator deployments found in any namespace. Did you install it with the name \"kuberay-operator\"?\n"
        )
    );
    let d: Deployment = serde_json::from_value(json!({
        "metadata": {"name": "kuberay-operator", "labels": {"app.kubernetes.io/name": "kuberay-operator"}},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": {"metadata": {"labels": {"app": "x"}},
            "spec": {"containers": [{"name": "kuberay-operator", "image": "quay.io/kuberay/operator:v1.7.0"}]}}}
    }))
    .unwrap();
    ns.api::<Deployment>()
        .create(&PostParams::default(), &d)
        .await
        .unwrap();
    let out = ray(&ns, &["version"]).await.ok();
    assert_eq!(
        out.stdout,
        format!("{plugin_line}\nKubeRay operator version: v1.7.0\n")
    );
    ns.api::<Deployment>()
        .delete("kuberay-operator", &Default::default())
        .await
        .unwrap();
}

#[tokio::test]
async fn job_submit_dry_run_prints_kuberays_rayjob() {
    let ns = setup("kr-job").await;
    let out = ray(
        &ns,
        &[
            "job",
            "submit",
            "--dry-run",
            "--name",
            "j",
            "--working-dir",
            ".",
            "--worker-replicas",
            "2",
            "--head-cpu",
            "1",
            "--",
            "python",
            "-c",
            "print(1)",
        ],
    )
    .await
    .ok();
    let (first, yaml) = out.stdout.split_once('\n').unwrap();
    let id = first
        .strip_prefix("Generated submission ID for Ray job: ")
        .unwrap();
    let job: Value = serde_yaml::from_str(yaml).unwrap();
    assert_eq!(
        job,
        json!({"apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "j", "namespace": ns.name},
            "spec": {"submissionMode": "InteractiveMode", "entrypoint": "python -c print(1)", "jobId": id,
                "ttlSecondsAfterFinished": 0, "shutdownAfterJobFinishes": false,
                "rayClusterSpec": {"rayVersion": "2.52.0",
                    "headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.52.0",
                        "ports": [{"containerPort": 6379, "name": "gcs-server"}, {"containerPort": 8265, "name": "dashboard"}, {"containerPort": 10001, "name": "client"}],
                        "resources": {"requests": {"cpu": "1", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}}]}}},
                    "workerGroupSpecs": [{"groupName": "default-group", "replicas": 2,
                        "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.52.0",
                            "resources": {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"memory": "4Gi"}}}]}}}]}}})
    );
    // The RayJob the dry run shows is accepted by the API server with our CRDs.
    let obj: kuberay_api::RayJob = serde_json::from_value(job).unwrap();
    ns.api::<kuberay_api::RayJob>()
        .create(
            &PostParams {
                dry_run: true,
                ..Default::default()
            },
            &obj,
        )
        .await
        .unwrap();

    let e = ray(&ns, &["job", "submit", "--name", "j", "--working-dir", "."])
        .await
        .one_line_error();
    assert!(e.contains("entrypoint"), "{e}");
    let e = ray(&ns, &["job", "submit", "--", "python"])
        .await
        .one_line_error();
    assert_eq!(
        e,
        "Error: Must set either yaml file (--filename) or set Ray job name (--name)"
    );
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("job.yaml");
    std::fs::write(&file, "apiVersion: ray.io/v1\nkind: RayJob\nmetadata: {name: j}\nspec: {submissionMode: K8sJobMode, entrypoint: x}\n").unwrap();
    let e = ray(
        &ns,
        &[
            "job",
            "submit",
            "-f",
            file.to_str().unwrap(),
            "--working-dir",
            ".",
            "--",
            "python",
        ],
    )
    .await
    .one_line_error();
    assert_eq!(
        e,
        "Error: Submission mode of the Ray Job must be set to 'InteractiveMode'"
    );
}

#[tokio::test]
async fn session_and_log_explain_what_is_missing() {
    let ns = setup("kr-session").await;
    let n = ns.name.clone();
    create_cluster(&ns, "rc", minimal_spec()).await;
    let e = ray(&ns, &["session", "rc"]).await.one_line_error();
    assert_eq!(
        e,
        format!(
            "Error: raycluster/rc in namespace {n} has no head service yet (its status names none): check that the KubeRay operator runs and see 'kubectl ray get cluster'"
        )
    );
    let e = ray(&ns, &["session", "rayjob/nope"]).await.one_line_error();
    assert_eq!(
        e,
        format!(
            "Error: unable to find RayJob nope in namespace {n}: rayjobs.ray.io \"nope\" not found"
        )
    );
    let e = ray(&ns, &["session", "pods/x"]).await.one_line_error();
    assert_eq!(e, "Error: unsupported resource type: pods");

    let dir = tempfile::tempdir().unwrap();
    let out = ray(
        &ns,
        &["log", "rc", "--out-dir", dir.path().to_str().unwrap()],
    )
    .await;
    assert!(
        out.stdout
            .starts_with("Command set to retrieve both head and worker node logs.\n")
    );
    assert_eq!(
        out.one_line_error(),
        "Error: No Ray nodes found for resource rc"
    );
    let e = ray(&ns, &["logs", "rc", "--node-type", "nodes"])
        .await
        .one_line_error();
    assert!(e.contains("nodes"), "{e}");
    let e = ray(&ns, &["log", "rc", "--link", "aws"])
        .await
        .one_line_error();
    assert_eq!(
        e,
        "Error: unsupported link type \"aws\", only \"gke\" is supported"
    );
    let link = ray(&ns, &["log", "rc", "--link", "gke"]).await.ok();
    assert!(
        link.stdout
            .contains("https://console.cloud.google.com/logs/query;query="),
        "{}",
        link.stdout
    );
}

#[tokio::test]
async fn bad_input_is_one_line_and_exit_code_one() {
    let ns = setup("kr-bad").await;
    for args in [
        vec!["get", "cluster", "--bogus"],
        vec!["get", "clusterz"],
        vec!["scale", "cluster"],
        vec!["create", "cluster"],
        vec!["get", "node", "-c"],
        vec!["create", "cluster", "x", "--autoscaler", "v3"],
    ] {
        let e = ray(&ns, &args).await.one_line_error();
        assert!(e.ends_with("(see 'kubectl ray --help')"), "{args:?}: {e}");
    }
    // A cluster that does not exist.
    let e = ray(&ns, &["get", "token", "ghost"]).await.one_line_error();
    assert_eq!(
        e,
        format!(
            "Error: failed to get RayCluster {}/ghost: rayclusters.ray.io \"ghost\" not found",
            ns.name
        )
    );

    // An API server that does not answer.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(&kubeconfig, "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'https://127.0.0.1:1'}}]\nusers: [{name: u, user: {token: t}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n").unwrap();
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-ray"));
    cmd.arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["get", "cluster"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let e = run(cmd, None).await.one_line_error();
    assert!(
        e.starts_with("Error: unable to retrieve Ray clusters for namespace default: "),
        "{e}"
    );
    assert!(
        e.contains("127.0.0.1:1") || e.to_lowercase().contains("connect"),
        "{e}"
    );
    // A kubeconfig that is not there.
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_kubectl-ray"));
    cmd.args(["--kubeconfig", "/nonexistent/kubeconfig", "get", "cluster"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let e = run(cmd, None).await.one_line_error();
    assert!(
        e.starts_with("Error: cannot read kubeconfig /nonexistent/kubeconfig"),
        "{e}"
    );

    // Help exits 0.
    let out = ray(&ns, &["get", "--help"]).await.ok();
    assert!(out.stdout.contains("cluster"));
    let out = ray(&ns, &["create"]).await.ok();
    assert!(out.stdout.contains("workergroup"));
}
