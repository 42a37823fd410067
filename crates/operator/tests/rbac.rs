//! Least privilege, checked both ways against `kuberay_operator::rbac`: the
//! roles the Helm chart and `config/rbac` install grant exactly the declared
//! rules; and the operator, running under the chart's ServiceAccount through
//! a scenario that takes every controller path that writes, needs every
//! permission it is declared to call and nothing it is not granted.

mod support;

use std::collections::BTreeSet;
use std::sync::Arc;

use k8s_openapi::api::events::v1::Event;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::ResourceExt;
use kube::api::{Patch, PatchParams};
use kuberay_api::features::{FeatureGates, GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE, RAY_CRON_JOB};
use kuberay_api::raycluster::ClusterState;
use kuberay_api::rayjob::JobDeploymentStatus;
use kuberay_api::{RayCluster, RayCronJob, RayJob, RayService};
use kuberay_operator::controllers::rayservice::gateway::{Gateway, HTTPRoute};
use kuberay_operator::kit::clock::TestClock;
use kuberay_operator::rbac::{
    self, LEADER_ELECTION_RULES, OPERATOR_RULES, Permission, called_permissions, permissions,
};
use kuberay_operator::runtime::config::Config;
use kuberay_testenv::harness::{self, wait_until};
use serde_json::json;
use support::cli::*;
use support::fake_dashboard::FakeDashboard;
use support::*;

/// The documents of a multi-document YAML stream.
fn documents(yaml: &str) -> Vec<serde_json::Value> {
    serde_yaml::Deserializer::from_str(yaml)
        .filter_map(|d| serde::Deserialize::deserialize(d).ok())
        .filter(|v: &serde_json::Value| v.is_object())
        .collect()
}

/// The permissions granted by the objects of `kind` whose name satisfies
/// `name`, each object on its own.
fn granted(
    docs: &[serde_json::Value],
    kind: &str,
    name: impl Fn(&str) -> bool,
) -> Vec<BTreeSet<Permission>> {
    docs.iter()
        .filter(|d| d["kind"] == kind && name(d["metadata"]["name"].as_str().unwrap_or_default()))
        .map(|d| {
            let rules: Vec<PolicyRule> = serde_json::from_value(d["rules"].clone()).unwrap();
            rbac::from_policy_rules(&rules)
        })
        .collect()
}

/// Fails with the permissions one side has and the other lacks.
fn assert_same(what: &str, got: &BTreeSet<Permission>, want: &BTreeSet<Permission>) {
    let extra: Vec<_> = got.difference(want).collect();
    let missing: Vec<_> = want.difference(got).collect();
    assert!(
        extra.is_empty() && missing.is_empty(),
        "{what} differs from kuberay_operator::rbac:\n  grants beyond it: {extra:?}\n  lacks: {missing:?}"
    );
}

#[test]
fn the_installed_roles_grant_exactly_the_declared_rules() {
    let operator = permissions(OPERATOR_RULES);
    let leader = permissions(LEADER_ELECTION_RULES);
    let template = |sets: &[&str]| {
        let mut c = helm();
        c.args(["template", "r"])
            .arg(repo().join("helm-chart/kuberay-operator"))
            .args(["--namespace", "ops", "--set", "fullnameOverride=kr"]);
        for s in sets {
            c.args(["--set", s]);
        }
        documents(&run(&mut c, None))
    };

    let cluster_wide = template(&[]);
    let roles = granted(&cluster_wide, "ClusterRole", |_| true);
    assert_eq!(roles.len(), 1, "one ClusterRole expected");
    assert_same("the chart's ClusterRole", &roles[0], &operator);
    let leases = granted(&cluster_wide, "Role", |n| n == "kr-leader-election");
    assert_eq!(leases.len(), 1, "one leader election Role expected");
    assert_same("the chart's leader election Role", &leases[0], &leader);

    let namespaced = template(&["singleNamespaceInstall=true", "watchNamespace={a,b}"]);
    assert!(granted(&namespaced, "ClusterRole", |_| true).is_empty());
    let roles = granted(&namespaced, "Role", |n| n == "kr");
    assert_eq!(roles.len(), 2, "a Role per watched namespace expected");
    for r in &roles {
        assert_same("a singleNamespaceInstall Role", r, &operator);
    }

    let file = |name: &str| {
        documents(&std::fs::read_to_string(repo().join("config/rbac").join(name)).unwrap())
    };
    let roles = granted(&file("role.yaml"), "ClusterRole", |_| true);
    assert_same("config/rbac/role.yaml", &roles[0], &operator);
    let roles = granted(&file("leader_election_role.yaml"), "Role", |_| true);
    assert_same("config/rbac/leader_election_role.yaml", &roles[0], &leader);
}

/// A RayCronJob whose RayJobs start suspended (no cluster).
/// A RayService whose serve config the fake dashboard runs; with token
/// authentication, so the operator reads the token Secret to call it.
const RAYSERVICE: &str = r#"
apiVersion: ray.io/v1
kind: RayService
metadata:
  name: rbac-svc
spec:
  serveConfigV2: |
    applications:
    - name: app
      import_path: app.app
  rayClusterConfig:
    rayVersion: "2.52.0"
    authOptions: {mode: token}
    headGroupSpec:
      rayStartParams: {}
      template:
        spec:
          containers: [{name: ray-head, image: "rayproject/ray:2.52.0"}]
    workerGroupSpecs:
    - groupName: w
      replicas: 1
      minReplicas: 0
      maxReplicas: 2
      rayStartParams: {}
      template:
        spec:
          containers: [{name: ray-worker, image: "rayproject/ray:2.52.0"}]
"#;

/// The same, upgraded incrementally through the Gateway API.
fn incremental_rayservice() -> String {
    let mut v: serde_json::Value = serde_yaml::from_str(RAYSERVICE).unwrap();
    v["metadata"]["name"] = json!("rbac-inc");
    v["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = json!(true);
    v["spec"]["upgradeStrategy"] = json!({"type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {"gatewayClassName": "rbac", "stepSizePercent": 50, "intervalSeconds": 1}});
    serde_yaml::to_string(&v).unwrap()
}

/// Head-only clusters with GCS fault tolerance: in Redis, and embedded.
const GCS_FT_REDIS: &str = r#"
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: rbac-ft
spec:
  rayVersion: "2.52.0"
  gcsFaultToleranceOptions:
    redisAddress: redis:6379
  headGroupSpec:
    rayStartParams: {}
    template:
      spec:
        containers: [{name: ray-head, image: "rayproject/ray:2.52.0"}]
"#;

const GCS_FT_EMBEDDED: &str = r#"
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  name: rbac-emb
spec:
  rayVersion: "2.57.0"
  gcsFaultToleranceOptions:
    backend: rocksdb
  headGroupSpec:
    rayStartParams: {}
    template:
      spec:
        containers: [{name: ray-head, image: "rayproject/ray:2.52.0"}]
"#;

const RAYCRONJOB: &str = r#"
apiVersion: ray.io/v1
kind: RayCronJob
metadata:
  name: rbac-cron
spec:
  schedule: "* * * * *"
  jobTemplate:
    entrypoint: python -c 'print(1)'
    suspend: true
    shutdownAfterJobFinishes: true
    rayClusterSpec:
      headGroupSpec:
        rayStartParams: {}
        template:
          spec:
            containers: [{name: ray-head, image: "rayproject/ray:2.52.0"}]
"#;

/// Only the RBAC objects (and the ServiceAccount) of the rendered chart.
fn rbac_only(rendered: &str) -> String {
    documents(rendered)
        .into_iter()
        .filter(|d| {
            let kind = d["kind"].as_str().unwrap_or_default();
            kind == "ServiceAccount" || kind.ends_with("Role") || kind.ends_with("RoleBinding")
        })
        .map(|d| serde_yaml::to_string(&d).unwrap())
        .collect::<Vec<_>>()
        .join("---\n")
}

#[tokio::test]
async fn the_operator_needs_every_declared_permission_and_no_other() {
    init_logs();
    harness::install_crds().await;
    harness::install_gateway_api_crds().await;
    let ns = harness::namespace("rbac").await;
    // Distinct names: other tests install cluster-scoped RBAC too.
    let account = format!("kr-{}", ns.name);
    let mut c = helm();
    c.args(["template", "kuberay-operator"])
        .arg(repo().join("helm-chart/kuberay-operator"))
        .args(["--namespace", &ns.name])
        .args(["--set", &format!("fullnameOverride={account}")])
        .args(["--set", &format!("serviceAccount.name={account}")])
        .args(["--set", &format!("watchNamespace={{{}}}", ns.name)]);
    let manifests = rbac_only(&run(&mut c, None));
    run(
        kubectl().args(["apply", "--server-side", "-n", &ns.name, "-f", "-"]),
        Some(&manifests),
    );
    let creds = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(&ns.name, &account, creds.path());
    let fake = FakeDashboard::start().await;
    let mut gates = FeatureGates::default();
    gates.set(RAY_CRON_JOB, true).unwrap();
    gates
        .set(GCS_FAULT_TOLERANCE_EMBEDDED_STORAGE, true)
        .unwrap();
    let clock = Arc::new(TestClock::new(jiff::Timestamp::now()));
    let op = Operator::start_timed(
        &ns.name,
        Config {
            gates,
            ..Config::default()
        },
        Arc::new(fake.clone()),
        clock.clone(),
        kubeconfig,
    );

    // A RayCluster with every kind of child, then a worker removed by name,
    // then suspended.
    apply::<RayCluster>(&ns, CLUSTER_WITH_EVERY_CHILD).await;
    let (_, workers) = wait_running(&ns, "rbac", 1).await;
    wait_every_child(&ns).await;
    let clusters = ns.api::<RayCluster>();
    let victim = workers[0].name_any();
    clusters
        .patch(
            "rbac",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"workerGroupSpecs": [{
                "groupName": "w", "replicas": 0, "minReplicas": 0, "maxReplicas": 3, "rayStartParams": {},
                "scaleStrategy": {"workersToDelete": [victim]},
                "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.52.0"}]}}
            }]}})),
        )
        .await
        .unwrap();
    wait_running(&ns, "rbac", 0).await;
    clusters
        .patch(
            "rbac",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    wait_status(&ns, "rbac", "the cluster suspended", |rc| {
        rc.status.as_ref().and_then(|s| s.state.as_ref()) == Some(&ClusterState::Suspended)
    })
    .await;

    // A RayJob in K8sJobMode through its whole life: cluster made, job
    // submitted, workers then cluster then the RayJob itself deleted.
    let rules = json!({"deletionStrategy": {"deletionRules": [
        {"condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 0}, "policy": "DeleteWorkers"},
        {"condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 2}, "policy": "DeleteCluster"},
        {"condition": {"jobStatus": "SUCCEEDED", "ttlSeconds": 4}, "policy": "DeleteSelf"}
    ]}});
    apply::<RayJob>(&ns, &rayjob("rbac-job", rules)).await;
    let jobs = ns.api::<RayJob>();
    let id = wait_until("the RayJob Running", TIMEOUT, || async {
        let s = jobs.get("rbac-job").await.ok()?.status?;
        (s.job_deployment_status? == JobDeploymentStatus::Running).then_some(s.job_id?)
    })
    .await;
    fake.set(&id, "SUCCEEDED");
    finish_submitter(&ns, "rbac-job", 0).await;
    wait_until("the RayJob deleted by its last rule", TIMEOUT, || async {
        jobs.get_opt("rbac-job").await.ok()?.is_none().then_some(())
    })
    .await;

    // Another one suspended while it runs, as Kueue does: cluster and
    // submitter Job deleted.
    // KubeRay suspends only jobs that clean up after themselves.
    let cleans_up = json!({"shutdownAfterJobFinishes": true});
    apply::<RayJob>(&ns, &rayjob("rbac-suspend", cleans_up)).await;
    let deployment = |name: &'static str, want: JobDeploymentStatus| {
        let jobs = jobs.clone();
        async move {
            wait_until(&format!("{name} {want:?}"), TIMEOUT, || async {
                let s = jobs.get(name).await.ok()?.status?;
                (s.job_deployment_status? == want).then_some(())
            })
            .await
        }
    };
    deployment("rbac-suspend", JobDeploymentStatus::Running).await;
    jobs.patch(
        "rbac-suspend",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"suspend": true}})),
    )
    .await
    .unwrap();
    deployment("rbac-suspend", JobDeploymentStatus::Suspended).await;

    // A RayCronJob's tick: its RayJob created, the tick in its status.
    let cron = apply::<RayCronJob>(&ns, RAYCRONJOB).await;
    let created = cron.metadata.creation_timestamp.unwrap().0;
    let tick = jiff::Timestamp::from_second((created.as_second() / 60 + 1) * 60).unwrap();
    clock.set(tick + jiff::SignedDuration::from_secs(1));
    let crons = ns.api::<RayCronJob>();
    wait_until("the RayCronJob's first tick", TIMEOUT, || async {
        crons
            .get("rbac-cron")
            .await
            .ok()?
            .status?
            .last_schedule_time
    })
    .await;

    // A RayService served, its head labelled, then suspended: its cluster
    // and services deleted.
    apply::<RayService>(&ns, RAYSERVICE).await;
    let services = ns.api::<RayService>();
    let condition = |want: &'static str| {
        let services = services.clone();
        async move {
            wait_until(&format!("the RayService {want}"), TIMEOUT, || async {
                let s = services.get("rbac-svc").await.ok()?;
                let c = s.status?.conditions?;
                c.iter()
                    .any(|c| c.type_ == want && c.status == "True")
                    .then_some(())
            })
            .await
        }
    };
    condition("Ready").await;
    services
        .patch(
            "rbac-svc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    condition("Suspended").await;

    // An incremental RayService: its Gateway and HTTPRoute read each
    // reconcile, created, and patched back after someone changed them.
    apply::<RayService>(&ns, &incremental_rayservice()).await;
    let gateways: kube::Api<Gateway> = ns.api();
    let routes: kube::Api<HTTPRoute> = ns.api();
    wait_until("the HTTPRoute", TIMEOUT, || async {
        routes.get_opt("rbac-inc-httproute").await.ok()?
    })
    .await;
    gateways
        .patch(
            "rbac-inc-gateway",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gatewayClassName": "changed"}})),
        )
        .await
        .unwrap();
    wait_until("the Gateway patched back", TIMEOUT, || async {
        let g = gateways.get("rbac-inc-gateway").await.ok()?;
        (g.spec.gateway_class_name == "rbac").then_some(())
    })
    .await;
    let route = routes.get("rbac-inc-httproute").await.unwrap();
    let mut spec = serde_json::to_value(&route.spec).unwrap();
    spec["rules"][0]["backendRefs"][0]["weight"] = json!(7);
    routes
        .patch(
            "rbac-inc-httproute",
            &PatchParams::default(),
            &Patch::Merge(json!({ "spec": spec })),
        )
        .await
        .unwrap();
    wait_until("the HTTPRoute patched back", TIMEOUT, || async {
        let r = routes.get("rbac-inc-httproute").await.ok()?;
        let w = r.spec.rules[0].backend_refs.as_ref()?[0].weight;
        (w == Some(100)).then_some(())
    })
    .await;
    // Suspended: its Gateway and HTTPRoute are deleted with the rest.
    services
        .patch(
            "rbac-inc",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"suspend": true}})),
        )
        .await
        .unwrap();
    wait_until("the incremental RayService suspended", TIMEOUT, || async {
        let s = services.get("rbac-inc").await.ok()?;
        let suspended = s
            .status?
            .conditions?
            .iter()
            .any(|c| c.type_ == "Suspended" && c.status == "True");
        (suspended
            && gateways.get_opt("rbac-inc-gateway").await.ok()?.is_none()
            && routes.get_opt("rbac-inc-httproute").await.ok()?.is_none())
        .then_some(())
    })
    .await;

    // GCS fault tolerance: a Redis cluster deleted through its clean-up
    // Job, and the embedded store's claim created, then released by
    // deletionPolicy Retain.
    apply::<RayCluster>(&ns, GCS_FT_REDIS).await;
    wait_running(&ns, "rbac-ft", 0).await;
    clusters
        .delete("rbac-ft", &Default::default())
        .await
        .unwrap();
    wait_deleted::<RayCluster>(&ns, "rbac-ft", TIMEOUT).await;
    apply::<RayCluster>(&ns, GCS_FT_EMBEDDED).await;
    let claims = ns.api::<k8s_openapi::api::core::v1::PersistentVolumeClaim>();
    wait_until("the GCS storage claim", TIMEOUT, || async {
        claims.get_opt("rbac-emb-gcs-pvc").await.ok()?
    })
    .await;
    clusters
        .patch(
            "rbac-emb",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"gcsFaultToleranceOptions": {"storage": {"deletionPolicy": "Retain"}}}})),
        )
        .await
        .unwrap();
    wait_until("the claim released", TIMEOUT, || async {
        let c = claims.get("rbac-emb-gcs-pvc").await.ok()?;
        c.metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
            .then_some(())
    })
    .await;

    // An object the operator cannot read (the old v1alpha1 schema accepts
    // anything) is reported on every change: the repeats patch one Event.
    run(
        kubectl().args(["apply", "-n", &ns.name, "-f", "-"]),
        Some(
            "apiVersion: ray.io/v1alpha1\nkind: RayCluster\nmetadata:\n  name: unreadable\nspec:\n  headGroupSpec: oops\n",
        ),
    );
    let events = ns.api::<Event>();
    let series = || async {
        events
            .list(&Default::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| e.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("unreadable"))
            .map(|e| e.series.map_or(1, |s| s.count))
    };
    wait_until("the unreadable object reported", TIMEOUT, series).await;
    run(
        kubectl().args([
            "annotate",
            "-n",
            &ns.name,
            "raycluster/unreadable",
            "touched=yes",
        ]),
        None,
    );
    wait_until("the report repeated", TIMEOUT, || async {
        (series().await? >= 2).then_some(())
    })
    .await;

    let mut needed = BTreeSet::new();
    for call in op.requests.snapshot().keys() {
        needed.extend(rbac::needed(call));
    }
    let declared = permissions(OPERATOR_RULES);
    let ungranted: Vec<_> = needed.difference(&declared).collect();
    assert!(
        ungranted.is_empty(),
        "the operator called what kuberay_operator::rbac does not grant: {ungranted:?}"
    );
    let unused: Vec<String> = called_permissions(OPERATOR_RULES)
        .difference(&needed)
        .map(|p| {
            let why = OPERATOR_RULES
                .iter()
                .find(|r| {
                    r.group == p.0
                        && r.resources.contains(&p.1.as_str())
                        && r.verbs.contains(&p.2.as_str())
                })
                .map_or("", |r| r.why);
            format!("{p:?} ({why})")
        })
        .collect();
    assert!(
        unused.is_empty(),
        "declared as called, never called (drop the permission or fix the scenario): {unused:#?}"
    );
}
