//! The generated CRDs against a real API server: they install and become
//! Established, every sample is accepted and reads back with exactly our
//! defaults added, and bad input is rejected with the API server's message.

use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kuberay_api::{RayCluster, RayCronJob, RayJob, RayService, crd, defaults};
use kuberay_testenv::harness;
use kuberay_testenv::jsondiff::first_difference;
use kuberay_testenv::samples;
use serde_json::{Value, json};
use tokio::sync::OnceCell;

/// Installs the committed CRDs (equal to `crd::all()`, as `crd_coverage`
/// proves) once per test binary.
async fn install_crds() {
    static CRDS: OnceCell<()> = OnceCell::const_new();
    CRDS.get_or_init(harness::install_crds).await;
}

fn dynamic_api(
    client: kube::Client,
    ns: &str,
    api_version: &str,
    kind: &str,
) -> Api<DynamicObject> {
    let (group, version) = api_version.split_once('/').unwrap();
    let ar = ApiResource::from_gvk(&GroupVersionKind::gvk(group, version, kind));
    Api::namespaced_with(client, ns, &ar)
}

/// What the API server should hold for a manifest: the manifest with our
/// pure defaults applied, which must equal the CRD's structural defaults.
fn expected_spec(kind: &str, manifest: &Value) -> Value {
    fn with<K: serde::de::DeserializeOwned + serde::Serialize>(
        v: &Value,
        f: impl FnOnce(&mut K),
    ) -> Value {
        let mut typed: K = serde_json::from_value(v.clone()).unwrap();
        f(&mut typed);
        serde_json::to_value(typed).unwrap()["spec"].clone()
    }
    match kind {
        "RayCluster" => with::<RayCluster>(manifest, |o| defaults::cluster_spec(&mut o.spec)),
        "RayJob" => with::<RayJob>(manifest, |o| defaults::job_spec(&mut o.spec)),
        "RayService" => with::<RayService>(manifest, |o| defaults::service_spec(&mut o.spec)),
        "RayCronJob" => {
            with::<RayCronJob>(manifest, |o| defaults::job_spec(&mut o.spec.job_template))
        }
        other => panic!("unexpected kind {other}"),
    }
}

#[tokio::test]
async fn every_sample_is_accepted_and_reads_back_with_only_the_defaults_added() {
    let samples = samples::ray_objects();
    install_crds().await;
    let ns = harness::namespace("samples").await;
    let mut failures = Vec::new();
    for s in &samples {
        let mut manifest = s.value.clone();
        manifest["metadata"]["namespace"] = json!(ns.name);
        let api = dynamic_api(
            ns.client.clone(),
            &ns.name,
            manifest["apiVersion"].as_str().unwrap(),
            s.kind(),
        );
        let obj: DynamicObject = serde_json::from_value(manifest.clone()).unwrap();
        let stored = match manifest["metadata"]["name"].as_str() {
            Some(name) => {
                api.patch(
                    name,
                    &PatchParams::apply("kuberay-tests"),
                    &Patch::Apply(&obj),
                )
                .await
            }
            // Only generateName: server-side apply needs a name, so create.
            None => api.create(&PostParams::default(), &obj).await,
        };
        match stored {
            Err(e) => failures.push(format!("{}: rejected: {e}", s.id())),
            Ok(stored) => {
                let want = expected_spec(s.kind(), &manifest);
                if let Some(d) = first_difference("spec", &want, &stored.data["spec"]) {
                    failures.push(format!("{}: {d}", s.id()));
                }
                // Several samples share a name; each must start afresh.
                let name = stored.metadata.name.unwrap();
                api.delete(&name, &Default::default()).await.unwrap();
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} samples:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

fn minimal_cluster(name: &str) -> Value {
    json!({
        "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": name},
        "spec": {
            "headGroupSpec": {"rayStartParams": {}, "template": {"spec": {"containers": [{"name": "ray-head", "image": "rayproject/ray:2.52.0"}]}}},
            "workerGroupSpecs": [{"groupName": "w", "replicas": 1, "minReplicas": 0, "maxReplicas": 2,
                "template": {"spec": {"containers": [{"name": "ray-worker", "image": "rayproject/ray:2.52.0"}]}}}]
        }
    })
}

async fn apply(api: &Api<DynamicObject>, v: &Value) -> Result<DynamicObject, String> {
    let obj: DynamicObject = serde_json::from_value(v.clone()).unwrap();
    let name = v["metadata"]["name"].as_str().unwrap();
    api.patch(
        name,
        &PatchParams::apply("kuberay-tests").force(),
        &Patch::Apply(&obj),
    )
    .await
    .map_err(|e| e.to_string())
}

#[tokio::test]
async fn bad_input_is_rejected_with_the_api_servers_message() {
    install_crds().await;
    let ns = harness::namespace("reject").await;
    let clusters = dynamic_api(ns.client.clone(), &ns.name, "ray.io/v1", "RayCluster");

    let mut wrong_type = minimal_cluster("wrong-type");
    wrong_type["spec"]["workerGroupSpecs"][0]["replicas"] = json!("three");
    let err = apply(&clusters, &wrong_type).await.unwrap_err();
    assert!(err.contains("spec.workerGroupSpecs[0].replicas"), "{err}");

    let mut bad_enum = minimal_cluster("bad-enum");
    bad_enum["spec"]["upgradeStrategy"] = json!({"type": "Rolling"});
    let err = apply(&clusters, &bad_enum).await.unwrap_err();
    assert!(
        err.contains("spec.upgradeStrategy.type") && err.contains("Unsupported value"),
        "{err}"
    );

    let mut bad_owner = minimal_cluster("bad-owner");
    bad_owner["spec"]["managedBy"] = json!("someone/else");
    let err = apply(&clusters, &bad_owner).await.unwrap_err();
    assert!(
        err.contains("the managedBy field value must be either"),
        "{err}"
    );

    // Transition rule: managedBy may not change once set.
    let mut owned = minimal_cluster("owned");
    owned["spec"]["managedBy"] = json!("ray.io/kuberay-operator");
    apply(&clusters, &owned).await.unwrap();
    owned["spec"]["managedBy"] = json!("kueue.x-k8s.io/multikueue");
    let err = apply(&clusters, &owned).await.unwrap_err();
    assert!(err.contains("the managedBy field is immutable"), "{err}");

    let jobs = dynamic_api(ns.client.clone(), &ns.name, "ray.io/v1", "RayJob");
    let job = json!({
        "apiVersion": "ray.io/v1", "kind": "RayJob", "metadata": {"name": "half-legacy"},
        "spec": {"entrypoint": "python x.py", "rayClusterSpec": minimal_cluster("x")["spec"],
                 "deletionStrategy": {"onSuccess": {"policy": "DeleteCluster"}}}
    });
    let err = apply(&jobs, &job).await.unwrap_err();
    assert!(
        err.contains("deletionStrategy requires either BOTH onSuccess and onFailure"),
        "{err}"
    );

    let mut negative_ttl = job.clone();
    negative_ttl["metadata"]["name"] = json!("negative-ttl");
    negative_ttl["spec"]["deletionStrategy"] = json!({"deletionRules": [{"condition": {"jobStatus": "FAILED", "ttlSeconds": -1}, "policy": "DeleteSelf"}]});
    let err = apply(&jobs, &negative_ttl).await.unwrap_err();
    assert!(
        err.contains("ttlSeconds") && err.contains("should be greater than or equal to 0"),
        "{err}"
    );
}

#[tokio::test]
async fn v1alpha1_is_served_and_stored_as_v1() {
    install_crds().await;
    let ns = harness::namespace("alpha").await;
    let alpha = dynamic_api(ns.client.clone(), &ns.name, "ray.io/v1alpha1", "RayCluster");
    let mut old = minimal_cluster("old-style");
    old["apiVersion"] = json!("ray.io/v1alpha1");
    apply(&alpha, &old).await.unwrap();
    let typed: Api<RayCluster> = ns.api();
    let read = typed.get("old-style").await.unwrap();
    assert_eq!(
        read.spec.worker_group_specs.unwrap()[0].max_replicas,
        Some(2)
    );
}

#[tokio::test]
async fn crds_fit_client_side_kubectl_apply() {
    // kubectl apply (client-side) stores the whole object in an annotation
    // limited to 256 KiB in total.
    for file in crd::all() {
        let size = serde_json::to_vec(&file.crd).unwrap().len();
        assert!(
            size < 256 * 1024 - 4096,
            "{} is {size} bytes",
            file.file_name
        );
    }
}
