//! Every RayCluster sample of KubeRay converges to the pods and services
//! KubeRay would create for it: a head, the desired workers of each group,
//! the head service, KubeRay's labels and the generated `ray start`.

mod support;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Pod, Service};
use kube::ResourceExt;
use kube::api::{ListParams, Patch, PatchParams};
use kuberay_api::RayCluster;
use kuberay_api::features::{DEFAULTS, FeatureGates};
use kuberay_operator::controllers::raycluster::scale::desired_pods;
use kuberay_operator::runtime::config::Config;
use kuberay_testenv::harness::wait_until;
use kuberay_testenv::samples;
use support::*;

#[tokio::test]
async fn every_raycluster_sample_converges() {
    let all = samples::ray_objects();
    let mut gates = FeatureGates::default();
    for (name, _) in DEFAULTS {
        gates.set(name, true).unwrap();
    }
    let (ns, _op) = setup(
        "samples",
        Config {
            gates,
            ..Config::default()
        },
    )
    .await;
    let api = ns.api::<RayCluster>();
    let mut expected = BTreeMap::new();
    for (i, s) in all.iter().filter(|s| s.kind() == "RayCluster").enumerate() {
        // Samples share names; each gets its own so all run at once.
        let mut rc: RayCluster = serde_json::from_value(s.value.clone()).unwrap();
        let name = format!("sample-{i}");
        rc.metadata.name = Some(name.clone());
        rc.metadata.namespace = Some(ns.name.clone());
        api.patch(
            &name,
            &PatchParams::apply("kuberay-tests"),
            &Patch::Apply(&rc),
        )
        .await
        .unwrap_or_else(|e| panic!("{}: {e}", s.id()));
        kuberay_api::defaults::cluster_spec(&mut rc.spec);
        let workers: i32 = rc
            .spec
            .worker_group_specs
            .iter()
            .flatten()
            .map(desired_pods)
            .sum();
        let svc = rc
            .spec
            .head_group_spec
            .head_service
            .as_ref()
            .and_then(|h| h.metadata.as_ref())
            .and_then(|m| m.name.clone())
            .unwrap_or_else(|| format!("{name}-head-svc"));
        expected.insert(name, (s.id(), workers as usize, svc));
    }
    assert!(
        expected.len() >= 20,
        "RayCluster samples: {}",
        expected.len()
    );

    let pods_api = ns.api::<Pod>();
    for (name, (id, workers, svc)) in &expected {
        let lp = ListParams::default().labels(&format!("ray.io/cluster={name}"));
        let pods = wait_until(
            &format!("{id}: 1 head and {workers} workers"),
            TIMEOUT,
            || async {
                let pods = pods_api.list(&lp).await.ok()?.items;
                let count = |t: &str| {
                    pods.iter()
                        .filter(|p| {
                            p.labels().get("ray.io/node-type").map(String::as_str) == Some(t)
                        })
                        .count()
                };
                (count("head") == 1 && count("worker") == *workers).then_some(pods)
            },
        )
        .await;
        for p in &pods {
            let labels = p.labels();
            let node_type = labels["ray.io/node-type"].as_str();
            assert_eq!(
                labels["ray.io/identifier"],
                format!("{name}-{node_type}"),
                "{id}"
            );
            assert_eq!(
                labels["app.kubernetes.io/created-by"], "kuberay-operator",
                "{id}"
            );
            let c0 = &p.spec.as_ref().unwrap().containers[0];
            let start = c0
                .env
                .iter()
                .flatten()
                .find(|e| e.name == "KUBERAY_GEN_RAY_START_CMD")
                .and_then(|e| e.value.clone())
                .unwrap_or_else(|| {
                    panic!("{id}: no KUBERAY_GEN_RAY_START_CMD on {}", p.name_any())
                });
            let want = if node_type == "head" {
                "ray start --head "
            } else {
                "ray start "
            };
            assert!(
                start.starts_with(want) && start.contains(" --block "),
                "{id}: {start}"
            );
            if node_type == "worker" {
                assert!(
                    start.contains(&format!("--address={svc}.{}.svc.cluster.local:", ns.name)),
                    "{id}: {start}"
                );
            }
        }
        assert!(
            ns.api::<Service>().get_opt(svc).await.unwrap().is_some(),
            "{id}: no head service {svc}"
        );
    }
}
