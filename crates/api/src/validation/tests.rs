//! Each rule from both sides: a valid object passes, the same object with
//! one mistake fails with an error naming the field.

use serde_json::{Value, json};

use super::*;
use crate::features::FeatureGates;
use crate::{RayCluster, RayCronJob, RayJob, RayService};

/// RFC 7386 JSON merge patch: `null` removes, objects merge, the rest replaces.
fn merge(base: &mut Value, patch: &Value) {
    match (base, patch) {
        (Value::Object(b), Value::Object(p)) => {
            for (k, v) in p {
                if v.is_null() {
                    b.remove(k);
                } else {
                    merge(b.entry(k.clone()).or_insert(Value::Null), v);
                }
            }
        }
        (b, p) => *b = p.clone(),
    }
}

fn pod(name: &str) -> Value {
    json!({"spec": {"containers": [{"name": name, "image": "rayproject/ray:2.52.0"}]}})
}

fn cluster_spec() -> Value {
    json!({
        "rayVersion": "2.52.0",
        "headGroupSpec": {"rayStartParams": {}, "template": pod("ray-head")},
        "workerGroupSpecs": [
            {"groupName": "small", "replicas": 1, "minReplicas": 0, "maxReplicas": 5, "template": pod("ray-worker")}
        ]
    })
}

fn cluster(patch: Value) -> RayCluster {
    let mut v = json!({"apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "demo"}, "spec": cluster_spec()});
    merge(&mut v, &patch);
    serde_json::from_value(v).unwrap()
}

fn job(patch: Value) -> RayJob {
    let mut v = json!({
        "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "demo"},
        "spec": {"entrypoint": "python -c 'print(1)'", "rayClusterSpec": cluster_spec()}
    });
    merge(&mut v, &patch);
    serde_json::from_value(v).unwrap()
}

fn service(patch: Value) -> RayService {
    let mut v = json!({
        "apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": "demo"},
        "spec": {"rayClusterConfig": cluster_spec(), "serveConfigV2": "applications: []"}
    });
    merge(&mut v, &patch);
    serde_json::from_value(v).unwrap()
}

fn cronjob(patch: Value) -> RayCronJob {
    let mut v = json!({
        "apiVersion": "ray.io/v1", "kind": "RayCronJob", "metadata": {"name": "nightly"},
        "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"entrypoint": "python x.py", "rayClusterSpec": cluster_spec()}}
    });
    merge(&mut v, &patch);
    serde_json::from_value(v).unwrap()
}

fn all_gates() -> FeatureGates {
    let mut g = FeatureGates::default();
    for (name, _) in crate::features::DEFAULTS {
        g.set(name, true).unwrap();
    }
    g
}

/// Asserts that the result has an error at `field` whose message contains `text`.
#[track_caller]
fn assert_error(result: Result<(), Invalid>, field: &str, text: &str) {
    let errs = result.expect_err("expected a validation error").0;
    assert!(
        errs.iter()
            .any(|e| e.field == field && e.message.contains(text)),
        "no error at {field} containing {text:?}; got: {}",
        Invalid(errs.clone())
    );
}

fn rc(patch: Value) -> Result<(), Invalid> {
    validate_raycluster(&cluster(patch), &FeatureGates::default())
}

fn rj(patch: Value) -> Result<(), Invalid> {
    validate_rayjob(&job(patch), &FeatureGates::default())
}

fn rs(patch: Value) -> Result<(), Invalid> {
    validate_rayservice(&service(patch), &FeatureGates::default())
}

fn worker(patch: Value) -> Value {
    let mut w = cluster_spec()["workerGroupSpecs"][0].clone();
    merge(&mut w, &patch);
    w
}

#[test]
fn the_base_objects_are_valid() {
    rc(json!({})).unwrap();
    rj(json!({})).unwrap();
    rs(json!({})).unwrap();
    validate_raycronjob(&cronjob(json!({})), &FeatureGates::default()).unwrap();
}

#[test]
fn errors_name_field_and_problem_and_all_are_reported() {
    let err = rc(json!({"spec": {"workerGroupSpecs": [
        worker(json!({"minReplicas": 5, "maxReplicas": 3})),
        worker(json!({"groupName": "other", "numOfHosts": 0})),
    ]}}))
    .unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("spec.workerGroupSpecs[0].minReplicas: 5 is greater than maxReplicas (3)"),
        "{text}"
    );
    assert!(
        text.contains("spec.workerGroupSpecs[1].numOfHosts: 0 is less than 1"),
        "{text}"
    );
}

#[test]
fn cluster_names_must_leave_room_for_generated_names() {
    let long = "a".repeat(54);
    assert_error(
        rc(json!({"metadata": {"name": long}})),
        "metadata.name",
        "at most 53",
    );
    rc(json!({"metadata": {"name": "a".repeat(53)}})).unwrap();
    assert_error(
        rc(json!({"metadata": {"name": "1abc"}})),
        "metadata.name",
        "must start with a lower-case letter",
    );
    assert_error(
        rc(json!({"metadata": {"name": "Abc"}})),
        "metadata.name",
        "DNS-1035",
    );
}

#[test]
fn worker_group_names_are_unique_and_bounds_hold() {
    assert_error(
        rc(json!({"spec": {"workerGroupSpecs": [worker(json!({})), worker(json!({}))]}})),
        "spec.workerGroupSpecs[1].groupName",
        "already the name of workerGroupSpecs[0]",
    );
    assert_error(
        rc(json!({"spec": {"workerGroupSpecs": [worker(json!({"minReplicas": -1}))]}})),
        "spec.workerGroupSpecs[0].minReplicas",
        "negative",
    );
    assert_error(
        rc(json!({"spec": {"workerGroupSpecs": [worker(json!({"maxReplicas": -2}))]}})),
        "spec.workerGroupSpecs[0].maxReplicas",
        "negative",
    );
    assert_error(
        rc(json!({"spec": {"workerGroupSpecs": [worker(json!({"minReplicas": null}))]}})),
        "spec.workerGroupSpecs[0]",
        "must both be set when autoscaling is off",
    );
    // With autoscaling on, the bounds may be left to the autoscaler.
    rc(json!({"spec": {"enableInTreeAutoscaling": true, "workerGroupSpecs": [worker(json!({"minReplicas": null}))]}})).unwrap();
}

#[test]
fn every_group_needs_a_ray_container() {
    assert_error(
        rc(json!({"spec": {"headGroupSpec": {"template": {"spec": {"containers": []}}}}})),
        "spec.headGroupSpec.template.spec.containers",
        "at least one container",
    );
    assert_error(
        rc(
            json!({"spec": {"workerGroupSpecs": [worker(json!({"template": {"spec": {"containers": []}}}))]}}),
        ),
        "spec.workerGroupSpecs[0].template.spec.containers",
        "at least one container",
    );
}

#[test]
fn resources_live_in_one_place_and_labels_are_valid() {
    assert_error(
        rc(
            json!({"spec": {"headGroupSpec": {"rayStartParams": {"num-cpus": "1"}, "resources": {"CPU": "1"}}}}),
        ),
        "spec.headGroupSpec.resources",
        "num-cpus",
    );
    rc(json!({"spec": {"headGroupSpec": {"rayStartParams": {"num-cpus": "1"}}}})).unwrap();
    assert_error(
        rc(json!({"spec": {"headGroupSpec": {"rayStartParams": {"labels": "a=b"}}}})),
        "spec.headGroupSpec.rayStartParams.labels",
        "use the group's `labels` field",
    );
    assert_error(
        rc(json!({"spec": {"workerGroupSpecs": [worker(json!({"labels": {"bad key!": "x"}}))]}})),
        "spec.workerGroupSpecs[0].labels[\"bad key!\"]",
        "invalid label key",
    );
    assert_error(
        rc(
            json!({"spec": {"workerGroupSpecs": [worker(json!({"labels": {"ray.io/zone": "-x"}}))]}}),
        ),
        "spec.workerGroupSpecs[0].labels[\"ray.io/zone\"]",
        "invalid label value",
    );
    rc(json!({"spec": {"workerGroupSpecs": [worker(json!({"labels": {"ray.io/zone": "us-east-1a"}}))]}})).unwrap();
}

#[test]
fn autoscaler_v2_rules() {
    let v2 = json!({"enableInTreeAutoscaling": true, "autoscalerOptions": {"version": "v2"}});
    let mut with_timeout = v2.clone();
    merge(
        &mut with_timeout,
        &json!({"workerGroupSpecs": [worker(json!({"idleTimeoutSeconds": 30}))]}),
    );
    rc(json!({"spec": with_timeout})).unwrap();
    assert_error(
        rc(json!({"spec": {"workerGroupSpecs": [worker(json!({"idleTimeoutSeconds": 30}))]}})),
        "spec.workerGroupSpecs[0].idleTimeoutSeconds",
        "autoscaler v2",
    );
    let mut restart = v2.clone();
    merge(
        &mut restart,
        &json!({"headGroupSpec": {"template": {"spec": {"restartPolicy": "Always"}}}}),
    );
    assert_error(
        rc(json!({"spec": restart})),
        "spec.headGroupSpec.template.spec.restartPolicy",
        "Never or unset",
    );
    let env = json!({"spec": {"headGroupSpec": {"template": {"spec": {"containers": [
        {"name": "ray-head", "env": [{"name": "RAY_enable_autoscaler_v2", "value": "true"}]}
    ]}}}}});
    assert_error(
        rc(env),
        "spec.headGroupSpec.template.spec.containers[0].env",
        "needs enableInTreeAutoscaling",
    );
    assert_error(
        rc(
            json!({"spec": {"autoscalerOptions": {"env": [{"name": "KUBERAY_GEN_AUTOSCALER_START_CMD", "value": "x"}]}}}),
        ),
        "spec.autoscalerOptions.env",
        "generates it",
    );
    let mut old_ray = v2.clone();
    merge(&mut old_ray, &json!({"rayVersion": "2.9.3"}));
    assert_error(
        rc(json!({"spec": old_ray})),
        "spec.rayVersion",
        "is 2.9.3, but the Ray autoscaler v2 needs Ray 2.10.0 or later",
    );
    let mut new_ray = v2.clone();
    merge(&mut new_ray, &json!({"rayVersion": "2.10.0"}));
    rc(json!({"spec": new_ray})).unwrap();
    assert_error(
        rc(json!({"spec": {"autoscalerOptions": {"version": "v3"}}})),
        "spec.autoscalerOptions.version",
        "unsupported value \"v3\"",
    );
}

#[test]
fn priorities_need_recent_ray_and_autoscaler_v2() {
    let spec = json!({"rayVersion": "2.56.0", "enableInTreeAutoscaling": true, "autoscalerOptions": {"version": "v2"},
        "workerGroupSpecs": [worker(json!({"priority": 3}))]});
    rc(json!({"spec": spec})).unwrap();
    assert_error(
        rc(
            json!({"spec": {"rayVersion": "2.50.0", "workerGroupSpecs": [worker(json!({"priority": 3}))]}}),
        ),
        "spec.workerGroupSpecs[0].priority",
        "needs Ray 2.56.0 or later, but rayVersion is 2.50.0",
    );
}

#[test]
fn suspended_groups_conflict_with_autoscaling() {
    rc(json!({"spec": {"workerGroupSpecs": [worker(json!({"suspend": true}))]}})).unwrap();
    assert_error(
        rc(
            json!({"spec": {"enableInTreeAutoscaling": true, "workerGroupSpecs": [worker(json!({"suspend": true}))]}}),
        ),
        "spec.workerGroupSpecs[0].suspend",
        "autoscaler",
    );
}

#[test]
fn gcs_fault_tolerance_rules() {
    rc(json!({"spec": {"gcsFaultToleranceOptions": {"redisAddress": "redis:6379"}}})).unwrap();
    assert_error(
        rc(
            json!({"metadata": {"annotations": {"ray.io/ft-enabled": "true"}}, "spec": {"gcsFaultToleranceOptions": {"redisAddress": "r:6379"}}}),
        ),
        "metadata.annotations[\"ray.io/ft-enabled\"]",
        "use only gcsFaultToleranceOptions",
    );
    assert_error(
        rc(
            json!({"spec": {"gcsFaultToleranceOptions": {"redisAddress": "r:6379"}, "headGroupSpec": {"rayStartParams": {"redis-password": "x"}}}}),
        ),
        "spec.headGroupSpec.rayStartParams.redis-password",
        "redisPassword",
    );
    let env = |name: &str| json!({"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head", "env": [{"name": name, "value": "x"}]}]}}}});
    assert_error(
        rc(json!({"spec": env("RAY_REDIS_ADDRESS")})),
        "spec.headGroupSpec.template.spec.containers[0].env",
        "implicitly",
    );
    assert_error(
        rc(json!({"spec": env("REDIS_USERNAME")})),
        "spec.headGroupSpec",
        "redisUsername",
    );
    assert_error(
        rc(
            json!({"spec": {"gcsFaultToleranceOptions": {"redisAddress": "r:6379", "storage": {"size": "1Gi"}}}}),
        ),
        "spec.gcsFaultToleranceOptions.storage",
        "only to the rocksdb backend",
    );
    let rocks = json!({"spec": {"gcsFaultToleranceOptions": {"backend": "rocksdb", "redisAddress": "r:6379"}}});
    assert_error(
        rc(rocks.clone()),
        "spec.gcsFaultToleranceOptions.backend",
        "GCSFaultToleranceEmbeddedStorage",
    );
    assert_error(
        validate_raycluster(&cluster(rocks), &all_gates()),
        "spec.gcsFaultToleranceOptions.redisAddress",
        "only to the redis backend",
    );
    let rocks_with_mount = json!({"spec": {"rayVersion": "2.57.0", "gcsFaultToleranceOptions": {"backend": "rocksdb"}, "headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head", "volumeMounts": [{"name": "state", "mountPath": "/data/gcs"}]}]}}}}});
    assert_error(
        validate_raycluster(&cluster(rocks_with_mount), &all_gates()),
        "spec.headGroupSpec.template.spec.containers[0].volumeMounts",
        "/data/gcs",
    );
}

#[test]
fn gcs_fault_tolerance_needs_a_ray_that_has_it() {
    let old_ray = json!({"spec": {"rayVersion": "1.13.0", "gcsFaultToleranceOptions": {"redisAddress": "r:6379"}}});
    assert_error(
        rc(old_ray),
        "spec.rayVersion",
        "GCS fault tolerance needs Ray 2.0.0 or later, but rayVersion is 1.13.0",
    );
    assert_error(
        rc(
            json!({"metadata": {"annotations": {"ray.io/ft-enabled": "true"}}, "spec": {"rayVersion": "1.9.2"}}),
        ),
        "spec.rayVersion",
        "needs Ray 2.0.0",
    );
    // Turned off by the annotation, or no version given: nothing to check.
    rc(json!({"metadata": {"annotations": {"ray.io/ft-enabled": "false"}}, "spec": {"rayVersion": "1.9.2"}})).unwrap();
    rc(json!({"spec": {"rayVersion": null, "gcsFaultToleranceOptions": {"redisAddress": "r:6379"}}})).unwrap();
    let username = |v: &str| json!({"spec": {"rayVersion": v, "gcsFaultToleranceOptions": {"redisAddress": "r:6379", "redisUsername": {"value": "u"}}}});
    assert_error(
        rc(username("2.40.0")),
        "spec.gcsFaultToleranceOptions.redisUsername",
        "needs Ray 2.41.0 or later",
    );
    rc(username("2.41.0")).unwrap();
    let rocks = |v: &str| json!({"spec": {"rayVersion": v, "gcsFaultToleranceOptions": {"backend": "rocksdb"}}});
    assert_error(
        validate_raycluster(&cluster(rocks("2.52.0")), &all_gates()),
        "spec.rayVersion",
        "the embedded rocksdb GCS store needs Ray 2.57.0 or later, but rayVersion is 2.52.0",
    );
    validate_raycluster(&cluster(rocks("2.57.0")), &all_gates()).unwrap();
}

#[test]
fn gcs_ft_deletion_timeout_must_be_seconds() {
    let with = |v: &str| json!({"metadata": {"annotations": {"ray.io/gcs-ft-deletion-timeout": v}}, "spec": {"gcsFaultToleranceOptions": {"redisAddress": "r:6379"}}});
    for bad in ["0", "-5", "5m", ""] {
        assert_error(
            rc(with(bad)),
            "metadata.annotations[\"ray.io/gcs-ft-deletion-timeout\"]",
            "not a positive whole number of seconds",
        );
    }
    rc(with("600")).unwrap();
}

#[test]
fn alpha_features_need_their_gates() {
    let np = json!({"spec": {"networkPolicy": {"mode": "DenyAll"}}});
    assert_error(
        rc(np.clone()),
        "spec.networkPolicy",
        "RayClusterNetworkPolicy",
    );
    validate_raycluster(&cluster(np), &all_gates()).unwrap();
    assert_error(
        rc(json!({"spec": {"tlsOptions": {"enabled": true}}})),
        "spec.tlsOptions",
        "RayClusterMTLS",
    );
    assert_error(
        validate_raycluster(
            &cluster(
                json!({"spec": {"networkPolicy": {"mode": "DenyAllIngress", "head": {"egressRules": [{}]}}}}),
            ),
            &all_gates(),
        ),
        "spec.networkPolicy.head.egressRules",
        "egress is not restricted",
    );
    assert_error(
        validate_raycluster(
            &cluster(json!({"spec": {"networkPolicy": {"workerGroups": [{"groupName": "nope"}]}}})),
            &all_gates(),
        ),
        "spec.networkPolicy.workerGroups[0].groupName",
        "not the name of any worker group",
    );
    assert_error(
        rc(json!({"spec": {"historyServerOptions": {"collectorOptions": {}}}})),
        "spec.historyServerOptions.collectorOptions.image",
        "must be set",
    );
}

#[test]
fn token_auth_needs_ray_2_52() {
    rc(json!({"spec": {"authOptions": {"mode": "token"}}})).unwrap();
    assert_error(
        rc(json!({"spec": {"rayVersion": "2.46.0", "authOptions": {"mode": "token"}}})),
        "spec.authOptions.mode",
        "needs Ray 2.52.0",
    );
    assert_error(
        rc(json!({"spec": {"authOptions": {"enableK8sTokenAuth": true}}})),
        "spec.authOptions.enableK8sTokenAuth",
        "needs authOptions.mode: token",
    );
}

#[test]
fn upgrade_strategy_and_managed_by() {
    rc(json!({"spec": {"upgradeStrategy": {"type": "Recreate"}}})).unwrap();
    assert_error(
        rc(json!({"spec": {"upgradeStrategy": {"type": "Rolling"}}})),
        "spec.upgradeStrategy.type",
        "supported: Recreate, None",
    );
    assert_error(
        rc(
            json!({"metadata": {"labels": {"ray.io/originated-from-crd": "RayJob"}}, "spec": {"upgradeStrategy": {"type": "Recreate"}}}),
        ),
        "spec.upgradeStrategy",
        "created by a RayJob",
    );
    assert_error(
        rc(json!({"spec": {"managedBy": "someone/else"}})),
        "spec.managedBy",
        "is not supported",
    );
    rc(json!({"spec": {"managedBy": "kueue.x-k8s.io/multikueue"}})).unwrap();
}

#[test]
fn suspending_and_suspended_cannot_both_be_true() {
    let mut c = cluster(json!({}));
    c.status = serde_json::from_value(json!({"conditions": [
        {"type": "RayClusterSuspending", "status": "True", "reason": "x", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
        {"type": "RayClusterSuspended", "status": "True", "reason": "x", "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}
    ]}))
    .unwrap();
    assert_error(
        validate_raycluster_status(&c),
        "status.conditions",
        "both True",
    );
}

#[test]
fn rayjob_cluster_choice() {
    assert_error(
        rj(json!({"spec": {"rayClusterSpec": null}})),
        "spec",
        "one of rayClusterSpec and clusterSelector",
    );
    assert_error(
        rj(json!({"spec": {"clusterSelector": {"ray.io/cluster": "c"}}})),
        "spec.clusterSelector",
        "cannot be combined with rayClusterSpec",
    );
    rj(json!({"spec": {"rayClusterSpec": null, "clusterSelector": {"ray.io/cluster": "c"}}}))
        .unwrap();
    assert_error(
        rj(json!({"spec": {"rayClusterSpec": null, "clusterSelector": {"team": "a"}}})),
        "spec.clusterSelector",
        "\"ray.io/cluster\"",
    );
    assert_error(
        rj(
            json!({"spec": {"rayClusterSpec": null, "clusterSelector": {"ray.io/cluster": "c"}, "backoffLimit": 2}}),
        ),
        "spec.backoffLimit",
        "clusterSelector",
    );
    assert_error(
        rj(
            json!({"spec": {"rayClusterSpec": {"workerGroupSpecs": [worker(json!({"minReplicas": 9}))]}}}),
        ),
        "spec.rayClusterSpec.workerGroupSpecs[0].minReplicas",
        "greater than maxReplicas (5)",
    );
}

#[test]
fn rayjob_modes() {
    assert_error(
        rj(json!({"spec": {"submissionMode": "BatchMode"}})),
        "spec.submissionMode",
        "unsupported value \"BatchMode\"",
    );
    rj(json!({"spec": {"submissionMode": "InteractiveMode", "entrypoint": null}})).unwrap();
    assert_error(
        rj(json!({"spec": {"entrypoint": null}})),
        "spec.entrypoint",
        "must be set in K8sJobMode",
    );
    assert_error(
        rj(json!({"spec": {"submissionMode": "InteractiveMode", "backoffLimit": 1}})),
        "spec.backoffLimit",
        "InteractiveMode",
    );
    assert_error(
        rj(
            json!({"spec": {"submissionMode": "SidecarMode", "submitterPodTemplate": pod("submitter")}}),
        ),
        "spec.submitterPodTemplate",
        "SidecarMode",
    );
    assert_error(
        rj(
            json!({"spec": {"submissionMode": "SidecarMode", "rayClusterSpec": {"headGroupSpec": {"template": {"spec": {"restartPolicy": "Always"}}}}}}),
        ),
        "spec.rayClusterSpec.headGroupSpec.template.spec.restartPolicy",
        "SidecarMode",
    );
}

#[test]
fn rayjob_inputs_parse() {
    rj(json!({"spec": {"runtimeEnvYAML": "pip:\n  - requests\nenv_vars:\n  A: b\n"}})).unwrap();
    assert_error(
        rj(json!({"spec": {"runtimeEnvYAML": "pip: [unclosed"}})),
        "spec.runtimeEnvYAML",
        "not valid YAML",
    );
    assert_error(
        rj(json!({"spec": {"runtimeEnvYAML": "- a\n- b"}})),
        "spec.runtimeEnvYAML",
        "must be a YAML mapping",
    );
    rj(json!({"spec": {"entrypointResources": "{\"custom\": 1.5}"}})).unwrap();
    assert_error(
        rj(json!({"spec": {"entrypointResources": "{\"custom\": \"x\"}"}})),
        "spec.entrypointResources",
        "not a number",
    );
    assert_error(
        rj(json!({"spec": {"entrypointResources": "custom=1"}})),
        "spec.entrypointResources",
        "JSON object",
    );
}

#[test]
fn rayjob_time_limits_and_retries() {
    assert_error(
        rj(json!({"spec": {"activeDeadlineSeconds": 0}})),
        "spec.activeDeadlineSeconds",
        "not a positive",
    );
    assert_error(
        rj(json!({"spec": {"preRunningDeadlineSeconds": -5}})),
        "spec.preRunningDeadlineSeconds",
        "not a positive",
    );
    assert_error(
        rj(json!({"spec": {"backoffLimit": -1}})),
        "spec.backoffLimit",
        "negative",
    );
    assert_error(
        rj(json!({"spec": {"submitterConfig": {"backoffLimit": -1}}})),
        "spec.submitterConfig.backoffLimit",
        "negative",
    );
    rj(json!({"spec": {"activeDeadlineSeconds": 60, "preRunningDeadlineSeconds": 30, "backoffLimit": 2}})).unwrap();
}

#[test]
fn rayjob_shutdown_and_suspend() {
    assert_error(
        rj(json!({"spec": {"ttlSecondsAfterFinished": 10}})),
        "spec.ttlSecondsAfterFinished",
        "shutdownAfterJobFinishes",
    );
    rj(json!({"spec": {"ttlSecondsAfterFinished": 10, "shutdownAfterJobFinishes": true}})).unwrap();
    assert_error(
        rj(json!({"spec": {"suspend": true}})),
        "spec.suspend",
        "shutdownAfterJobFinishes: true",
    );
    rj(json!({"spec": {"suspend": true, "shutdownAfterJobFinishes": true}})).unwrap();
}

#[test]
fn rayjob_deletion_rules() {
    let rule = |status: &str, policy: &str, ttl: i32| json!({"condition": {"jobStatus": status, "ttlSeconds": ttl}, "policy": policy});
    let rules = |r: Vec<Value>| json!({"spec": {"deletionStrategy": {"deletionRules": r}}});
    rj(rules(vec![
        rule("SUCCEEDED", "DeleteWorkers", 10),
        rule("SUCCEEDED", "DeleteCluster", 20),
        rule("FAILED", "DeleteSelf", 0),
    ]))
    .unwrap();
    assert_error(
        rj(
            json!({"spec": {"shutdownAfterJobFinishes": true, "deletionStrategy": {"deletionRules": [rule("SUCCEEDED", "DeleteCluster", 0)]}}}),
        ),
        "spec.deletionStrategy.deletionRules",
        "shutdownAfterJobFinishes",
    );
    assert_error(
        rj(rules(vec![
            rule("SUCCEEDED", "DeleteCluster", 30),
            rule("SUCCEEDED", "DeleteSelf", 10),
        ])),
        "spec.deletionStrategy.deletionRules[1].condition.ttlSeconds",
        "TTLs must not decrease",
    );
    assert_error(
        rj(rules(vec![
            rule("FAILED", "DeleteCluster", 1),
            rule("FAILED", "DeleteCluster", 2),
        ])),
        "spec.deletionStrategy.deletionRules[1]",
        "duplicates deletionRules[0]",
    );
    assert_error(
        rj(rules(vec![
            json!({"condition": {"jobStatus": "FAILED", "jobDeploymentStatus": "Failed"}, "policy": "DeleteSelf"}),
        ])),
        "spec.deletionStrategy.deletionRules[0].condition",
        "not both",
    );
    assert_error(
        rj(json!({"spec": {"deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}}}})),
        "spec.deletionStrategy.onFailure.policy",
        "must be set",
    );
    rj(json!({"spec": {"deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteNone"}}}})).unwrap();
    assert_error(
        rj(
            json!({"spec": {"deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}, "onFailure": {"policy": "DeleteNone"}, "deletionRules": [rule("FAILED", "DeleteSelf", 0)]}}}),
        ),
        "spec.deletionStrategy",
        "not both",
    );
    assert_error(
        rj(
            json!({"spec": {"rayClusterSpec": null, "clusterSelector": {"ray.io/cluster": "c"}, "deletionStrategy": {"deletionRules": [rule("FAILED", "DeleteCluster", 0)]}}}),
        ),
        "spec.deletionStrategy.deletionRules[0].policy",
        "clusterSelector",
    );
    let mut gates = FeatureGates::default();
    gates
        .set(crate::features::RAY_JOB_DELETION_POLICY, false)
        .unwrap();
    assert_error(
        validate_rayjob(&job(rules(vec![rule("FAILED", "DeleteSelf", 0)])), &gates),
        "spec.deletionStrategy",
        "RayJobDeletionPolicy",
    );
}

#[test]
fn rayjob_name_and_status() {
    assert_error(
        rj(json!({"metadata": {"name": "j".repeat(48)}})),
        "metadata.name",
        "at most 47",
    );
    let mut j = job(json!({}));
    j.status = serde_json::from_value(json!({"jobDeploymentStatus": "Waiting"})).unwrap();
    assert_error(
        validate_rayjob_status(&j),
        "status.jobDeploymentStatus",
        "InteractiveMode",
    );
}

#[test]
fn rayservice_rules() {
    assert_error(
        rs(json!({"metadata": {"name": "s".repeat(48)}})),
        "metadata.name",
        "at most 47",
    );
    assert_error(
        rs(json!({"metadata": {"annotations": {"ray.io/initializing-timeout": "soon"}}})),
        "metadata.annotations[\"ray.io/initializing-timeout\"]",
        "not a duration",
    );
    rs(json!({"metadata": {"annotations": {"ray.io/initializing-timeout": "1h30m"}}})).unwrap();
    assert_error(
        rs(
            json!({"spec": {"rayClusterConfig": {"headGroupSpec": {"headService": {"metadata": {"name": "fixed"}}}}}}),
        ),
        "spec.rayClusterConfig.headGroupSpec.headService.metadata.name",
        "must not be set",
    );
    assert_error(
        rs(json!({"spec": {"serveConfigV2": "applications: ["}})),
        "spec.serveConfigV2",
        "not valid YAML",
    );
    assert_error(
        rs(json!({"spec": {"upgradeStrategy": {"type": "BlueGreen"}}})),
        "spec.upgradeStrategy.type",
        "unsupported value",
    );
    let incremental = |opts: Value| {
        json!({"spec": {"rayClusterConfig": {"enableInTreeAutoscaling": true},
            "upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade", "clusterUpgradeOptions": opts}}})
    };
    rs(incremental(
        json!({"gatewayClassName": "istio", "intervalSeconds": 10, "stepSizePercent": 20}),
    ))
    .unwrap();
    assert_error(
        rs(incremental(
            json!({"gatewayClassName": "istio", "intervalSeconds": 10, "stepSizePercent": 50, "maxSurgePercent": 20}),
        )),
        "spec.upgradeStrategy.clusterUpgradeOptions.stepSizePercent",
        "greater than maxSurgePercent (20)",
    );
    assert_error(
        rs(incremental(
            json!({"gatewayClassName": "", "intervalSeconds": 0, "stepSizePercent": 20}),
        )),
        "spec.upgradeStrategy.clusterUpgradeOptions.intervalSeconds",
        "not a positive",
    );
    assert_error(
        rs(json!({"spec": {"upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade"}}})),
        "spec.rayClusterConfig.enableInTreeAutoscaling",
        "must be true",
    );
}

#[test]
fn go_durations_and_seconds_are_accepted() {
    use super::rayservice::parse_timeout;
    assert_eq!(parse_timeout("90").unwrap().as_secs(), 90);
    assert_eq!(parse_timeout("1h30m").unwrap().as_secs(), 5400);
    assert_eq!(parse_timeout("1.5s").unwrap().as_millis(), 1500);
    assert!(parse_timeout("0").is_err());
    assert!(parse_timeout("0s").is_err());
    assert!(parse_timeout("5 minutes").is_err());
}

#[test]
fn raycronjob_rules() {
    let g = FeatureGates::default();
    assert_error(
        validate_raycronjob(&cronjob(json!({"spec": {"schedule": "every day"}})), &g),
        "spec.schedule",
        "not a cron schedule",
    );
    validate_raycronjob(
        &cronjob(json!({"spec": {"schedule": "@hourly", "timeZone": "Europe/Paris"}})),
        &g,
    )
    .unwrap();
    assert_error(
        validate_raycronjob(
            &cronjob(json!({"spec": {"schedule": "CRON_TZ=UTC 0 * * * *"}})),
            &g,
        ),
        "spec.schedule",
        "spec.timeZone",
    );
    assert_error(
        validate_raycronjob(&cronjob(json!({"spec": {"timeZone": "Mars/Olympus"}})), &g),
        "spec.timeZone",
        "not a known time zone",
    );
    assert_error(
        validate_raycronjob(&cronjob(json!({"metadata": {"name": "c".repeat(37)}})), &g),
        "metadata.name",
        "at most 36",
    );
    assert_error(
        validate_raycronjob(
            &cronjob(json!({"spec": {"jobTemplate": {"entrypoint": null}}})),
            &g,
        ),
        "spec.jobTemplate.entrypoint",
        "must be set",
    );
}

#[test]
fn label_and_name_helpers() {
    assert!(dns1035_label_problem("ray-cluster-1").is_none());
    assert!(dns1035_label_problem("ray_cluster").is_some());
    assert!(dns1035_label_problem("ray-").is_some());
    assert!(dns1123_label_problem("1group").is_none());
    assert!(label_key_problem("example.com/team").is_none());
    assert!(label_key_problem("Example.com/team").is_some());
    assert!(label_key_problem("/team").is_some());
    assert!(label_value_problem("").is_none());
    assert!(label_value_problem(&"v".repeat(64)).is_some());
    assert_eq!(parse_ray_version("2.52.1"), Some((2, 52, 1)));
    assert_eq!(parse_ray_version("2.9"), Some((2, 9, 0)));
    assert_eq!(parse_ray_version("nightly"), None);
}
