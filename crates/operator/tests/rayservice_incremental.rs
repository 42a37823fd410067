//! The RayService incremental upgrade (`NewClusterWithIncrementalUpgrade`)
//! on the local control plane with the Gateway API standard CRDs installed:
//! simulated nodes run the pods, the scripted stand-in dashboard plays Ray
//! Serve and records every `target_capacity` it is sent. There is no
//! Gateway implementation here (none can be installed on this machine), so
//! the test plays its controller's only part the operator reads: it marks
//! the Gateway `Accepted`/`Programmed` and the route `Accepted`/
//! `ResolvedRefs`, as a real one would once it serves them. Each test waits
//! for what it checks; none sleeps to let time pass.

mod support;

use std::sync::{Arc, Mutex};

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, ListParams, Patch, PatchParams};
use kuberay_api::{RayCluster, RayService};
use kuberay_operator::controllers::rayservice::gateway::{Gateway, HTTPRoute};
use kuberay_operator::runtime::config::Config;
use kuberay_testenv::harness::{self, TestNamespace, wait_until};
use serde_json::{Value, json};
use support::fake_dashboard::FakeDashboard;
use support::rayservice::{active, condition, pending, route_backends, status, wait_service};
use support::*;

/// (targetCapacity, trafficRoutedPercent) of one side of the upgrade.
type Side = (Option<i32>, Option<i32>);
/// The backends of the route as (service, weight).
type Backends = Vec<(String, i32)>;

const SERVE_CONFIG: &str = "applications:\n- name: fruit\n  import_path: fruit.app\n  route_prefix: /fruit\n  deployments:\n  - name: MangoStand\n";

async fn setup_incremental(prefix: &str) -> (TestNamespace, Operator, FakeDashboard) {
    init_logs();
    harness::install_crds().await;
    harness::install_gateway_api_crds().await;
    let ns = harness::namespace(prefix).await;
    let fake = FakeDashboard::start().await;
    let op = Operator::start_with(&ns.name, Config::default(), Arc::new(fake.clone()));
    (ns, op, fake)
}

/// An incrementally upgraded RayService on `image`: traffic and capacity
/// move by `step` percent every `interval` seconds.
fn rayservice(name: &str, image: &str, step: i32, interval: i32) -> String {
    let v = json!({
        "apiVersion": "ray.io/v1", "kind": "RayService", "metadata": {"name": name},
        "spec": {
            "serveConfigV2": SERVE_CONFIG,
            "rayClusterDeletionDelaySeconds": 2,
            "upgradeStrategy": {"type": "NewClusterWithIncrementalUpgrade", "clusterUpgradeOptions": {
                "gatewayClassName": "test-gateway-class", "stepSizePercent": step,
                "intervalSeconds": interval, "maxSurgePercent": step}},
            "rayClusterConfig": {
                "rayVersion": "2.52.0",
                "enableInTreeAutoscaling": true,
                "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{
                    "name": "ray-head", "image": image,
                    "ports": [{"name": "dashboard", "containerPort": 8265}, {"name": "serve", "containerPort": 8000}]}]}}},
                "workerGroupSpecs": [{"groupName": "w", "replicas": 1, "minReplicas": 0, "maxReplicas": 3, "rayStartParams": {},
                    "template": {"spec": {"containers": [{"name": "ray-worker", "image": image}]}}}]
            }
        }
    });
    serde_yaml::to_string(&v).unwrap()
}

/// (targetCapacity, trafficRoutedPercent) of the active and pending sides.
fn sides(s: &RayService) -> (Side, Side) {
    let a = status(s).active_service_status.unwrap_or_default();
    let p = status(s).pending_service_status.unwrap_or_default();
    (
        (a.target_capacity, a.traffic_routed_percent),
        (p.target_capacity, p.traffic_routed_percent),
    )
}

/// Waits until `name` is Ready on its first cluster with traffic recorded
/// in the status; returns it as it then is.
async fn ready_on_first_cluster(ns: &TestNamespace, name: &str) -> RayService {
    wait_service(ns, name, "Ready with an active cluster", |s| {
        condition(s, "Ready").is_some_and(|c| c.0 == "True")
            && active(s).is_some()
            && sides(s).0.1.is_some()
    })
    .await
}

async fn owned_clusters(ns: &TestNamespace, svc: &str) -> Vec<String> {
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
        .map(|c| c.name_any())
        .collect()
}

fn true_condition(type_: &str) -> Value {
    json!({"type": type_, "status": "True", "reason": type_, "message": "stand-in Gateway controller",
           "lastTransitionTime": "2026-01-01T00:00:00Z"})
}

/// Plays the Gateway controller: once the Gateway and route of `svc`
/// exist, marks them ready as an implementation serving them would.
async fn accept_gateway_and_route(ns: &TestNamespace, svc: &str) {
    report_gateway_and_route(ns, svc, false).await;
}

/// [`accept_gateway_and_route`], and with `observed` the route's
/// `Accepted` says which generation of it was processed (the one it has
/// now), as conformant implementations do.
async fn report_gateway_and_route(ns: &TestNamespace, svc: &str, observed: bool) {
    let gateways: Api<Gateway> = Api::namespaced(ns.client.clone(), &ns.name);
    let routes: Api<HTTPRoute> = Api::namespaced(ns.client.clone(), &ns.name);
    let (g, r) = (format!("{svc}-gateway"), format!("{svc}-httproute"));
    wait_until("the Gateway and the HTTPRoute", TIMEOUT, || async {
        gateways.get_opt(&g).await.ok()??;
        routes.get_opt(&r).await.ok()??;
        Some(())
    })
    .await;
    let gs = json!({"status": {"conditions": [true_condition("Accepted"), true_condition("Programmed")]}});
    gateways
        .patch_status(&g, &PatchParams::default(), &Patch::Merge(&gs))
        .await
        .unwrap();
    let mut accepted = true_condition("Accepted");
    if observed {
        accepted["observedGeneration"] = json!(routes.get(&r).await.unwrap().metadata.generation);
    }
    let rs = json!({"status": {"parents": [{
        "parentRef": {"name": g, "namespace": ns.name},
        "controllerName": "example.com/stand-in",
        "conditions": [accepted, true_condition("ResolvedRefs")]}]}});
    routes
        .patch_status(&r, &PatchParams::default(), &Patch::Merge(&rs))
        .await
        .unwrap();
}

/// Every distinct route backend list seen until `stop`, in order.
fn watch_route(
    ns: &TestNamespace,
    svc: &str,
) -> (Arc<Mutex<Vec<Backends>>>, Arc<tokio::sync::Notify>) {
    let routes: Api<HTTPRoute> = Api::namespaced(ns.client.clone(), &ns.name);
    let seen: Arc<Mutex<Vec<Backends>>> = Arc::default();
    let stop = Arc::new(tokio::sync::Notify::new());
    let (s, st, name) = (seen.clone(), stop.clone(), format!("{svc}-httproute"));
    tokio::spawn(async move {
        loop {
            if let Ok(Some(r)) = routes.get_opt(&name).await {
                let b = route_backends(&r);
                let mut seen = s.lock().unwrap();
                if seen.last() != Some(&b) {
                    seen.push(b);
                }
            }
            tokio::select! {
                _ = st.notified() => return,
                _ = tokio::time::sleep(std::time::Duration::from_millis(100)) => {}
            }
        }
    });
    (seen, stop)
}

/// The `target_capacity` values sent to each cluster, in order, repeats
/// of the same value to the same cluster (a resubmission) folded.
fn capacities(fake: &FakeDashboard) -> Vec<(String, i64)> {
    let mut out: Vec<(String, i64)> = Vec::new();
    for (c, body) in fake.submissions() {
        let Some(tc) = body["target_capacity"].as_i64() else {
            continue;
        };
        if out
            .iter()
            .rev()
            .find(|(o, _)| *o == c)
            .is_none_or(|(_, v)| *v != tc)
        {
            out.push((c, tc));
        }
    }
    out
}

#[tokio::test]
async fn capacity_then_traffic_move_step_by_step_and_the_new_cluster_is_promoted_at_100() {
    let (ns, op, fake) = setup_incremental("inc-up").await;
    apply::<RayService>(&ns, &rayservice("web", "rayproject/ray:2.52.0", 50, 2)).await;
    let ready = ready_on_first_cluster(&ns, "web").await;
    let first = active(&ready).unwrap();
    // A first cluster takes everything at once.
    assert_eq!(
        sides(&ready).0,
        (Some(100), Some(100)),
        "{:?}",
        status(&ready)
    );
    assert_eq!(capacities(&fake), [(first.clone(), 100)]);
    // KubeRay's objects: the Gateway of the class, an HTTP listener on 80.
    let gw: Gateway = Api::namespaced(ns.client.clone(), &ns.name)
        .get("web-gateway")
        .await
        .unwrap();
    assert_eq!(gw.spec.gateway_class_name, "test-gateway-class");
    assert_eq!(
        (
            gw.spec.listeners[0].name.as_str(),
            gw.spec.listeners[0].protocol.as_str(),
            gw.spec.listeners[0].port
        ),
        ("http", "HTTP", 80)
    );
    assert_eq!(gw.owner_references()[0].kind, "RayService");
    let routes: Api<HTTPRoute> = Api::namespaced(ns.client.clone(), &ns.name);
    let route = routes.get("web-httproute").await.unwrap();
    assert_eq!(route.spec.parent_refs[0].name, "web-gateway");
    assert_eq!(route.owner_references()[0].kind, "RayService");
    assert_eq!(
        route_backends(&route),
        [(format!("{first}-serve-svc"), 100)]
    );
    let b = &route.spec.rules[0].backend_refs.as_ref().unwrap()[0];
    assert_eq!(
        (b.port, b.namespace.as_deref()),
        (Some(8000), Some(ns.name.as_str()))
    );
    // Each cluster has its own serve service, owned by the cluster; the
    // head service is the RayService's as always.
    let svcs = ns.api::<Service>();
    let own = svcs.get(&format!("{first}-serve-svc")).await.unwrap();
    assert_eq!(own.owner_references()[0].kind, "RayCluster");
    assert_eq!(own.labels()["ray.io/originated-from-cr-name"], first);
    assert!(svcs.get_opt("web-serve-svc").await.unwrap().is_none());
    let head = svcs.get("web-head-svc").await.unwrap();
    assert_eq!(
        head.spec.unwrap().selector.unwrap()["ray.io/cluster"],
        first
    );

    accept_gateway_and_route(&ns, "web").await;
    let (seen, stop) = watch_route(&ns, "web");
    apply::<RayService>(&ns, &rayservice("web", "rayproject/ray:2.53.0", 50, 2)).await;
    let up = wait_service(&ns, "web", "UpgradeInProgress", |s| {
        condition(s, "UpgradeInProgress").is_some_and(|c| c.0 == "True")
    })
    .await;
    let second = pending(&up).unwrap();
    assert_eq!(
        sides(&up).1.0,
        Some(0),
        "a new cluster starts with no capacity"
    );
    // Halfway, the operator restarts: the upgrade goes on from the status,
    // with no new cluster.
    wait_service(&ns, "web", "half the traffic moved", |s| {
        sides(s).1.1 == Some(50)
    })
    .await;
    op.kill();
    let _op = Operator::start_with(&ns.name, Config::default(), Arc::new(fake.clone()));
    let done = wait_service(&ns, "web", "the new cluster promoted", |s| {
        active(s).as_deref() == Some(second.as_str()) && pending(s).is_none()
    })
    .await;
    assert_eq!(
        condition(&done, "UpgradeInProgress").unwrap().1,
        "NoPendingCluster"
    );
    assert_eq!(
        sides(&done).0,
        (Some(100), Some(100)),
        "{:?}",
        status(&done)
    );
    // Seen by the route watcher itself, so its record is complete.
    let last = vec![(format!("{second}-serve-svc"), 100)];
    wait_until("the route on the new cluster only", TIMEOUT, || async {
        (seen.lock().unwrap().last() == Some(&last)).then_some(())
    })
    .await;
    stop.notify_one();
    // Capacity moved first on the new cluster, then off the old one, in
    // maxSurgePercent steps. A step the killed operator sent but did not
    // record in the status is sent again from the status after the
    // restart (the new operator resubmits the config once, with the
    // capacity the status has), so the steps are checked in order, not
    // as the whole list.
    let caps = capacities(&fake);
    let want = [
        (first.clone(), 100),
        (second.clone(), 0),
        (second.clone(), 50),
        (first.clone(), 50),
        (second.clone(), 100),
        (first.clone(), 0),
    ];
    let mut it = caps.iter();
    for w in &want {
        assert!(it.any(|c| c == w), "{w:?} not sent in order: {caps:?}");
    }
    let last = |c: &str| caps.iter().rev().find(|(n, _)| n == c).map(|(_, v)| *v);
    assert_eq!(
        (last(&first), last(&second)),
        (Some(0), Some(100)),
        "{caps:?}"
    );
    // Traffic followed in stepSizePercent steps, never ahead of capacity.
    let a = |w| (format!("{first}-serve-svc"), w);
    let p = |w| (format!("{second}-serve-svc"), w);
    let seen = seen.lock().unwrap().clone();
    let want = [
        vec![a(100), p(0)],
        vec![a(50), p(50)],
        vec![a(0), p(100)],
        vec![p(100)],
    ];
    let mut it = seen.iter();
    for w in &want {
        assert!(it.any(|s| s == w), "{w:?} not seen in order: {seen:?}");
    }
    let head = svcs.get("web-head-svc").await.unwrap();
    assert_eq!(
        head.spec.unwrap().selector.unwrap()["ray.io/cluster"],
        second
    );
    wait_until("the old cluster deleted", TIMEOUT, || async {
        (owned_clusters(&ns, "web").await == [second.clone()]).then_some(())
    })
    .await;
    let evs = wait_events(
        &ns,
        "web",
        &[
            "CreatedGateway",
            "CreatedHTTPRoute",
            "UpdatedHTTPRoute",
            "UpdatedServeTargetCapacity",
            "DeletedRayCluster",
        ],
    )
    .await;
    let made = evs.iter().filter(|e| e.1 == "CreatedRayCluster").count();
    assert_eq!(made, 2, "exactly two clusters were ever created");
}

#[tokio::test]
async fn going_back_to_the_live_spec_mid_upgrade_rolls_traffic_and_capacity_back() {
    let (ns, _op, fake) = setup_incremental("inc-back").await;
    let old = rayservice("back", "rayproject/ray:2.52.0", 25, 2);
    apply::<RayService>(&ns, &old).await;
    let ready = ready_on_first_cluster(&ns, "back").await;
    let first = active(&ready).unwrap();
    accept_gateway_and_route(&ns, "back").await;
    apply::<RayService>(&ns, &rayservice("back", "rayproject/ray:2.53.0", 25, 2)).await;
    let mid = wait_service(&ns, "back", "the old cluster giving up capacity", |s| {
        pending(s).is_some() && sides(s).0.0.is_some_and(|c| c <= 75)
    })
    .await;
    let second = pending(&mid).unwrap();
    apply::<RayService>(&ns, &old).await;
    let back = wait_service(&ns, "back", "RollbackInProgress", |s| {
        condition(s, "RollbackInProgress").is_some_and(|c| c.0 == "True")
    })
    .await;
    let (_, reason, message) = condition(&back, "RollbackInProgress").unwrap();
    assert_eq!(reason, "DesiredClusterSpecChanged");
    assert!(message.contains("reverted"), "{message}");
    let done = wait_service(&ns, "back", "the rollback complete", |s| {
        pending(s).is_none() && condition(s, "RollbackInProgress").is_none()
    })
    .await;
    assert_eq!(active(&done).as_deref(), Some(first.as_str()));
    assert_eq!(sides(&done).0, (Some(100), Some(100)));
    assert_eq!(condition(&done, "UpgradeInProgress").unwrap().0, "False");
    let routes: Api<HTTPRoute> = Api::namespaced(ns.client.clone(), &ns.name);
    wait_until("the route on the old cluster only", TIMEOUT, || async {
        let r = routes.get("back-httproute").await.ok()?;
        (route_backends(&r) == [(format!("{first}-serve-svc"), 100)]).then_some(())
    })
    .await;
    // The new cluster was drained to 0 and the old one restored to 100.
    let caps = capacities(&fake);
    let last = |c: &str| caps.iter().rev().find(|(n, _)| n == c).map(|(_, v)| *v);
    assert_eq!(last(&first), Some(100), "{caps:?}");
    assert_eq!(last(&second), Some(0), "{caps:?}");
    wait_until("the new cluster deleted", TIMEOUT, || async {
        (owned_clusters(&ns, "back").await == [first.clone()]).then_some(())
    })
    .await;
    let made = events(&ns, "back")
        .await
        .into_iter()
        .filter(|e| e.1 == "CreatedRayCluster")
        .count();
    assert_eq!(made, 2, "no third cluster");
}

#[tokio::test]
async fn no_capacity_moves_until_the_gateway_and_route_are_ready() {
    let (ns, _op, fake) = setup_incremental("inc-wait").await;
    apply::<RayService>(&ns, &rayservice("wait", "rayproject/ray:2.52.0", 50, 1)).await;
    let ready = ready_on_first_cluster(&ns, "wait").await;
    let first = active(&ready).unwrap();
    apply::<RayService>(&ns, &rayservice("wait", "rayproject/ray:2.53.0", 50, 1)).await;
    let s = wait_service(&ns, "wait", "the Ready message naming the Gateway", |s| {
        pending(s).is_some()
            && condition(s, "Ready").is_some_and(|c| c.2.contains("the Gateway is not ready"))
    })
    .await;
    let second = pending(&s).unwrap();
    // The new cluster got its config at 0 and nothing more.
    wait_until("the config on the new cluster", TIMEOUT, || async {
        (fake.submitted_to(&second) >= 1).then_some(())
    })
    .await;
    assert_eq!(
        capacities(&fake),
        [(first.clone(), 100), (second.clone(), 0)]
    );
    // Once the Gateway controller accepts them, the upgrade runs through.
    accept_gateway_and_route(&ns, "wait").await;
    wait_service(&ns, "wait", "the new cluster promoted", |s| {
        active(s).as_deref() == Some(second.as_str())
    })
    .await;
}

/// Capacity leaves the old cluster only once the Gateway's controller has
/// processed the route that moved its traffic away (beyond KubeRay, which
/// does not look): while the stand-in controller reports on an older
/// generation, the old cluster keeps its capacity and the status says why.
#[tokio::test]
async fn capacity_leaves_the_old_cluster_only_once_the_gateway_processed_the_route() {
    let (ns, _op, fake) = setup_incremental("inc-lag").await;
    apply::<RayService>(&ns, &rayservice("lag", "rayproject/ray:2.52.0", 50, 1)).await;
    let ready = ready_on_first_cluster(&ns, "lag").await;
    let first = active(&ready).unwrap();
    report_gateway_and_route(&ns, "lag", true).await;
    apply::<RayService>(&ns, &rayservice("lag", "rayproject/ray:2.53.0", 50, 1)).await;
    let s = wait_service(
        &ns,
        "lag",
        "the Ready message naming the route's generation",
        |s| {
            sides(s).1.1 == Some(50)
                && condition(s, "Ready").is_some_and(|c| {
                    c.2.contains(
                        "for the Gateway's controller to process the HTTPRoute's generation",
                    )
                })
        },
    )
    .await;
    let second = pending(&s).unwrap();
    assert_eq!(
        sides(&s).0.0,
        Some(100),
        "the old cluster keeps its capacity: {:?}",
        status(&s)
    );
    assert!(
        !capacities(&fake).contains(&(first.clone(), 50)),
        "{:?}",
        capacities(&fake)
    );
    // The controller catches up with each version of the route from now
    // on (on each look below): the upgrade runs through.
    wait_until("the new cluster promoted", TIMEOUT, || async {
        report_gateway_and_route(&ns, "lag", true).await;
        let s = ns.api::<RayService>().get("lag").await.ok()?;
        (active(&s).as_deref() == Some(second.as_str())).then_some(())
    })
    .await;
    let caps = capacities(&fake);
    let mut it = caps.iter();
    for w in [(first.clone(), 50), (first.clone(), 0)] {
        assert!(it.any(|c| *c == w), "{w:?} not sent in order: {caps:?}");
    }
}

/// Capacity leaves the old cluster `intervalSeconds` after its traffic did
/// (beyond KubeRay, which lowers it on the next pass), so that the Gateway
/// has applied the route before the old cluster's replicas go.
#[tokio::test]
async fn capacity_leaves_the_old_cluster_an_interval_after_its_traffic() {
    let (ns, _op, fake) = setup_incremental("inc-drain").await;
    apply::<RayService>(&ns, &rayservice("drain", "rayproject/ray:2.52.0", 100, 10)).await;
    let ready = ready_on_first_cluster(&ns, "drain").await;
    let first = active(&ready).unwrap();
    accept_gateway_and_route(&ns, "drain").await;
    apply::<RayService>(&ns, &rayservice("drain", "rayproject/ray:2.53.0", 100, 10)).await;
    // All traffic moves at once; the old cluster's capacity waits.
    let s = wait_service(&ns, "drain", "the Ready message naming the wait", |s| {
        sides(s).1.1 == Some(100)
            && condition(s, "Ready").is_some_and(|c| {
                c.2.contains("target_capacity 0 waits until")
                    && c.2.contains("(intervalSeconds after its traffic moved)")
            })
    })
    .await;
    assert_eq!(sides(&s).0.0, Some(100), "{:?}", status(&s));
    assert!(
        !capacities(&fake).contains(&(first.clone(), 0)),
        "{:?}",
        capacities(&fake)
    );
    let second = pending(&s).unwrap();
    wait_service(&ns, "drain", "the new cluster promoted", |s| {
        active(s).as_deref() == Some(second.as_str())
    })
    .await;
    assert!(capacities(&fake).contains(&(first, 0)));
}

#[tokio::test]
async fn losing_the_live_cluster_mid_upgrade_warns_that_no_rollback_is_possible() {
    let (ns, _op, _fake) = setup_incremental("inc-lost").await;
    apply::<RayService>(&ns, &rayservice("lost", "rayproject/ray:2.52.0", 50, 1)).await;
    let ready = wait_service(&ns, "lost", "Ready", |s| {
        condition(s, "Ready").is_some_and(|c| c.0 == "True") && active(s).is_some()
    })
    .await;
    let first = active(&ready).unwrap();
    // Without a ready Gateway the upgrade holds with both clusters.
    apply::<RayService>(&ns, &rayservice("lost", "rayproject/ray:2.53.0", 50, 1)).await;
    wait_service(&ns, "lost", "UpgradeInProgress", |s| {
        pending(s).is_some() && condition(s, "UpgradeInProgress").is_some_and(|c| c.0 == "True")
    })
    .await;
    Api::<RayCluster>::namespaced(ns.client.clone(), &ns.name)
        .delete(&first, &Default::default())
        .await
        .unwrap();
    let note = wait_until("the RollbackImpossible warning", TIMEOUT, || async {
        events(&ns, "lost")
            .await
            .into_iter()
            .find(|e| e.0 == "Warning" && e.1 == "RollbackImpossible")
            .map(|e| e.2)
    })
    .await;
    assert!(
        note.contains("rollback cannot be initiated") && note.contains(&first),
        "{note}"
    );
}
