//! The RayCluster controller against the local control plane with simulated
//! nodes: convergence, scaling as the Ray autoscaler drives it, replacement
//! of lost pods, suspend, invalid specs, crash safety and quiet rest (GCS
//! fault tolerance: `raycluster_gcs_ft.rs`).

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::api::{DeleteParams, Patch, PatchParams};
use kuberay_api::RayCluster;
use kuberay_api::raycluster::ClusterState;
use kuberay_operator::runtime::config::Config;
use kuberay_testenv::harness::wait_until;
use serde_json::json;
use support::*;

#[tokio::test]
async fn a_cluster_converges_to_kuberays_pods_services_and_status() {
    let (ns, _op) = setup("rc-converge", Config::default()).await;
    apply::<RayCluster>(&ns, &cluster_yaml("demo", 2)).await;
    let (head, workers) = wait_running(&ns, "demo", 2).await;
    assert!(
        head.metadata
            .name
            .as_ref()
            .unwrap()
            .starts_with("demo-head-")
    );
    assert!(workers.iter().all(|w| {
        w.metadata
            .name
            .as_ref()
            .unwrap()
            .starts_with("demo-small-worker-")
    }));
    let owner = &head.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("RayCluster", Some(true))
    );
    let svc = ns.api::<Service>().get("demo-head-svc").await.unwrap();
    assert_eq!(
        svc.spec.as_ref().unwrap().cluster_ip.as_deref(),
        Some("None")
    );

    let rc = wait_status(&ns, "demo", "the cluster to be ready", |rc| {
        rc.status.as_ref().and_then(|s| s.state.as_ref()) == Some(&ClusterState::Ready)
    })
    .await;
    let s = rc.status.as_ref().unwrap();
    assert_eq!(
        (
            s.ready_worker_replicas,
            s.available_worker_replicas,
            s.desired_worker_replicas
        ),
        (Some(2), Some(2), Some(2))
    );
    assert_eq!(s.desired_cpu.as_ref().unwrap().0, "3");
    assert_eq!(s.desired_memory.as_ref().unwrap().0, "4Gi");
    let head_info = s.head.as_ref().unwrap();
    assert_eq!(head_info.pod_name, head.metadata.name);
    assert_eq!(head_info.service_name.as_deref(), Some("demo-head-svc"));
    assert!(head_info.pod_ip.is_some());
    assert_eq!(s.endpoints.as_ref().unwrap()["dashboard"], "8265");
    assert_eq!(s.observed_generation, rc.metadata.generation);
    assert_eq!(
        condition(&rc, "RayClusterProvisioned").unwrap().1,
        "AllPodRunningAndReadyFirstTime"
    );
    assert_eq!(condition(&rc, "HeadPodReady").unwrap().0, "True");
    let events = wait_events(&ns, "demo", &["CreatedHeadPod", "CreatedWorkerPod"]).await;
    assert_eq!(
        events
            .iter()
            .filter(|(_, r, _)| r == "CreatedWorkerPod")
            .count(),
        2,
        "{events:?}"
    );
    assert!(
        events
            .iter()
            .any(|(_, r, n)| r == "CreatedService" && n.contains("demo-head-svc")),
        "{events:?}"
    );
}

#[tokio::test]
async fn scaling_follows_replicas_and_the_autoscalers_workers_to_delete() {
    let (ns, _op) = setup("rc-scale", Config::default()).await;
    apply::<RayCluster>(&ns, &cluster_yaml("scale", 1)).await;
    wait_running(&ns, "scale", 1).await;
    let api = ns.api::<RayCluster>();
    let set_replicas = |n: i32| json!([{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": n}]);
    api.patch(
        "scale",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(set_replicas(4)).unwrap()),
    )
    .await
    .unwrap();
    let (_, workers) = wait_running(&ns, "scale", 4).await;
    let indices: std::collections::BTreeSet<String> = workers
        .iter()
        .map(|w| w.metadata.labels.as_ref().unwrap()["ray.io/worker-group-replica-index"].clone())
        .collect();
    assert_eq!(
        indices.len(),
        4,
        "replica indices are distinct: {indices:?}"
    );

    // The Ray autoscaler scales down by naming the pods to remove and
    // lowering replicas in one JSON patch.
    let victims: Vec<String> = workers[..2]
        .iter()
        .map(|w| w.metadata.name.clone().unwrap())
        .collect();
    let patch = json!([
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2},
        {"op": "replace", "path": "/spec/workerGroupSpecs/0/scaleStrategy", "value": {"workersToDelete": victims}},
    ]);
    api.patch(
        "scale",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(patch).unwrap()),
    )
    .await
    .unwrap();
    let (_, left) = wait_running(&ns, "scale", 2).await;
    let left: Vec<String> = left
        .iter()
        .map(|w| w.metadata.name.clone().unwrap())
        .collect();
    assert!(
        victims.iter().all(|v| !left.contains(v)),
        "exactly the named pods went: {left:?}"
    );
    // Once the named pods are gone, the operator empties the list itself
    // (the autoscaler may not, and a stale list blocks it), and says so.
    wait_until("workersToDelete to be emptied", TIMEOUT, || async {
        let rc = api.get("scale").await.ok()?;
        let g = &rc.spec.worker_group_specs.as_ref()?[0];
        g.scale_strategy
            .as_ref()?
            .workers_to_delete
            .as_ref()?
            .is_empty()
            .then_some(())
    })
    .await;
    // The event is recorded after the patch that emptied the list: wait
    // for it rather than read the events once.
    let evs = wait_until("the ClearedWorkersToDelete event", TIMEOUT, || async {
        let evs = events(&ns, "scale").await;
        evs.iter()
            .any(|(t, r, n)| {
                t == "Normal"
                    && r == "ClearedWorkersToDelete"
                    && victims.iter().all(|v| n.contains(v.as_str()))
            })
            .then_some(evs)
    })
    .await;
    for step in ["small 1 -> 4", "small 4 -> 2"] {
        assert!(
            evs.iter()
                .any(|(_, r, n)| r == "ScaledWorkerGroup" && n.contains(step)),
            "no event says {step}: {evs:?}"
        );
    }

    api.patch(
        "scale",
        &PatchParams::default(),
        &Patch::Json::<()>(serde_json::from_value(set_replicas(0)).unwrap()),
    )
    .await
    .unwrap();
    wait_running(&ns, "scale", 0).await;
}

#[tokio::test]
async fn with_the_autoscaler_on_only_named_workers_are_removed() {
    let (ns, _op) = setup("rc-auto", Config::default()).await;
    let yaml = cluster_yaml("auto", 3).replace(
        "  headGroupSpec:",
        "  enableInTreeAutoscaling: true\n  headGroupSpec:",
    );
    apply::<RayCluster>(&ns, &yaml).await;
    let (head, _) = wait_running(&ns, "auto", 3).await;
    let containers: Vec<String> = head
        .spec
        .unwrap()
        .containers
        .into_iter()
        .map(|c| c.name)
        .collect();
    assert_eq!(containers, ["ray-head", "autoscaler"]);
    use k8s_openapi::api::rbac::v1::{Role, RoleBinding};
    ns.api::<Role>().get("auto").await.unwrap();
    ns.api::<RoleBinding>().get("auto").await.unwrap();
    ns.api::<k8s_openapi::api::core::v1::ServiceAccount>()
        .get("auto")
        .await
        .unwrap();
    // Lowering replicas alone does not make the operator pick victims.
    let patch = json!([{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 1}]);
    ns.api::<RayCluster>()
        .patch(
            "auto",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(patch).unwrap()),
        )
        .await
        .unwrap();
    // The reconcile that saw the change says so, then plans in the same
    // pass: after its status write, nothing it would delete is left.
    wait_until("the scaling event", TIMEOUT, || async {
        let evs = events(&ns, "auto").await;
        evs.iter()
            .any(|(_, r, n)| {
                r == "ScaledWorkerGroup" && n.contains("small 3 -> 1 at the autoscaler's request")
            })
            .then_some(())
    })
    .await;
    wait_status(&ns, "auto", "the new generation observed", |rc| {
        rc.status.as_ref().and_then(|s| s.observed_generation) == rc.metadata.generation
    })
    .await;
    assert_eq!(pods(&ns, "auto", "worker").await.len(), 3);
}

#[tokio::test]
async fn lost_workers_and_a_failed_head_are_replaced() {
    let (ns, _op) = setup("rc-heal", Config::default()).await;
    apply::<RayCluster>(&ns, &cluster_yaml("heal", 2)).await;
    let (head, workers) = wait_running(&ns, "heal", 2).await;
    let pods_api = ns.api::<Pod>();
    let gone = workers[0].metadata.name.clone().unwrap();
    pods_api
        .delete(&gone, &DeleteParams::default())
        .await
        .unwrap();
    let (_, workers) = wait_until("a replacement worker", TIMEOUT, || async {
        let (h, ws) = wait_running(&ns, "heal", 2).await;
        (!ws.iter().any(|w| w.metadata.name.as_deref() == Some(&gone))).then_some((h, ws))
    })
    .await;
    assert_eq!(workers.len(), 2);

    // The head fails: the operator deletes it and creates a new one.
    let head_name = head.metadata.name.clone().unwrap();
    let failed = json!({"status": {"phase": "Failed"}});
    pods_api
        .patch_status(&head_name, &PatchParams::default(), &Patch::Merge(&failed))
        .await
        .unwrap();
    wait_until("a new head", TIMEOUT, || async {
        let heads = pods(&ns, "heal", "head").await;
        let running = heads.iter().any(|h| {
            h.metadata.name.as_deref() != Some(&head_name)
                && h.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running")
        });
        running.then_some(())
    })
    .await;
    let events = wait_events(&ns, "heal", &["DeletedHeadPod"]).await;
    assert!(
        events
            .iter()
            .any(|(_, r, n)| r == "DeletedHeadPod" && n.contains("terminal state")),
        "{events:?}"
    );
}

#[tokio::test]
async fn suspend_removes_every_pod_and_resume_brings_them_back() {
    let (ns, _op) = setup("rc-suspend", Config::default()).await;
    apply::<RayCluster>(&ns, &cluster_yaml("sus", 2)).await;
    wait_running(&ns, "sus", 2).await;
    let api = ns.api::<RayCluster>();
    api.patch(
        "sus",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    let rc = wait_status(&ns, "sus", "the cluster to be suspended", |rc| {
        rc.status.as_ref().and_then(|s| s.state.as_ref()) == Some(&ClusterState::Suspended)
    })
    .await;
    assert_eq!(condition(&rc, "RayClusterSuspended").unwrap().0, "True");
    assert_eq!(condition(&rc, "RayClusterSuspending").unwrap().0, "False");
    assert!(
        pods(&ns, "sus", "head").await.is_empty() && pods(&ns, "sus", "worker").await.is_empty()
    );

    api.patch(
        "sus",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": false}})),
    )
    .await
    .unwrap();
    wait_running(&ns, "sus", 2).await;
    let rc = wait_status(&ns, "sus", "resumed and ready", |rc| {
        rc.status.as_ref().and_then(|s| s.state.as_ref()) == Some(&ClusterState::Ready)
    })
    .await;
    assert_eq!(condition(&rc, "RayClusterSuspended").unwrap().0, "False");
}

#[tokio::test]
async fn a_group_removed_from_the_spec_loses_its_pods() {
    let (ns, _op) = setup("rc-groups", Config::default()).await;
    let two_groups = cluster_yaml("grp", 1).replace(
        "  - groupName: small",
        "  - groupName: big\n    replicas: 2\n    minReplicas: 0\n    maxReplicas: 5\n    rayStartParams: {}\n    template:\n      spec:\n        containers:\n        - name: ray-worker\n          image: rayproject/ray:2.46.0\n  - groupName: small",
    );
    apply::<RayCluster>(&ns, &two_groups).await;
    wait_running(&ns, "grp", 3).await;
    apply::<RayCluster>(&ns, &cluster_yaml("grp", 1)).await;
    let (_, workers) = wait_running(&ns, "grp", 1).await;
    assert_eq!(
        workers[0].metadata.labels.as_ref().unwrap()["ray.io/group"],
        "small"
    );
}

#[tokio::test]
async fn an_invalid_spec_gets_a_condition_and_an_event_and_no_pods() {
    let (ns, op) = setup("rc-invalid", Config::default()).await;
    let bad = cluster_yaml("bad", 1).replace(
        "    minReplicas: 0\n    maxReplicas: 100",
        "    minReplicas: 5\n    maxReplicas: 3",
    );
    apply::<RayCluster>(&ns, &bad).await;
    let rc = wait_status(&ns, "bad", "the ReplicaFailure condition", |rc| {
        condition(rc, "ReplicaFailure").is_some()
    })
    .await;
    let (status, reason, message) = condition(&rc, "ReplicaFailure").unwrap();
    assert_eq!(
        (status.as_str(), reason.as_str()),
        ("True", "InvalidRayClusterSpec")
    );
    assert!(
        message.contains("spec.workerGroupSpecs[0].minReplicas: 5 is greater than maxReplicas (3)"),
        "{message}"
    );
    let events = wait_until("the Warning event", TIMEOUT, || async {
        let e = events(&ns, "bad").await;
        e.iter()
            .any(|(t, r, _)| t == "Warning" && r == "InvalidRayClusterSpec")
            .then_some(e)
    })
    .await;
    assert!(
        events
            .iter()
            .any(|(_, _, n)| n.contains("minReplicas: 5 is greater than maxReplicas (3)"))
    );
    assert!(
        pods(&ns, "bad", "head").await.is_empty(),
        "no children for an invalid spec"
    );
    assert!(
        ns.api::<Service>()
            .get_opt("bad-head-svc")
            .await
            .unwrap()
            .is_none()
    );
    // No hot loop: the operator waits for a change instead of retrying.
    let before = op.requests.snapshot().values().sum::<u64>();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let after = op.requests.snapshot().values().sum::<u64>();
    assert!(
        after - before <= 2,
        "requests while waiting on an invalid spec: {}",
        after - before
    );

    // Fixing the spec clears the condition and the cluster comes up.
    apply::<RayCluster>(&ns, &cluster_yaml("bad", 1)).await;
    wait_running(&ns, "bad", 1).await;
    wait_status(&ns, "bad", "ReplicaFailure cleared", |rc| {
        condition(rc, "ReplicaFailure").is_none()
    })
    .await;
}

#[tokio::test]
async fn killing_the_operator_mid_creation_never_duplicates_pods() {
    let (ns, first) = setup("rc-crash", Config::default()).await;
    apply::<RayCluster>(&ns, &cluster_yaml("big", 50)).await;
    wait_until("some workers created", TIMEOUT, || async {
        let n = pods(&ns, "big", "worker").await.len();
        (n >= 5).then_some(())
    })
    .await;
    first.kill();
    let _second = Operator::start(&ns.name, Config::default());
    wait_running(&ns, "big", 50).await;
    // And it stays at exactly 50 once settled.
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(pods(&ns, "big", "worker").await.len(), 50);
    assert_eq!(pods(&ns, "big", "head").await.len(), 1);
}

#[tokio::test]
async fn a_cluster_at_rest_costs_no_writes() {
    let cfg = Config {
        resync: Duration::from_millis(500),
        ..Config::default()
    };
    let (ns, op) = setup("rc-rest", cfg).await;
    apply::<RayCluster>(&ns, &cluster_yaml("rest", 2)).await;
    wait_running(&ns, "rest", 2).await;
    wait_status(&ns, "rest", "ready", |rc| {
        rc.status.as_ref().and_then(|s| s.state.as_ref()) == Some(&ClusterState::Ready)
    })
    .await;
    // Let in-flight status updates and events settle.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let before = op.requests.writes();
    let rv = ns
        .api::<RayCluster>()
        .get("rest")
        .await
        .unwrap()
        .metadata
        .resource_version;
    // A minute's worth of resyncs at KubeRay's pace would be one; this is 60.
    tokio::time::sleep(Duration::from_secs(30)).await;
    let writes = op.requests.writes() - before;
    assert_eq!(writes, 0, "writes at rest: {:?}", op.requests.snapshot());
    assert_eq!(
        ns.api::<RayCluster>()
            .get("rest")
            .await
            .unwrap()
            .metadata
            .resource_version,
        rv
    );
}

#[tokio::test]
async fn deleting_the_cluster_removes_everything() {
    let (ns, _op) = setup("rc-delete", Config::default()).await;
    apply::<RayCluster>(&ns, &cluster_yaml("gone", 2)).await;
    wait_running(&ns, "gone", 2).await;
    ns.api::<RayCluster>()
        .delete("gone", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_until(
        "pods and services to be garbage collected",
        TIMEOUT,
        || async {
            let no_pods = pods(&ns, "gone", "head").await.is_empty()
                && pods(&ns, "gone", "worker").await.is_empty();
            let no_svc = ns
                .api::<Service>()
                .get_opt("gone-head-svc")
                .await
                .ok()?
                .is_none();
            (no_pods && no_svc).then_some(())
        },
    )
    .await;
}

#[tokio::test]
async fn token_auth_gets_a_generated_secret_that_never_changes() {
    use k8s_openapi::api::core::v1::Secret;
    let (ns, _op) = setup("rc-auth", Config::default()).await;
    let yaml = cluster_yaml("secure", 1).replace(
        "  rayVersion: \"2.46.0\"",
        "  rayVersion: \"2.52.0\"\n  authOptions:\n    mode: token",
    );
    apply::<RayCluster>(&ns, &yaml).await;
    let (head, _) = wait_running(&ns, "secure", 1).await;
    let secret = ns.api::<Secret>().get("secure").await.unwrap();
    let token = secret.data.as_ref().unwrap()["auth_token"].0.clone();
    assert_eq!(token.len(), 64);
    let env = head.spec.unwrap().containers[0].env.clone().unwrap();
    let from = env
        .iter()
        .find(|e| e.name == "RAY_AUTH_TOKEN")
        .unwrap()
        .value_from
        .clone()
        .unwrap();
    assert_eq!(from.secret_key_ref.unwrap().name, "secure");
    assert!(
        env.iter()
            .any(|e| e.name == "RAY_AUTH_MODE" && e.value.as_deref() == Some("token"))
    );
    // Later reconciles leave the token alone.
    let patch = json!([{"op": "replace", "path": "/spec/workerGroupSpecs/0/replicas", "value": 2}]);
    ns.api::<RayCluster>()
        .patch(
            "secure",
            &PatchParams::default(),
            &Patch::Json::<()>(serde_json::from_value(patch).unwrap()),
        )
        .await
        .unwrap();
    wait_running(&ns, "secure", 2).await;
    let again = ns.api::<Secret>().get("secure").await.unwrap();
    assert_eq!(again.data.unwrap()["auth_token"].0, token);
}
