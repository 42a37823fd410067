//! Builder, planner and status tests from inline YAML: a cluster in, the
//! objects KubeRay would create out.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Container, EnvVar, Pod};
use kuberay_api::RayCluster;

use super::scale::{Deletion, plan};
use super::status::{Observation, compute};
use crate::ray::pod::{PodContext, WorkerSlot, head_pod, worker_pod};
use crate::ray::service::{head_service, headless_service, serve_service};
use crate::runtime::config::Config;

const CLUSTER: &str = r#"
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: raycluster-kuberay
  namespace: team
  uid: 1234-abcd
  generation: 3
spec:
  rayVersion: "2.46.0"
  headGroupSpec:
    rayStartParams: {}
    template:
      spec:
        containers:
        - name: ray-head
          image: rayproject/ray:2.46.0
          resources:
            limits: {cpu: "1", memory: 2G}
            requests: {cpu: "1", memory: 2G}
          ports:
          - {containerPort: 6379, name: gcs-server}
          - {containerPort: 8265, name: dashboard}
          - {containerPort: 10001, name: client}
  workerGroupSpecs:
  - groupName: workergroup
    replicas: 2
    minReplicas: 1
    maxReplicas: 5
    rayStartParams: {}
    template:
      spec:
        containers:
        - name: ray-worker
          image: rayproject/ray:2.46.0
          resources:
            limits: {cpu: "1", memory: 1G}
            requests: {cpu: 500m, memory: 1G}
"#;

pub(super) fn cluster(patch: serde_json::Value) -> RayCluster {
    let mut v: serde_json::Value = serde_yaml::from_str(CLUSTER).unwrap();
    merge(&mut v, &patch);
    let mut c: RayCluster = serde_json::from_value(v).unwrap();
    kuberay_api::defaults::cluster_spec(&mut c.spec);
    c
}

/// Merges `patch` into `base`; arrays merge element by element, so a
/// patch can change one field of the first worker group.
fn merge(base: &mut serde_json::Value, patch: &serde_json::Value) {
    use serde_json::Value;
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                merge(b.entry(k.clone()).or_insert(Value::Null), v);
            }
        }
        (Value::Array(b), Value::Array(p)) => {
            for (i, v) in p.iter().enumerate() {
                match b.get_mut(i) {
                    Some(slot) => merge(slot, v),
                    None => b.push(v.clone()),
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

pub(super) fn env<'a>(c: &'a Container, name: &str) -> Option<&'a EnvVar> {
    c.env.iter().flatten().find(|e| e.name == name)
}

pub(super) fn env_value(c: &Container, name: &str) -> String {
    env(c, name)
        .and_then(|e| e.value.clone())
        .unwrap_or_else(|| panic!("no env {name}"))
}

pub(super) fn ctx_pod(c: &RayCluster, f: impl FnOnce(&PodContext) -> Pod) -> Pod {
    let cfg = Config::default();
    f(&PodContext {
        cluster: c,
        cfg: &cfg,
        spec_hash: "h",
    })
}

#[test]
fn head_pod_has_kuberays_names_labels_command_and_env() {
    let c = cluster(serde_json::json!({}));
    let pod = ctx_pod(&c, head_pod);
    let meta = &pod.metadata;
    assert_eq!(
        meta.generate_name.as_deref(),
        Some("raycluster-kuberay-head-")
    );
    assert_eq!(meta.namespace.as_deref(), Some("team"));
    let labels = meta.labels.as_ref().unwrap();
    for (k, v) in [
        ("ray.io/cluster", "raycluster-kuberay"),
        ("ray.io/node-type", "head"),
        ("ray.io/group", "headgroup"),
        ("ray.io/identifier", "raycluster-kuberay-head"),
        ("ray.io/is-ray-node", "yes"),
        ("app.kubernetes.io/name", "kuberay"),
        ("app.kubernetes.io/created-by", "kuberay-operator"),
    ] {
        assert_eq!(labels.get(k).map(String::as_str), Some(v), "label {k}");
    }
    let annotations = meta.annotations.as_ref().unwrap();
    assert_eq!(annotations["ray.io/ft-enabled"], "false");
    assert_eq!(annotations["ray.io/upgrade-strategy-recreate-hash"], "h");
    let c0 = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(c0.command.as_deref().unwrap(), ["/bin/bash", "-c", "--"]);
    let start = "ray start --head  --block  --dashboard-agent-listen-port=52365  --dashboard-host=0.0.0.0  --memory=2000000000  --metrics-export-port=8080  --num-cpus=1 ";
    assert_eq!(
        c0.args.as_deref().unwrap(),
        [format!(
            "ulimit -n ${{RAY_START_ULIMIT_OPEN_FILES:-65536}}; {start}"
        )]
    );
    assert_eq!(env_value(c0, "KUBERAY_GEN_RAY_START_CMD"), start);
    assert_eq!(env_value(c0, "RAY_ADDRESS"), "127.0.0.1:6379");
    assert_eq!(env_value(c0, "RAY_PORT"), "6379");
    assert_eq!(env_value(c0, "RAY_USAGE_STATS_KUBERAY_IN_USE"), "1");
    assert_eq!(env_value(c0, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE"), "1");
    assert!(env_value(c0, "RAY_USAGE_STATS_EXTRA_TAGS").ends_with(";kuberay_crd=RayCluster"));
    let cluster_name = env(c0, "RAY_CLUSTER_NAME")
        .unwrap()
        .value_from
        .as_ref()
        .unwrap();
    assert_eq!(
        cluster_name.field_ref.as_ref().unwrap().field_path,
        "metadata.labels['ray.io/cluster']"
    );
    assert!(
        env(c0, "FQ_RAY_IP").is_none(),
        "the head does not get RAY_IP/FQ_RAY_IP"
    );
    let ports: Vec<&str> = c0
        .ports
        .iter()
        .flatten()
        .filter_map(|p| p.name.as_deref())
        .collect();
    assert!(ports.contains(&"metrics"));
    // Ray 2.46: wget probes of the raylet and the GCS, head timeout 5s.
    let readiness = c0.readiness_probe.as_ref().unwrap();
    let cmd = &readiness.exec.as_ref().unwrap().command.as_ref().unwrap()[2];
    assert_eq!(
        cmd,
        "wget --tries 1 -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success && wget --tries 1 -T 10 -q -O- http://localhost:8265/api/gcs_healthz | grep success"
    );
    assert_eq!(readiness.timeout_seconds, Some(5));
    assert_eq!(
        c0.liveness_probe.as_ref().unwrap().failure_threshold,
        Some(120)
    );
    let shm = pod
        .spec
        .as_ref()
        .unwrap()
        .volumes
        .as_ref()
        .unwrap()
        .iter()
        .find(|v| v.name == "shared-mem")
        .unwrap();
    let ed = shm.empty_dir.as_ref().unwrap();
    assert_eq!(ed.medium.as_deref(), Some("Memory"));
    assert_eq!(ed.size_limit.as_ref().unwrap().0, "2G");
}

#[test]
fn recent_ray_gets_the_unified_health_endpoint() {
    let c = cluster(serde_json::json!({"spec": {"rayVersion": "2.53.0"}}));
    let pod = ctx_pod(&c, head_pod);
    let probe = pod.spec.unwrap().containers[0]
        .liveness_probe
        .clone()
        .unwrap();
    let http = probe.http_get.unwrap();
    assert_eq!(http.path.as_deref(), Some("/api/healthz"));
}

#[test]
fn worker_pod_waits_for_the_gcs_and_knows_the_head() {
    let c = cluster(serde_json::json!({}));
    let slot = WorkerSlot {
        group: 0,
        replica_index: Some(3),
        ..Default::default()
    };
    let pod = ctx_pod(&c, |ctx| worker_pod(ctx, &slot));
    assert_eq!(
        pod.metadata.generate_name.as_deref(),
        Some("raycluster-kuberay-workergroup-worker-")
    );
    let labels = pod.metadata.labels.as_ref().unwrap();
    assert_eq!(labels["ray.io/group"], "workergroup");
    assert_eq!(labels["ray.io/worker-group-replica-index"], "3");
    assert!(!labels.contains_key("ray.io/replica-host-index"));
    let spec = pod.spec.as_ref().unwrap();
    let fqdn = "raycluster-kuberay-head-svc.team.svc.cluster.local";
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.name, "wait-gcs-ready");
    assert!(init.args.as_ref().unwrap()[0].contains(&format!(
        "ray health-check --address {fqdn}:6379 > /dev/null 2>&1"
    )));
    assert_eq!(env_value(init, "FQ_RAY_IP"), fqdn);
    let c0 = &spec.containers[0];
    assert_eq!(env_value(c0, "FQ_RAY_IP"), fqdn);
    assert_eq!(env_value(c0, "RAY_IP"), "raycluster-kuberay-head-svc");
    assert_eq!(env_value(c0, "RAY_ADDRESS"), format!("{fqdn}:6379"));
    let start = env_value(c0, "KUBERAY_GEN_RAY_START_CMD");
    assert!(
        start.starts_with(&format!("ray start  --address={fqdn}:6379  --block ")),
        "{start}"
    );
    assert!(
        start.contains("--num-cpus=1"),
        "limits win over requests: {start}"
    );
    assert!(c0.readiness_probe.as_ref().unwrap().timeout_seconds == Some(2));
}

#[test]
fn injection_can_be_turned_off_and_ray_start_kept() {
    let mut c = cluster(
        serde_json::json!({"metadata": {"annotations": {"ray.io/overwrite-container-cmd": "true"}}}),
    );
    c.spec.worker_group_specs.as_mut().unwrap()[0]
        .template
        .spec
        .as_mut()
        .unwrap()
        .containers[0]
        .command = Some(vec!["my-entry".into()]);
    let cfg = Config {
        probes_injection: false,
        init_container_injection: false,
        ..Config::default()
    };
    let pod = worker_pod(
        &PodContext {
            cluster: &c,
            cfg: &cfg,
            spec_hash: "",
        },
        &WorkerSlot::default(),
    );
    let spec = pod.spec.unwrap();
    assert!(spec.init_containers.is_none());
    let c0 = &spec.containers[0];
    assert!(c0.readiness_probe.is_none() && c0.liveness_probe.is_none());
    assert_eq!(c0.command.as_deref().unwrap(), ["my-entry"]);
    assert!(env(c0, "KUBERAY_GEN_RAY_START_CMD").is_some());
}

#[test]
fn autoscaling_adds_the_sidecar_and_its_service_account() {
    let c = cluster(
        serde_json::json!({"spec": {"enableInTreeAutoscaling": true, "autoscalerOptions": {"version": "v2", "idleTimeoutSeconds": 60}}}),
    );
    let pod = ctx_pod(&c, head_pod);
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("raycluster-kuberay")
    );
    assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
    let sidecar = spec
        .containers
        .iter()
        .find(|c| c.name == "autoscaler")
        .unwrap();
    assert_eq!(
        sidecar.args.as_deref().unwrap(),
        [
            "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)"
        ]
    );
    assert_eq!(
        env_value(&spec.containers[0], "RAY_enable_autoscaler_v2"),
        "true"
    );
    assert!(env_value(&spec.containers[0], "KUBERAY_GEN_RAY_START_CMD").contains(" --no-monitor "));
}

#[test]
fn head_service_is_headless_with_kuberays_ports() {
    let c = cluster(serde_json::json!({}));
    let svc = head_service(&c, &Config::default());
    assert_eq!(
        svc.metadata.name.as_deref(),
        Some("raycluster-kuberay-head-svc")
    );
    let spec = svc.spec.unwrap();
    assert_eq!(spec.cluster_ip.as_deref(), Some("None"));
    let ports: Vec<(String, i32)> = spec
        .ports
        .unwrap()
        .into_iter()
        .map(|p| (p.name.unwrap(), p.port))
        .collect();
    assert_eq!(
        ports,
        [
            ("client".into(), 10001),
            ("dashboard".into(), 8265),
            ("gcs-server".into(), 6379),
            ("metrics".into(), 8080),
            ("serve".into(), 8000)
        ]
    );
    assert_eq!(spec.selector.unwrap()["ray.io/node-type"], "head");
    let cip = head_service(
        &c,
        &Config {
            head_cluster_ip_service: true,
            ..Config::default()
        },
    );
    assert!(cip.spec.unwrap().cluster_ip.is_none());
}

#[test]
fn serve_and_headless_services() {
    let c = cluster(serde_json::json!({}));
    let serve = serve_service(&c);
    assert_eq!(
        serve.metadata.name.as_deref(),
        Some("raycluster-kuberay-serve-svc")
    );
    assert_eq!(
        serve.spec.as_ref().unwrap().ports.as_ref().unwrap()[0].port,
        8000
    );
    let headless = headless_service(&c);
    assert_eq!(
        headless.metadata.name.as_deref(),
        Some("raycluster-kuberay-headless")
    );
    assert_eq!(
        headless.spec.unwrap().selector.unwrap()["ray.io/node-type"],
        "worker"
    );
}

/// A pod as the cache would hold it.
fn existing(
    name: &str,
    node_type: &str,
    group: &str,
    phase: &str,
    extra: &[(&str, &str)],
) -> Arc<Pod> {
    let mut labels = BTreeMap::from([
        (
            "ray.io/cluster".to_string(),
            "raycluster-kuberay".to_string(),
        ),
        ("ray.io/node-type".to_string(), node_type.to_string()),
        ("ray.io/group".to_string(), group.to_string()),
    ]);
    labels.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    Arc::new(
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "labels": labels},
            "spec": {"containers": [{"name": "ray"}]},
            "status": {"phase": phase, "conditions": [{"type": "Ready", "status": if phase == "Running" {"True"} else {"False"}}]}
        }))
        .unwrap(),
    )
}

fn suffix() -> String {
    "abcde".into()
}

#[test]
fn scaling_creates_missing_workers_with_free_indices() {
    let c = cluster(serde_json::json!({"spec": {"workerGroupSpecs": [{"replicas": 3}]}}));
    let pods = vec![
        existing("h", "head", "headgroup", "Running", &[]),
        existing(
            "w1",
            "worker",
            "workergroup",
            "Running",
            &[("ray.io/worker-group-replica-index", "1")],
        ),
    ];
    let p = plan(
        &c,
        &pods,
        &Config::default(),
        "h",
        false,
        super::scale::MAX_WORKER_CREATIONS,
        &mut suffix,
    );
    assert!(!p.create_head);
    let idx: Vec<i32> = p
        .create_workers
        .iter()
        .map(|s| s.replica_index.unwrap())
        .collect();
    assert_eq!(idx, [0, 2]);
}

#[test]
fn scaling_down_removes_surplus_unless_the_autoscaler_decides() {
    let pods: Vec<Arc<Pod>> = ["a", "b", "c"]
        .iter()
        .map(|n| existing(n, "worker", "workergroup", "Running", &[]))
        .collect();
    let c = cluster(serde_json::json!({"spec": {"workerGroupSpecs": [{"replicas": 1}]}}));
    let p = plan(
        &c,
        &pods,
        &Config::default(),
        "h",
        false,
        super::scale::MAX_WORKER_CREATIONS,
        &mut suffix,
    );
    assert!(p.create_head);
    assert_eq!(p.deletions.len(), 2);
    let auto = cluster(
        serde_json::json!({"spec": {"enableInTreeAutoscaling": true, "workerGroupSpecs": [{"replicas": 1}]}}),
    );
    assert!(
        plan(
            &auto,
            &pods,
            &Config::default(),
            "h",
            false,
            super::scale::MAX_WORKER_CREATIONS,
            &mut suffix
        )
        .deletions
        .is_empty()
    );
}

#[test]
fn workers_to_delete_are_deleted_exactly() {
    let pods: Vec<Arc<Pod>> = ["a", "b", "c"]
        .iter()
        .map(|n| existing(n, "worker", "workergroup", "Running", &[]))
        .collect();
    let c = cluster(serde_json::json!({"spec": {"enableInTreeAutoscaling": true,
        "workerGroupSpecs": [{"replicas": 2, "scaleStrategy": {"workersToDelete": ["b"]}}]}}));
    let p = plan(
        &c,
        &pods,
        &Config::default(),
        "h",
        false,
        super::scale::MAX_WORKER_CREATIONS,
        &mut suffix,
    );
    let deleted: Vec<&str> = p
        .deletions
        .iter()
        .map(|d: &Deletion| d.pod.as_str())
        .collect();
    assert_eq!(deleted, ["b"]);
    assert!(p.create_workers.is_empty());
}

#[test]
fn broken_pods_are_replaced_and_removed_groups_emptied() {
    let pods = vec![
        existing("h", "head", "headgroup", "Failed", &[]),
        existing("w", "worker", "workergroup", "Running", &[]),
        existing("w2", "worker", "workergroup", "Running", &[]),
        existing("old", "worker", "gone-group", "Running", &[]),
    ];
    let c = cluster(serde_json::json!({}));
    let p = plan(
        &c,
        &pods,
        &Config::default(),
        "h",
        false,
        super::scale::MAX_WORKER_CREATIONS,
        &mut suffix,
    );
    let deleted: Vec<(&str, &str)> = p
        .deletions
        .iter()
        .map(|d| (d.pod.as_str(), d.reason))
        .collect();
    assert!(deleted.contains(&("h", "DeletedHeadPod")));
    assert!(deleted.contains(&("old", "DeletedWorkerPod")));
}

#[test]
fn multi_host_groups_scale_by_whole_replicas() {
    let c = cluster(
        serde_json::json!({"spec": {"workerGroupSpecs": [{"replicas": 2, "numOfHosts": 2}]}}),
    );
    let replica = |n: &str, host: &str| {
        existing(
            n,
            "worker",
            "workergroup",
            "Running",
            &[
                ("ray.io/worker-group-replica-name", "workergroup-x"),
                ("ray.io/worker-group-replica-index", "0"),
                ("ray.io/replica-host-index", host),
            ],
        )
    };
    let incomplete = existing(
        "lonely",
        "worker",
        "workergroup",
        "Running",
        &[("ray.io/worker-group-replica-name", "workergroup-y")],
    );
    let pods = vec![replica("a", "0"), replica("b", "1"), incomplete];
    let p = plan(
        &c,
        &pods,
        &Config::default(),
        "h",
        false,
        super::scale::MAX_WORKER_CREATIONS,
        &mut suffix,
    );
    assert_eq!(
        p.deletions
            .iter()
            .map(|d| d.pod.as_str())
            .collect::<Vec<_>>(),
        ["lonely"]
    );
    let created: Vec<(i32, i32)> = p
        .create_workers
        .iter()
        .map(|s| (s.replica_index.unwrap(), s.host_index.unwrap()))
        .collect();
    assert_eq!(created, [(1, 0), (1, 1)]);
    assert!(
        p.create_workers
            .iter()
            .all(|s| s.replica_name.as_deref() == Some("workergroup-abcde"))
    );
}

#[test]
fn suspend_deletes_everything_then_nothing() {
    let c = cluster(serde_json::json!({"spec": {"suspend": true}}));
    let pods = vec![existing("h", "head", "headgroup", "Running", &[])];
    assert!(
        plan(
            &c,
            &pods,
            &Config::default(),
            "h",
            true,
            super::scale::MAX_WORKER_CREATIONS,
            &mut suffix
        )
        .delete_all
        .is_some()
    );
    assert_eq!(
        plan(
            &c,
            &[],
            &Config::default(),
            "h",
            true,
            super::scale::MAX_WORKER_CREATIONS,
            &mut suffix
        ),
        Default::default()
    );
}

#[test]
fn recreate_upgrade_deletes_all_pods_when_the_spec_hash_changes() {
    let c = cluster(serde_json::json!({"spec": {"upgradeStrategy": {"type": "Recreate"}}}));
    let mut head = (*existing("h", "head", "headgroup", "Running", &[])).clone();
    head.metadata.annotations = Some(BTreeMap::from([
        (
            "ray.io/upgrade-strategy-recreate-hash".to_string(),
            "old".to_string(),
        ),
        (
            "ray.io/kuberay-version".to_string(),
            crate::runtime::config::KUBERAY_VERSION.to_string(),
        ),
    ]));
    let pods = vec![Arc::new(head.clone())];
    assert!(
        plan(
            &c,
            &pods,
            &Config::default(),
            "new",
            false,
            super::scale::MAX_WORKER_CREATIONS,
            &mut suffix
        )
        .delete_all
        .is_some()
    );
    // A head made by another operator is adopted, not recreated.
    head.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("ray.io/kuberay-version".into(), "v1.7.0".into());
    let p = plan(
        &c,
        &[Arc::new(head)],
        &Config::default(),
        "new",
        false,
        super::scale::MAX_WORKER_CREATIONS,
        &mut suffix,
    );
    assert!(p.delete_all.is_none());
    assert_eq!(p.adopt_head.as_deref(), Some("h"));
}

#[test]
fn status_counts_only_what_pods_are_doing() {
    let c = cluster(serde_json::json!({}));
    let pods = vec![
        existing("h", "head", "headgroup", "Running", &[]),
        existing("w1", "worker", "workergroup", "Running", &[]),
        existing("w2", "worker", "workergroup", "Pending", &[]),
    ];
    let now = k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(
        "2026-11-22T00:00:00Z".parse().unwrap(),
    );
    let s = compute(
        &c,
        &Observation {
            pods: &pods,
            head_service: None,
            failure: None,
            suspending: false,
            paced: false,
            now: now.clone(),
        },
    );
    assert_eq!(s.ready_worker_replicas, Some(1));
    assert_eq!(s.available_worker_replicas, Some(1));
    assert_eq!(s.desired_worker_replicas, Some(2));
    assert_eq!(
        (s.min_worker_replicas, s.max_worker_replicas),
        (Some(1), Some(5))
    );
    assert_eq!(s.desired_cpu.as_ref().unwrap().0, "2", "head 1 + 2 x 500m");
    assert_eq!(s.desired_memory.as_ref().unwrap().0, "4G");
    assert_eq!(s.state, None, "not ready while a worker is Pending");
    let cond = |s: &kuberay_api::RayClusterStatus, t: &str| {
        s.conditions
            .as_ref()
            .unwrap()
            .iter()
            .find(|c| c.type_ == t)
            .cloned()
            .unwrap()
    };
    assert_eq!(cond(&s, "RayClusterProvisioned").status, "False");
    assert_eq!(cond(&s, "HeadPodReady").status, "True");
    let all = vec![
        pods[0].clone(),
        pods[1].clone(),
        existing("w3", "worker", "workergroup", "Running", &[]),
    ];
    let ready = compute(
        &c,
        &Observation {
            pods: &all,
            head_service: None,
            failure: None,
            suspending: false,
            paced: false,
            now,
        },
    );
    assert_eq!(
        ready.state,
        Some(kuberay_api::raycluster::ClusterState::Ready)
    );
    assert_eq!(
        cond(&ready, "RayClusterProvisioned").reason,
        "AllPodRunningAndReadyFirstTime"
    );
    assert_eq!(ready.head.as_ref().unwrap().pod_name.as_deref(), Some("h"));
}

#[test]
fn a_huge_group_is_created_in_bounded_batches_and_counted_without_overflow() {
    use super::scale::MAX_WORKER_CREATIONS;
    let c = cluster(serde_json::json!({"spec": {"workerGroupSpecs": [
        {"replicas": 2_000_000_000, "maxReplicas": 2_147_483_647},
        {"groupName": "second", "replicas": 2_000_000_000, "minReplicas": 0, "maxReplicas": 2_147_483_647,
         "rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.46.0"}]}}}
    ]}}));
    let pods = vec![existing("h", "head", "headgroup", "Running", &[])];
    let p = plan(
        &c,
        &pods,
        &Config::default(),
        "h",
        false,
        super::scale::MAX_WORKER_CREATIONS,
        &mut suffix,
    );
    // One batch for the whole cluster, not per group: the first group
    // takes it, the second waits for a later pass.
    assert_eq!(p.create_workers.len(), MAX_WORKER_CREATIONS);
    assert!(p.create_workers.iter().all(|w| w.group == 0));
    assert_eq!(p.workers_missing, 4_000_000_000);
    let s = compute(
        &c,
        &Observation {
            pods: &pods,
            head_service: None,
            failure: None,
            suspending: false,
            paced: false,
            now: k8s_openapi::apimachinery::pkg::apis::meta::v1::Time(jiff::Timestamp::now()),
        },
    );
    assert_eq!(s.desired_worker_replicas, Some(i32::MAX));
}

#[test]
fn a_small_group_is_created_in_one_pass() {
    let c = cluster(serde_json::json!({"spec": {"workerGroupSpecs": [{"replicas": 5}]}}));
    let p = plan(
        &c,
        &[],
        &Config::default(),
        "h",
        false,
        super::scale::MAX_WORKER_CREATIONS,
        &mut suffix,
    );
    assert_eq!(p.create_workers.len(), 5);
    assert_eq!(p.workers_missing, 5);
}

#[test]
fn only_workers_of_a_rayservice_cluster_probe_the_serve_proxy() {
    // Serve starts once the head is ready, so a head probing its proxy
    // would never become ready; the RayService controller labels it instead.
    let c = cluster(
        serde_json::json!({"metadata": {"labels": {"ray.io/originated-from-crd": "RayService"}}}),
    );
    let probe = |p: &Pod| {
        let c0 = &p.spec.as_ref().unwrap().containers[0];
        let r = c0.readiness_probe.as_ref().unwrap();
        r.exec.as_ref().unwrap().command.as_ref().unwrap()[2].clone()
    };
    let head = ctx_pod(&c, head_pod);
    assert!(!probe(&head).contains("-/healthz"), "{}", probe(&head));
    assert_eq!(
        head.metadata.labels.as_ref().unwrap()["ray.io/serve"],
        "false"
    );
    let worker = ctx_pod(&c, |ctx| worker_pod(ctx, &WorkerSlot::default()));
    assert!(
        probe(&worker).contains("http://localhost:8000/-/healthz"),
        "{}",
        probe(&worker)
    );
    assert_eq!(
        worker.metadata.labels.as_ref().unwrap()["ray.io/serve"],
        "true"
    );
}
