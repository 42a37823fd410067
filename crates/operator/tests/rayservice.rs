//! The RayService controller on the local control plane: simulated nodes
//! run the pods, a scripted stand-in dashboard plays Ray Serve (real Serve
//! is in `e2e_rayservice.rs`). Each test waits for what it checks; none
//! sleeps to let time pass.

mod support;

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams};
use kuberay_api::{RayCluster, RayService};
use kuberay_operator::runtime::config::Config;
use kuberay_testenv::harness::{TestNamespace, wait_until};
use serde_json::{Value, json};
use support::fake_dashboard::FakeDashboard;
use support::rayservice::{active, condition, pending, status, wait_service};
use support::*;

const SERVE_CONFIG: &str = "applications:\n- name: fruit\n  import_path: fruit.app\n  route_prefix: /fruit\n  deployments:\n  - name: MangoStand\n";

async fn setup_services(prefix: &str) -> (TestNamespace, Operator, FakeDashboard) {
    let fake = FakeDashboard::start().await;
    let (ns, op) = setup(prefix, Config::default()).await;
    op.kill();
    let op = Operator::start_with(&ns.name, Config::default(), Arc::new(fake.clone()));
    (ns, op, fake)
}

/// A RayService with a one-worker cluster; `extra` is merged into its spec
/// (a null removes a field).
fn rayservice(name: &str, extra: Value) -> String {
    let mut v = json!({
        "apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": name},
        "spec": {
            "serveConfigV2": SERVE_CONFIG,
            "rayClusterDeletionDelaySeconds": 2,
            "rayClusterConfig": {
                "rayVersion": "2.52.0",
                "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{
                    "name": "ray-head", "image": "rayproject/ray:2.52.0",
                    "ports": [{"name": "dashboard", "containerPort": 8265}, {"name": "serve", "containerPort": 8000}]}]}}},
                "workerGroupSpecs": [{"groupName": "w", "replicas": 1, "minReplicas": 0, "maxReplicas": 3, "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.52.0"}]}}}]
            }
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

async fn owned_clusters(ns: &TestNamespace, svc: &str) -> Vec<RayCluster> {
    let lp = ListParams::default().labels(&format!(
        "ray.io/originated-from-crd=RayService,ray.io/originated-from-cr-name={svc}"
    ));
    ns.api::<RayCluster>()
        .list(&lp)
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .collect()
}

fn selected(s: &Service) -> String {
    s.spec.as_ref().unwrap().selector.as_ref().unwrap()["ray.io/cluster"].clone()
}

/// Waits for a ready service and returns it and its active cluster.
async fn wait_ready(ns: &TestNamespace, name: &str) -> (RayService, String) {
    let s = wait_service(ns, name, "Ready", |s| {
        condition(s, "Ready").is_some_and(|c| c.0 == "True") && active(s).is_some()
    })
    .await;
    let a = active(&s).unwrap();
    (s, a)
}

#[tokio::test]
async fn serves_from_a_new_cluster_and_upgrades_blue_green_without_touching_the_live_one() {
    let (ns, _op, fake) = setup_services("rs-bluegreen").await;
    apply::<RayService>(&ns, &rayservice("web", json!({}))).await;
    let init = wait_service(&ns, "web", "a pending cluster", |s| {
        pending(s).is_some() || active(s).is_some()
    })
    .await;
    let first = pending(&init).or(active(&init)).unwrap();
    assert!(first.starts_with("web-") && first.len() == 9, "{first}");
    let (ready, a) = wait_ready(&ns, "web").await;
    assert_eq!(a, first);
    let s = status(&ready);
    assert!(s.num_serve_endpoints.unwrap() >= 1, "{s:?}");
    assert_eq!(s.service_status.unwrap().to_string(), "Running");
    assert_eq!(s.observed_generation, ready.metadata.generation);
    let apps = s
        .active_service_status
        .unwrap()
        .application_statuses
        .unwrap();
    assert_eq!(apps["fruit"].status.as_deref(), Some("RUNNING"));
    assert!(
        apps["fruit"]
            .serve_deployment_statuses
            .as_ref()
            .unwrap()
            .contains_key("MangoStand")
    );
    assert_eq!(
        condition(&ready, "UpgradeInProgress").unwrap().1,
        "NoPendingCluster"
    );
    // The services, KubeRay's names and labels, select the active cluster.
    let svcs = ns.api::<Service>();
    let serve = svcs.get("web-serve-svc").await.unwrap();
    assert_eq!(selected(&serve), first);
    assert_eq!(
        serve.spec.as_ref().unwrap().selector.as_ref().unwrap()["ray.io/serve"],
        "true"
    );
    assert_eq!(serve.labels()["ray.io/serve"], "web-serve");
    let head = svcs.get("web-head-svc").await.unwrap();
    assert_eq!(selected(&head), first);
    assert_eq!(head.labels()["ray.io/originated-from-crd"], "RayService");
    // The head pod's serve label follows its proxy's health.
    let (head_pod, _) = wait_running(&ns, &first, 1).await;
    wait_until("the head labelled to serve", TIMEOUT, || async {
        let p = ns.api::<Pod>().get(&head_pod.name_any()).await.ok()?;
        (p.labels().get("ray.io/serve").map(String::as_str) == Some("true")).then_some(())
    })
    .await;
    assert_eq!(fake.submitted_to(&first), 1, "{:?}", fake.submissions());
    let rc = ns.api::<RayCluster>().get(&first).await.unwrap();
    assert_eq!(rc.labels()["ray.io/originated-from-crd"], "RayService");
    assert_eq!(rc.owner_references()[0].kind, "RayService");
    assert!(
        rc.annotations()
            .contains_key("ray.io/hash-without-replicas-and-workers-to-delete")
    );

    // A new image needs a new cluster: the live one keeps serving and gets no config.
    let mut upgraded: Value = serde_yaml::from_str(&rayservice("web", json!({}))).unwrap();
    upgraded["spec"]["rayClusterConfig"]["headGroupSpec"]["template"]["spec"]["containers"][0]["image"] =
        json!("rayproject/ray:2.53.0");
    upgraded["spec"]["serveConfigV2"] = json!(SERVE_CONFIG.replace("MangoStand", "PearStand"));
    apply::<RayService>(&ns, &serde_yaml::to_string(&upgraded).unwrap()).await;
    let up = wait_service(&ns, "web", "UpgradeInProgress", |s| {
        condition(s, "UpgradeInProgress").is_some_and(|c| c.0 == "True")
    })
    .await;
    let second = pending(&up).unwrap();
    assert_ne!(second, first);
    assert_eq!(
        condition(&up, "Ready").unwrap().0,
        "True",
        "the live cluster keeps serving"
    );
    let done = wait_service(&ns, "web", "the pending cluster promoted", |s| {
        active(s).as_deref() == Some(&second)
    })
    .await;
    assert_eq!(
        condition(&done, "UpgradeInProgress").unwrap().1,
        "NoPendingCluster"
    );
    assert_eq!(selected(&svcs.get("web-serve-svc").await.unwrap()), second);
    assert_eq!(selected(&svcs.get("web-head-svc").await.unwrap()), second);
    assert_eq!(
        fake.submitted_to(&first),
        1,
        "the live cluster got a config during the upgrade"
    );
    assert_eq!(fake.submitted_to(&second), 1);
    // The old cluster goes after its deletion delay.
    wait_until("the old cluster deleted", TIMEOUT, || async {
        let names: Vec<String> = owned_clusters(&ns, "web")
            .await
            .iter()
            .map(|c| c.name_any())
            .collect();
        (names == [second.clone()]).then_some(())
    })
    .await;
    wait_events(
        &ns,
        "web",
        &[
            "CreatedRayCluster",
            "UpdatedServeApplications",
            "CreatedService",
            "UpdatedService",
            "DeletedRayCluster",
        ],
    )
    .await;
}

#[tokio::test]
async fn serve_config_is_resubmitted_on_change_and_after_a_head_restart_only() {
    let (ns, _op, fake) = setup_services("rs-config").await;
    apply::<RayService>(&ns, &rayservice("cfg", json!({}))).await;
    let (_, a) = wait_ready(&ns, "cfg").await;
    assert_eq!(fake.submitted_to(&a), 1);
    // An in-place Serve change goes to the active cluster, no new cluster.
    let changed = SERVE_CONFIG.replace("/fruit", "/fruits");
    apply::<RayService>(&ns, &rayservice("cfg", json!({"serveConfigV2": changed}))).await;
    wait_until("the changed config submitted", TIMEOUT, || async {
        (fake.submitted_to(&a) == 2).then_some(())
    })
    .await;
    let body = fake.submissions().last().unwrap().1.clone();
    assert_eq!(body["applications"][0]["route_prefix"], "/fruits");
    // A head that restarted without GCS FT lists no application: resubmitted.
    fake.restart_head(&a);
    wait_until(
        "the config resubmitted after the head restart",
        TIMEOUT,
        || async { (fake.submitted_to(&a) == 3).then_some(()) },
    )
    .await;
    // Worker replicas change in place, on the same cluster.
    let mut v: Value =
        serde_yaml::from_str(&rayservice("cfg", json!({"serveConfigV2": changed}))).unwrap();
    v["spec"]["rayClusterConfig"]["workerGroupSpecs"][0]["replicas"] = json!(2);
    apply::<RayService>(&ns, &serde_yaml::to_string(&v).unwrap()).await;
    wait_running(&ns, &a, 2).await;
    let s = ns.api::<RayService>().get("cfg").await.unwrap();
    assert_eq!(active(&s).as_deref(), Some(a.as_str()));
    assert_eq!(pending(&s), None);
    assert_eq!(owned_clusters(&ns, "cfg").await.len(), 1);
    assert_eq!(fake.submitted_to(&a), 3, "{:?}", fake.submissions());
}

#[tokio::test]
async fn a_refused_config_and_an_unhealthy_application_are_reported_without_stopping_service() {
    let (ns, _op, fake) = setup_services("rs-refused").await;
    apply::<RayService>(&ns, &rayservice("bad", json!({}))).await;
    let (_, a) = wait_ready(&ns, "bad").await;
    fake.reject_serve(Some(
        "ValidationError: import_path 'nope' is not importable",
    ));
    let started = std::time::Instant::now();
    apply::<RayService>(
        &ns,
        &rayservice(
            "bad",
            json!({"serveConfigV2": SERVE_CONFIG.replace("fruit.app", "nope")}),
        ),
    )
    .await;
    let s = wait_service(&ns, "bad", "the refusal in the Ready message", |s| {
        condition(s, "Ready").is_some_and(|c| c.2.contains("is not importable"))
    })
    .await;
    let (state, reason, message) = condition(&s, "Ready").unwrap();
    assert_eq!(
        (state.as_str(), reason.as_str()),
        ("True", "NonZeroServeEndpoints"),
        "{message}"
    );
    wait_until("the Warning event", TIMEOUT, || async {
        events(&ns, "bad").await.into_iter().find(|e| {
            e.0 == "Warning"
                && e.1 == "FailedToUpdateServeApplications"
                && e.2.contains("is not importable")
        })
    })
    .await;
    // Retried with backoff, not in a hot loop.
    wait_until("a few retries", TIMEOUT, || async {
        (fake.submitted_to(&a) >= 4).then_some(())
    })
    .await;
    let tries = fake.submitted_to(&a) - 1;
    let secs = started.elapsed().as_secs_f64();
    assert!(
        tries as f64 <= secs / 0.9 + 1.0,
        "{tries} submissions in {secs:.1}s"
    );
    fake.reject_serve(None);
    apply::<RayService>(&ns, &rayservice("bad", json!({}))).await;
    wait_until("the fixed config accepted", TIMEOUT, || async {
        let s = ns.api::<RayService>().get("bad").await.ok()?;
        (!condition(&s, "Ready")?.2.contains("importable")).then_some(())
    })
    .await;
    // An application that turns unhealthy is named with its deployment.
    fake.set_app(
        &a,
        "fruit",
        "UNHEALTHY",
        ("MangoStand", "UNHEALTHY", "replica crashed"),
    );
    let s = wait_service(&ns, "bad", "the unhealthy app in the status", |s| {
        status(s)
            .active_service_status
            .and_then(|a| a.application_statuses)
            .is_some_and(|m| m.get("fruit").and_then(|f| f.status.as_deref()) == Some("UNHEALTHY"))
    })
    .await;
    let d = &status(&s)
        .active_service_status
        .unwrap()
        .application_statuses
        .unwrap()["fruit"]
        .serve_deployment_statuses
        .clone()
        .unwrap()["MangoStand"];
    assert_eq!(d.message.as_deref(), Some("replica crashed"));
    assert_eq!(
        condition(&s, "Ready").unwrap().0,
        "True",
        "serving endpoints stay"
    );
}

#[tokio::test]
async fn an_invalid_service_gets_every_problem_one_warning_and_no_cluster() {
    let (ns, _op, _fake) = setup_services("rs-invalid").await;
    let bad = rayservice(
        "inv",
        json!({"rayClusterDeletionDelaySeconds": 5, "serveConfigV2": "- just\n- a list\n",
               "upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade"}}),
    );
    apply::<RayService>(&ns, &bad).await;
    let s = wait_service(&ns, "inv", "ValidationFailed", |s| {
        condition(s, "Ready").is_some_and(|c| c.1 == "ValidationFailed")
    })
    .await;
    let msg = condition(&s, "Ready").unwrap().2;
    assert!(msg.contains("spec.serveConfigV2"), "{msg}");
    assert!(msg.contains("spec.upgradeStrategy"), "{msg}");
    let warnings = wait_until("the Warning event", TIMEOUT, || async {
        let w: Vec<_> = events(&ns, "inv")
            .await
            .into_iter()
            .filter(|e| e.0 == "Warning")
            .collect();
        (!w.is_empty()).then_some(w)
    })
    .await;
    assert_eq!(warnings.len(), 1, "{warnings:?}");
    assert_eq!(warnings[0].1, "InvalidRayServiceSpec");
    assert!(owned_clusters(&ns, "inv").await.is_empty());
    assert!(
        s.finalizers().is_empty(),
        "an invalid service gets no finalizer"
    );
    // Fixed, it starts.
    apply::<RayService>(&ns, &rayservice("inv", json!({"upgradeStrategy": null}))).await;
    wait_ready(&ns, "inv").await;
}

#[tokio::test]
async fn suspend_deletes_everything_and_resume_starts_again() {
    let (ns, _op, _fake) = setup_services("rs-suspend").await;
    apply::<RayService>(&ns, &rayservice("sus", json!({}))).await;
    let (_, a) = wait_ready(&ns, "sus").await;
    apply::<RayService>(&ns, &rayservice("sus", json!({"suspend": true}))).await;
    let s = wait_service(&ns, "sus", "Suspended", |s| {
        condition(s, "Suspended").is_some_and(|c| c.0 == "True")
    })
    .await;
    assert_eq!(condition(&s, "Ready").unwrap().1, "SuspendComplete");
    assert_eq!(condition(&s, "Suspending").unwrap().0, "False");
    wait_until("clusters and services gone", TIMEOUT, || async {
        let svcs = ns
            .api::<Service>()
            .list(&ListParams::default())
            .await
            .ok()?;
        let ours = svcs.items.iter().any(|s| s.name_any().starts_with("sus-"));
        (owned_clusters(&ns, "sus").await.is_empty() && !ours).then_some(())
    })
    .await;
    apply::<RayService>(&ns, &rayservice("sus", json!({"suspend": false}))).await;
    let (_, b) = wait_ready(&ns, "sus").await;
    assert_ne!(a, b);
    let s = ns.api::<RayService>().get("sus").await.unwrap();
    assert_eq!(condition(&s, "Suspended").unwrap().1, "RayServiceResumed");
}

#[tokio::test]
async fn the_initializing_timeout_fails_the_service_and_removes_its_cluster() {
    let (ns, _op, fake) = setup_services("rs-timeout").await;
    fake.deploy_as("DEPLOYING");
    let mut v: Value = serde_yaml::from_str(&rayservice("slow", json!({}))).unwrap();
    v["metadata"]["annotations"] = json!({"ray.io/initializing-timeout": "4s"});
    apply::<RayService>(&ns, &serde_yaml::to_string(&v).unwrap()).await;
    let waiting = wait_service(&ns, "slow", "the Ready message naming the app", |s| {
        condition(s, "Ready").is_some_and(|c| c.2.contains("application fruit is DEPLOYING"))
    })
    .await;
    assert_eq!(condition(&waiting, "Ready").unwrap().1, "Initializing");
    let s = wait_service(&ns, "slow", "InitializingTimeout", |s| {
        condition(s, "Ready").is_some_and(|c| c.1 == "InitializingTimeout")
    })
    .await;
    assert_eq!(pending(&s), None);
    wait_until("the cluster deleted", TIMEOUT, || async {
        owned_clusters(&ns, "slow").await.is_empty().then_some(())
    })
    .await;
    let evs = wait_events(&ns, "slow", &["RayServiceInitializingTimeout"]).await;
    assert!(
        evs.iter()
            .any(|e| e.0 == "Warning" && e.1 == "RayServiceInitializingTimeout"),
        "{evs:?}"
    );
}

#[tokio::test]
async fn an_operator_restart_mid_upgrade_makes_no_second_cluster_and_loses_no_promotion() {
    let (ns, op, fake) = setup_services("rs-restart").await;
    apply::<RayService>(&ns, &rayservice("rst", json!({}))).await;
    let (_, first) = wait_ready(&ns, "rst").await;
    // Applications of the new cluster stay DEPLOYING while the operator is away.
    fake.deploy_as("DEPLOYING");
    let mut v: Value = serde_yaml::from_str(&rayservice("rst", json!({}))).unwrap();
    v["spec"]["rayClusterConfig"]["rayVersion"] = json!("2.53.0");
    apply::<RayService>(&ns, &serde_yaml::to_string(&v).unwrap()).await;
    let up = wait_service(&ns, "rst", "a pending cluster", |s| pending(s).is_some()).await;
    let second = pending(&up).unwrap();
    wait_until("the pending cluster created", TIMEOUT, || async {
        ns.api::<RayCluster>().get_opt(&second).await.ok()?
    })
    .await;
    op.kill();
    fake.deploy_as("RUNNING");
    fake.restart_head(&second);
    let _op = Operator::start_with(&ns.name, Config::default(), Arc::new(fake.clone()));
    let done = wait_service(&ns, "rst", "promotion after the restart", |s| {
        active(s).as_deref() == Some(&second)
    })
    .await;
    assert_eq!(pending(&done), None);
    wait_until("the old cluster deleted", TIMEOUT, || async {
        let names: Vec<String> = owned_clusters(&ns, "rst")
            .await
            .iter()
            .map(|c| c.name_any())
            .collect();
        (names == [second.clone()]).then_some(())
    })
    .await;
    assert_ne!(first, second);
    let made = events(&ns, "rst")
        .await
        .into_iter()
        .filter(|e| e.1 == "CreatedRayCluster")
        .count();
    assert_eq!(made, 2, "exactly two clusters were ever created");
}

#[tokio::test]
async fn deleting_the_service_deletes_its_clusters_then_the_finalizer_goes() {
    let (ns, _op, _fake) = setup_services("rs-delete").await;
    apply::<RayService>(&ns, &rayservice("del", json!({}))).await;
    let (s, _) = wait_ready(&ns, "del").await;
    assert_eq!(s.finalizers(), ["ray.io/rayservice-finalizer"]);
    ns.api::<RayService>()
        .delete("del", &DeleteParams::default())
        .await
        .unwrap();
    wait_deleted::<RayService>(&ns, "del", TIMEOUT).await;
    assert!(owned_clusters(&ns, "del").await.is_empty());
}

#[tokio::test]
async fn a_cluster_made_by_another_operator_version_is_kept_as_it_is() {
    // The same spec with another hash and version annotation (KubeRay's Go
    // operator, or a later version of this one) needs no new cluster.
    let (ns, _op, _fake) = setup_services("rs-version").await;
    apply::<RayService>(&ns, &rayservice("ver", json!({}))).await;
    let (_, a) = wait_ready(&ns, "ver").await;
    let clusters = ns.api::<RayCluster>();
    let patch = json!({"metadata": {"annotations": {
        "ray.io/hash-without-replicas-and-workers-to-delete": "SOMEOTHERHASHFROMGO",
        "ray.io/kuberay-version": "v1.6.0"}}});
    clusters
        .patch(&a, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    // A later change of the service wakes it; it must keep its cluster.
    apply::<RayService>(
        &ns,
        &rayservice(
            "ver",
            json!({"serveConfigV2": SERVE_CONFIG.replace("/fruit", "/f")}),
        ),
    )
    .await;
    wait_service(&ns, "ver", "the new generation observed", |s| {
        status(s).observed_generation == s.metadata.generation
    })
    .await;
    let s = ns.api::<RayService>().get("ver").await.unwrap();
    assert_eq!(pending(&s), None);
    assert_eq!(owned_clusters(&ns, "ver").await.len(), 1);
    assert_eq!(condition(&s, "UpgradeInProgress").unwrap().0, "False");
}

#[tokio::test]
async fn every_rayservice_sample_is_accepted_and_converges_or_is_refused_clearly() {
    let (ns, _op, _fake) = setup_services("rs-samples").await;
    let api = ns.api::<RayService>();
    let mut names = Vec::new();
    let all = kuberay_testenv::samples::ray_objects();
    for (i, s) in all.iter().filter(|s| s.kind() == "RayService").enumerate() {
        let mut svc: RayService = serde_json::from_value(s.value.clone()).unwrap();
        let name = format!("sample-{i}");
        svc.metadata.name = Some(name.clone());
        svc.metadata.namespace = Some(ns.name.clone());
        api.patch(
            &name,
            &PatchParams::apply("kuberay-tests"),
            &Patch::Apply(&svc),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", s.id()));
        names.push((name, s.id(), svc));
    }
    assert!(names.len() >= 5, "RayService samples: {}", names.len());
    for (name, id, svc) in &names {
        let incremental = svc
            .spec
            .upgrade_strategy
            .as_ref()
            .and_then(|u| u.type_.as_ref())
            .is_some_and(|t| t.to_string() == "NewClusterWithIncrementalUpgrade");
        if incremental {
            // This control plane has no Gateway API (the incremental
            // upgrade runs in tests/rayservice_incremental.rs).
            let s = wait_service(&ns, name, &format!("{id}: refused"), |s| {
                condition(s, "Ready").is_some_and(|c| c.1 == "GatewayAPIMissing")
            })
            .await;
            assert!(
                condition(&s, "Ready")
                    .unwrap()
                    .2
                    .contains("CRDs are not installed"),
                "{id}"
            );
            assert!(owned_clusters(&ns, name).await.is_empty(), "{id}");
            continue;
        }
        let (_, a) = wait_ready(&ns, name).await;
        let serve_name = svc
            .spec
            .serve_service
            .as_ref()
            .and_then(|s| s.metadata.as_ref())
            .and_then(|m| m.name.clone())
            .unwrap_or_else(|| format!("{name}-serve-svc"));
        let svcs = ns.api::<Service>();
        let serve = svcs
            .get(&serve_name)
            .await
            .unwrap_or_else(|e| panic!("{id}: {serve_name}: {e}"));
        assert_eq!(selected(&serve), a, "{id}");
        let head = svcs.get(&format!("{name}-head-svc")).await.unwrap();
        assert_eq!(selected(&head), a, "{id}");
        // The serve port is the head container's `serve` port.
        let want = svc
            .spec
            .ray_cluster_config
            .head_group_spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .containers[0]
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.as_deref() == Some("serve"))
            .map_or(8000, |p| p.container_port);
        let ports = serve.spec.unwrap().ports.unwrap();
        assert!(ports.iter().any(|p| p.port == want), "{id}: {ports:?}");
    }
}

#[tokio::test]
async fn an_incremental_upgrade_without_the_gateway_api_is_refused_clearly_and_others_run() {
    let (ns, _op, _fake) = setup_services("rs-nogw").await;
    let crds = ns
        .client
        .list_api_group_resources("gateway.networking.k8s.io/v1")
        .await;
    assert!(
        crds.is_err(),
        "this test needs a control plane without the Gateway API CRDs (tests/rayservice.rs never installs them)"
    );
    let incremental = json!({"upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade",
        "clusterUpgradeOptions": {"gatewayClassName": "istio", "stepSizePercent": 10, "intervalSeconds": 30}}});
    let mut v: Value = serde_yaml::from_str(&rayservice("gw", incremental)).unwrap();
    v["spec"]["rayClusterConfig"]["enableInTreeAutoscaling"] = json!(true);
    apply::<RayService>(&ns, &serde_yaml::to_string(&v).unwrap()).await;
    apply::<RayService>(&ns, &rayservice("plain", json!({}))).await;
    let s = wait_service(&ns, "gw", "GatewayAPIMissing", |s| {
        condition(s, "Ready").is_some_and(|c| c.1 == "GatewayAPIMissing")
    })
    .await;
    let (status, _, message) = condition(&s, "Ready").unwrap();
    assert_eq!(status, "False");
    assert!(
        message.contains("gateway.networking.k8s.io/v1") && message.contains("not installed"),
        "{message}"
    );
    // The other RayService is not held up.
    wait_ready(&ns, "plain").await;
    let warnings = |evs: Vec<(String, String, String)>| -> Vec<(String, String, String)> {
        evs.into_iter().filter(|e| e.0 == "Warning").collect()
    };
    let w = wait_until("the Warning event", TIMEOUT, || async {
        let w = warnings(events(&ns, "gw").await);
        (!w.is_empty()).then_some(w)
    })
    .await;
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].1, "FailedToCreateGateway");
    assert!(w[0].2.contains("CRDs are not installed"), "{w:?}");
    // Not retried in a hot loop: the status is written once, then the next
    // look is 30 s away.
    let written = s.status.as_ref().unwrap().last_update_time.clone();
    let again = ns.api::<RayService>().get("gw").await.unwrap();
    assert_eq!(again.status.unwrap().last_update_time, written);
    assert!(owned_clusters(&ns, "gw").await.is_empty());
    assert_eq!(warnings(events(&ns, "gw").await).len(), 1);
}
