//! The RayCluster controller's GCS fault tolerance against the local
//! control plane with simulated nodes: the Redis clean-up finalizer and its
//! Job (no Redis runs here: the simulated clean-up pod succeeds or fails as
//! each test says), the bounded deletion, the embedded store's claim and
//! its deletion policy, conflicting options. Real Ray and Redis are in
//! `e2e_gcs_ft.rs`.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{DeleteParams, Patch, PatchParams};
use kuberay_api::RayCluster;
use kuberay_operator::runtime::config::Config;
use kuberay_testenv::harness::wait_until;
use serde_json::json;
use support::*;

/// A cluster keeping its GCS in Redis (no Redis runs here: the simulated
/// clean-up pod succeeds or fails as the test says).
fn redis_cluster_yaml(name: &str, head_annotations: &str, cluster_annotations: &str) -> String {
    cluster_yaml(name, 1)
        .replace(
            &format!("  name: {name}\n"),
            &format!("  name: {name}\n  annotations: {{{cluster_annotations}}}\n"),
        )
        .replacen(
            "    template:\n      spec:\n",
            &format!(
                "    template:\n      metadata:\n        annotations: {{{head_annotations}}}\n      spec:\n"
            ),
            1,
        )
        .replace(
            "  rayVersion: \"2.46.0\"\n",
            "  rayVersion: \"2.46.0\"\n  gcsFaultToleranceOptions:\n    redisAddress: redis:6379\n    externalStorageNamespace: ns-of-{NAME}\n    redisPassword:\n      valueFrom:\n        secretKeyRef: {name: redis-auth, key: password}\n",
        )
        .replace("{NAME}", name)
}

const FINALIZER: &str = "ray.io/gcs-ft-redis-cleanup-finalizer";

fn has_finalizer(rc: &RayCluster) -> bool {
    rc.metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == FINALIZER)
}

#[tokio::test]
async fn a_redis_cluster_is_cleaned_up_before_it_goes() {
    use k8s_openapi::api::batch::v1::Job;
    let (ns, _op) = setup("rc-gcsft", Config::default()).await;
    apply::<RayCluster>(&ns, &redis_cluster_yaml("ft", "", "")).await;
    let (head, _) = wait_running(&ns, "ft", 1).await;
    let rc = ns.api::<RayCluster>().get("ft").await.unwrap();
    assert!(has_finalizer(&rc), "{:?}", rc.metadata.finalizers);
    let env = head.spec.unwrap().containers[0].env.clone().unwrap();
    let value = |n: &str| {
        env.iter()
            .find(|e| e.name == n)
            .and_then(|e| e.value.clone())
    };
    assert_eq!(value("RAY_REDIS_ADDRESS").as_deref(), Some("redis:6379"));
    assert_eq!(
        value("RAY_external_storage_namespace").as_deref(),
        Some("ns-of-ft")
    );

    // Foreground, as `kubectl delete --cascade=foreground` does: the
    // garbage collector must not take the clean-up Job away.
    ns.api::<RayCluster>()
        .delete("ft", &DeleteParams::foreground())
        .await
        .unwrap();
    let job = wait_until("the Redis cleanup Job", TIMEOUT, || async {
        ns.api::<Job>().get_opt("ft-redis-cleanup").await.ok()?
    })
    .await;
    // The Ray pods went first: a GCS still running would write again.
    assert!(pods(&ns, "ft", "head").await.is_empty());
    assert_eq!(job.labels()["ray.io/node-type"], "redis-cleanup");
    let c = job_container(&job);
    assert!(c.args.as_ref().unwrap()[0].contains("cleanup_redis_storage"));
    wait_deleted::<RayCluster>(&ns, "ft", TIMEOUT).await;
    let events = wait_events(&ns, "ft", &["CreatedRedisCleanupJob"]).await;
    assert!(
        events.iter().any(|(t, r, n)| t == "Normal"
            && r == "CreatedRedisCleanupJob"
            && n.contains("ft-redis-cleanup")),
        "{events:?}"
    );
    assert!(!events.iter().any(|(t, _, _)| t == "Warning"), "{events:?}");
}

#[tokio::test]
async fn a_failed_cleanup_releases_the_cluster_and_says_what_is_left() {
    let (ns, _op) = setup("rc-gcsft-fail", Config::default()).await;
    let keep = "sim.kuberay-rs.dev/keep-running: \"true\"";
    apply::<RayCluster>(&ns, &redis_cluster_yaml("ftfail", keep, "")).await;
    wait_running(&ns, "ftfail", 1).await;
    ns.api::<RayCluster>()
        .delete("ftfail", &DeleteParams::background())
        .await
        .unwrap();
    // Redis unreachable: Ray's clean-up exits with 1. Once the simulated
    // node runs the pod, so that its own status write cannot undo ours.
    let lp = kube::api::ListParams::default().labels("job-name=ftfail-redis-cleanup");
    wait_until("the clean-up pod running", TIMEOUT, || async {
        let pods = ns.api::<Pod>().list(&lp).await.ok()?.items;
        pods.iter()
            .any(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .then_some(())
    })
    .await;
    finish_submitter(&ns, "ftfail-redis-cleanup", 1).await;
    wait_deleted::<RayCluster>(&ns, "ftfail", TIMEOUT).await;
    let events = wait_events(&ns, "ftfail", &["RedisCleanupFailed"]).await;
    let warning = events
        .iter()
        .find(|(t, r, _)| t == "Warning" && r == "RedisCleanupFailed")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(warning.2.contains("\"ns-of-ftfail\""), "{warning:?}");
    assert!(warning.2.contains("redis:6379"), "{warning:?}");
}

#[tokio::test]
async fn a_cleanup_that_never_ends_is_cut_off_at_the_deletion_timeout() {
    let (ns, _op) = setup("rc-gcsft-stuck", Config::default()).await;
    let keep = "sim.kuberay-rs.dev/keep-running: \"true\"";
    let bound = "ray.io/gcs-ft-deletion-timeout: \"6\"";
    apply::<RayCluster>(&ns, &redis_cluster_yaml("ftstuck", keep, bound)).await;
    wait_running(&ns, "ftstuck", 1).await;
    let started = std::time::Instant::now();
    ns.api::<RayCluster>()
        .delete("ftstuck", &DeleteParams::background())
        .await
        .unwrap();
    wait_deleted::<RayCluster>(&ns, "ftstuck", TIMEOUT).await;
    let took = started.elapsed();
    assert!(took >= Duration::from_secs(5), "released early: {took:?}");
    let events = wait_events(&ns, "ftstuck", &["ForceDeletedStuckCluster"]).await;
    let warning = events
        .iter()
        .find(|(t, r, _)| t == "Warning" && r == "ForceDeletedStuckCluster")
        .unwrap_or_else(|| panic!("{events:?}"));
    assert!(warning.2.contains("\"ns-of-ftstuck\""), "{warning:?}");
    assert!(warning.2.contains("bound is 6s"), "{warning:?}");
}

#[tokio::test]
async fn embedded_gcs_storage_gets_a_claim_that_follows_the_deletion_policy() {
    use k8s_openapi::api::core::v1::PersistentVolumeClaim;
    use kuberay_api::features::{FeatureGates, GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE};
    let mut gates = FeatureGates::default();
    gates
        .set(GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE, true)
        .unwrap();
    let (ns, _op) = setup(
        "rc-gcs-pvc",
        Config {
            gates,
            ..Config::default()
        },
    )
    .await;
    let yaml = cluster_yaml("emb", 0).replace(
        "  rayVersion: \"2.46.0\"\n",
        "  rayVersion: \"2.57.0\"\n  gcsFaultToleranceOptions:\n    backend: rocksdb\n    storage: {size: 2Gi}\n",
    );
    apply::<RayCluster>(&ns, &yaml).await;
    let claims = ns.api::<PersistentVolumeClaim>();
    let pvc = wait_until("the GCS storage claim", TIMEOUT, || async {
        claims.get_opt("emb-gcs-pvc").await.ok()?
    })
    .await;
    assert_eq!(pvc.labels()["ray.io/cluster"], "emb");
    let spec = pvc.spec.as_ref().unwrap();
    assert_eq!(spec.access_modes.as_deref().unwrap(), ["ReadWriteOnce"]);
    assert_eq!(
        spec.resources.as_ref().unwrap().requests.as_ref().unwrap()["storage"].0,
        "2Gi"
    );
    let owned = |p: &PersistentVolumeClaim| {
        p.metadata
            .owner_references
            .iter()
            .flatten()
            .any(|o| o.kind == "RayCluster" && o.controller == Some(true))
    };
    assert!(owned(&pvc));
    // The head mounts it (no provisioner here: it stays Pending).
    let head = wait_until("the head pod", TIMEOUT, || async {
        pods(&ns, "emb", "head").await.into_iter().next()
    })
    .await;
    let volumes = head.spec.unwrap().volumes.unwrap();
    let v = volumes.iter().find(|v| v.name == "gcs-storage").unwrap();
    assert_eq!(
        v.persistent_volume_claim.as_ref().unwrap().claim_name,
        "emb-gcs-pvc"
    );
    let rc = ns.api::<RayCluster>().get("emb").await.unwrap();
    assert!(
        !has_finalizer(&rc),
        "no Redis to clean: {:?}",
        rc.metadata.finalizers
    );

    // Retain: the claim loses its owner and outlives the cluster.
    ns.api::<RayCluster>()
        .patch(
            "emb",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gcsFaultToleranceOptions": {"storage": {"deletionPolicy": "Retain"}}}})),
        )
        .await
        .unwrap();
    wait_until("the claim released by the cluster", TIMEOUT, || async {
        let p = claims.get("emb-gcs-pvc").await.ok()?;
        (!owned(&p)).then_some(())
    })
    .await;
    ns.api::<RayCluster>()
        .delete("emb", &DeleteParams::background())
        .await
        .unwrap();
    wait_deleted::<RayCluster>(&ns, "emb", TIMEOUT).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(claims.get_opt("emb-gcs-pvc").await.unwrap().is_some());
    wait_events(&ns, "emb", &["CreatedPVC"]).await;
}

#[tokio::test]
async fn conflicting_gcs_options_are_listed_in_the_status() {
    let (ns, _op) = setup("rc-gcs-invalid", Config::default()).await;
    // Embedded storage without its gate on a Ray without it, and the
    // address twice.
    let yaml = cluster_yaml("bad", 1)
        .replace(
            "  rayVersion: \"2.46.0\"\n",
            "  rayVersion: \"2.46.0\"\n  gcsFaultToleranceOptions:\n    backend: rocksdb\n",
        )
        .replacen(
            "          resources: {limits: {cpu: \"1\", memory: 2Gi}}\n",
            "          resources: {limits: {cpu: \"1\", memory: 2Gi}}\n          env: [{name: RAY_REDIS_ADDRESS, value: \"r:6379\"}]\n",
            1,
        );
    apply::<RayCluster>(&ns, &yaml).await;
    let rc = wait_status(&ns, "bad", "the spec reported invalid", |rc| {
        condition(rc, "ReplicaFailure").is_some_and(|c| c.1 == "InvalidRayClusterSpec")
    })
    .await;
    let (_, _, message) = condition(&rc, "ReplicaFailure").unwrap();
    for want in [
        "spec.gcsFaultToleranceOptions.backend: rocksdb needs the GCSFaultToleranceEmbeddedStorage feature gate",
        "spec.rayVersion: the embedded rocksdb GCS store needs Ray 2.57.0 or later, but rayVersion is 2.46.0",
        "spec.headGroupSpec.template.spec.containers[0].env: RAY_REDIS_ADDRESS conflicts with spec.gcsFaultToleranceOptions",
    ] {
        assert!(message.contains(want), "{want} not in {message}");
    }
    assert!(!has_finalizer(&rc));
    assert!(pods(&ns, "bad", "head").await.is_empty());
}
