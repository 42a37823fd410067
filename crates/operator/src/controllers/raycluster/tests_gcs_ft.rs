//! GCS fault tolerance from inline YAML: the head and worker pods of each
//! backend, the Redis clean-up Job, and the deletion steps in order.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobCondition, JobStatus};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use serde_json::json;

use super::redis_cleanup::{Release, Step, cleanup_job, needs_finalizer, plan};
use super::tests::{cluster, ctx_pod, env, env_value};
use crate::ray::pod::{WorkerSlot, head_pod, worker_pod};
use crate::runtime::config::Config;

fn redis() -> kuberay_api::RayCluster {
    cluster(json!({"spec": {"gcsFaultToleranceOptions": {
        "redisAddress": "redis:6379",
        "redisPassword": {"valueFrom": {"secretKeyRef": {"name": "redis-auth", "key": "password"}}},
    }}}))
}

#[test]
fn the_redis_backend_gives_the_head_its_address_password_and_key_namespace() {
    let c = redis();
    let pod = ctx_pod(&c, head_pod);
    let a = pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(a["ray.io/ft-enabled"], "true");
    assert_eq!(a["ray.io/external-storage-namespace"], "1234-abcd");
    let c0 = &pod.spec.as_ref().unwrap().containers[0];
    assert_eq!(env_value(c0, "RAY_REDIS_ADDRESS"), "redis:6379");
    assert_eq!(env_value(c0, "RAY_external_storage_namespace"), "1234-abcd");
    let secret = env(c0, "REDIS_PASSWORD")
        .unwrap()
        .value_from
        .as_ref()
        .unwrap();
    assert_eq!(secret.secret_key_ref.as_ref().unwrap().name, "redis-auth");
    let args = &c0.args.as_ref().unwrap()[0];
    assert!(args.contains("--redis-password=$REDIS_PASSWORD"), "{args}");
    assert!(env(c0, "RAY_gcs_storage").is_none());

    let w = ctx_pod(&c, |ctx| worker_pod(ctx, &WorkerSlot::default()));
    let w0 = &w.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        env_value(w0, "RAY_gcs_rpc_server_reconnect_timeout_s"),
        "600"
    );
    assert!(env(w0, "RAY_REDIS_ADDRESS").is_none());
}

#[test]
fn the_embedded_backend_mounts_the_claim_and_points_ray_at_it() {
    let c = cluster(json!({"spec": {"gcsFaultToleranceOptions": {
        "backend": "rocksdb", "storage": {"subPath": "gcs/c"}
    }}}));
    let pod = ctx_pod(&c, head_pod);
    let a = pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(a["ray.io/ft-enabled"], "true");
    assert!(!a.contains_key("ray.io/external-storage-namespace"));
    let spec = pod.spec.as_ref().unwrap();
    let c0 = &spec.containers[0];
    assert_eq!(env_value(c0, "RAY_gcs_storage"), "rocksdb");
    assert_eq!(env_value(c0, "RAY_gcs_storage_path"), "/data/gcs");
    assert!(env(c0, "RAY_REDIS_ADDRESS").is_none());
    assert!(env(c0, "RAY_external_storage_namespace").is_none());
    let mount = c0
        .volume_mounts
        .iter()
        .flatten()
        .find(|m| m.name == "gcs-storage")
        .unwrap();
    assert_eq!(mount.mount_path, "/data/gcs");
    assert_eq!(mount.sub_path.as_deref(), Some("gcs/c"));
    let volume = spec
        .volumes
        .iter()
        .flatten()
        .find(|v| v.name == "gcs-storage")
        .unwrap();
    let claim = volume.persistent_volume_claim.as_ref().unwrap();
    assert_eq!(claim.claim_name, "raycluster-kuberay-gcs-pvc");
    // Workers still wait longer for a restarted head.
    let w = ctx_pod(&c, |ctx| worker_pod(ctx, &WorkerSlot::default()));
    let w0 = &w.spec.as_ref().unwrap().containers[0];
    assert_eq!(
        env_value(w0, "RAY_gcs_rpc_server_reconnect_timeout_s"),
        "600"
    );
}

#[test]
fn the_cleanup_job_is_the_head_container_running_rays_cleanup() {
    let c = redis();
    let job = cleanup_job(&c, &Config::default());
    assert_eq!(job.name_any(), "raycluster-kuberay-redis-cleanup");
    assert_eq!(job.namespace().as_deref(), Some("team"));
    let labels = job.labels();
    assert_eq!(labels["ray.io/node-type"], "redis-cleanup");
    assert_eq!(labels["ray.io/cluster"], "raycluster-kuberay");
    let owner = &job.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.controller),
        ("RayCluster", Some(true))
    );
    let spec = job.spec.as_ref().unwrap();
    assert_eq!(spec.backoff_limit, Some(0));
    assert_eq!(spec.active_deadline_seconds, Some(300));
    assert_eq!(spec.ttl_seconds_after_finished, None);
    let t = &spec.template;
    assert_eq!(
        t.metadata.as_ref().unwrap().labels.as_ref().unwrap()["ray.io/node-type"],
        "redis-cleanup"
    );
    let pod = t.spec.as_ref().unwrap();
    assert_eq!(pod.restart_policy.as_deref(), Some("Never"));
    assert_eq!(pod.containers.len(), 1);
    let c0 = &pod.containers[0];
    assert_eq!(c0.image.as_deref(), Some("rayproject/ray:2.46.0"));
    assert_eq!(c0.command.as_deref().unwrap(), ["/bin/bash", "-c", "--"]);
    let script = &c0.args.as_ref().unwrap()[0];
    assert!(script.contains("cleanup_redis_storage"), "{script}");
    assert!(!script.contains("ray start"), "{script}");
    assert!(c0.liveness_probe.is_none() && c0.readiness_probe.is_none());
    // Same Redis settings as the head, and a minute of connection retries.
    assert_eq!(env_value(c0, "RAY_REDIS_ADDRESS"), "redis:6379");
    assert_eq!(env_value(c0, "RAY_external_storage_namespace"), "1234-abcd");
    assert!(env(c0, "REDIS_PASSWORD").unwrap().value_from.is_some());
    assert_eq!(env_value(c0, "RAY_redis_db_connect_retries"), "120");
    assert_eq!(
        env_value(c0, "RAY_redis_db_connect_wait_milliseconds"),
        "500"
    );
    let r = c0.resources.as_ref().unwrap();
    for q in [r.limits.as_ref().unwrap(), r.requests.as_ref().unwrap()] {
        assert_eq!(q["cpu"].0, "200m");
        assert_eq!(q["memory"].0, "256Mi");
        assert!(!q.contains_key("nvidia.com/gpu"));
    }
    // A long name keeps its end, as KubeRay trims it.
    let long = cluster(
        json!({"metadata": {"name": "a".repeat(60)}, "spec": {"gcsFaultToleranceOptions": {"redisAddress": "r:1"}}}),
    );
    let name = cleanup_job(&long, &Config::default()).name_any();
    assert_eq!(name.len(), 63);
    assert!(name.ends_with("-redis-cleanup"));
}

fn ray_pod(node_type: &str, terminating: bool) -> Arc<Pod> {
    let mut p: Pod = serde_json::from_value(json!({"metadata": {"name": format!("p-{node_type}"),
        "labels": {"ray.io/node-type": node_type}}}))
    .unwrap();
    if terminating {
        p.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::now()));
    }
    Arc::new(p)
}

fn job(condition: Option<(&str, &str)>) -> Job {
    Job {
        status: Some(JobStatus {
            conditions: condition.map(|(t, reason)| {
                vec![JobCondition {
                    type_: t.into(),
                    status: "True".into(),
                    reason: Some(reason.into()),
                    message: Some("m".into()),
                    ..Default::default()
                }]
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

#[test]
fn deletion_goes_pods_then_job_then_finalizer() {
    let c = redis();
    let cfg = Config::default();
    let s = |pods: &[Arc<Pod>], job: Option<&Job>, secs: u64| {
        plan(&c, &cfg, pods, job, Duration::from_secs(secs))
    };
    let head = ray_pod("head", false);
    let worker = ray_pod("worker", false);
    assert_eq!(s(&[head.clone(), worker], None, 1), Step::DeletePods);
    let going = ray_pod("head", true);
    assert_eq!(
        s(std::slice::from_ref(&going), None, 10),
        Step::WaitForHead(Duration::from_secs(290))
    );
    // The clean-up pod itself is not a Ray pod to wait for.
    let cleaner = ray_pod("redis-cleanup", false);
    assert_eq!(
        s(std::slice::from_ref(&cleaner), None, 20),
        Step::CreateJob(Duration::from_secs(280))
    );
    let running = job(None);
    assert_eq!(
        s(std::slice::from_ref(&cleaner), Some(&running), 30),
        Step::WaitForJob(Duration::from_secs(270))
    );
    assert_eq!(
        s(&[], Some(&job(Some(("Complete", "Done")))), 40),
        Step::Release(Release::Cleaned)
    );
    assert_eq!(
        s(
            &[],
            Some(&job(Some(("Failed", "BackoffLimitExceeded")))),
            40
        ),
        Step::Release(Release::JobFailed("BackoffLimitExceeded: m".into()))
    );
    // The deadline beats everything, even a head that never goes.
    assert_eq!(
        s(&[going], Some(&running), 300),
        Step::Release(Release::TimedOut(Duration::from_secs(300)))
    );
}

#[test]
fn the_deadline_annotation_and_the_operator_switch_are_honoured() {
    let mut c = redis();
    c.metadata
        .annotations
        .get_or_insert_with(Default::default)
        .insert("ray.io/gcs-ft-deletion-timeout".into(), "20".into());
    let cfg = Config::default();
    assert_eq!(
        plan(&c, &cfg, &[], None, Duration::from_secs(21)),
        Step::Release(Release::TimedOut(Duration::from_secs(21)))
    );
    assert!(needs_finalizer(&c, &cfg));
    let off = Config {
        redis_cleanup: false,
        ..Config::default()
    };
    assert!(!needs_finalizer(&c, &off));
    assert_eq!(
        plan(&c, &off, &[], None, Duration::ZERO),
        Step::Release(Release::NotNeeded)
    );
    // A cluster switched to the embedded store has no Redis to clean.
    let rocks = cluster(json!({"spec": {"gcsFaultToleranceOptions": {"backend": "rocksdb"}}}));
    assert!(!needs_finalizer(&rocks, &cfg));
    assert_eq!(
        plan(&rocks, &cfg, &[], None, Duration::ZERO),
        Step::Release(Release::NotNeeded)
    );
    assert!(!needs_finalizer(&cluster(json!({})), &cfg));
}
