//! The install paths against the local control plane: both Helm charts
//! render and are accepted by the API server (default and non-default
//! values), `helm install` of the operator chart gives the Deployment and
//! RBAC users expect, the operator works under that ServiceAccount alone
//! (not as admin), and `config/default` installs with kubectl.

mod support;

use std::process::{Command, Stdio};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::Api;
use kuberay_api::rayjob::JobDeploymentStatus;
use kuberay_api::{RayCluster, RayJob};
use kuberay_operator::rbac;
use kuberay_testenv::harness::{self, TestNamespace, wait_until};
use support::cli::*;
use support::*;

fn template(chart: &str, ns: &str, sets: &[&str]) -> String {
    let mut c = helm();
    c.args([
        "template",
        "release",
        &repo().join("helm-chart").join(chart).display().to_string(),
        "--namespace",
        ns,
    ]);
    for s in sets {
        c.args(["--set", s]);
    }
    run(&mut c, None)
}

fn server_dry_run(manifests: &str, ns: &str) {
    run(
        kubectl().args([
            "apply",
            "--server-side",
            "--dry-run=server",
            "-n",
            ns,
            "-f",
            "-",
        ]),
        Some(manifests),
    );
}

#[tokio::test]
async fn charts_render_and_are_accepted_by_the_api_server() {
    harness::install_crds().await;
    let ns = harness::namespace("charts").await;
    let watch = format!("watchNamespace={{{}}}", ns.name);
    let cases: &[(&str, &[&str])] = &[
        ("kuberay-operator", &[]),
        (
            "kuberay-operator",
            &[
                "singleNamespaceInstall=true",
                "configuration.enabled=true",
                &watch,
                "reconcileConcurrency=4",
                "leaderElectionEnabled=false",
                "batchScheduler.name=volcano",
            ],
        ),
        ("ray-cluster", &[]),
        (
            "ray-cluster",
            &[
                "additionalWorkerGroups.smallGroup.disabled=false",
                "worker.replicas=3",
                "head.enableInTreeAutoscaling=true",
            ],
        ),
    ];
    for (chart, sets) in cases {
        let out = template(chart, &ns.name, sets);
        assert!(!out.trim().is_empty(), "{chart} {sets:?} rendered nothing");
        server_dry_run(&out, &ns.name);
    }
    let config = template(
        "kuberay-operator",
        &ns.name,
        &["configuration.enabled=true", "reconcileConcurrency=4"],
    );
    assert!(
        config.contains("apiVersion: config.ray.io/v1alpha1")
            && config.contains("reconcileConcurrency: 4"),
        "{config}"
    );
    let bad = helm()
        .args([
            "template",
            "r",
            &repo()
                .join("helm-chart/kuberay-operator")
                .display()
                .to_string(),
            "--set",
            "reconcileConcurrency=0",
        ])
        .output()
        .unwrap();
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr)
            .contains("reconcileConcurrency must be a positive integer")
    );
}

async fn wait_named<K>(ns: &TestNamespace, name: &str) -> K
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = ns.api();
    wait_until(&format!("{} {name}", K::kind(&())), TIMEOUT, || async {
        api.get_opt(name).await.ok()?
    })
    .await
}

#[tokio::test]
async fn the_helm_installed_operator_works_under_its_own_service_account() {
    harness::install_crds().await;
    let ns = harness::namespace("helm").await;
    let chart = repo()
        .join("helm-chart/kuberay-operator")
        .display()
        .to_string();
    // Distinct names: other tests may install cluster-scoped RBAC too.
    let full = format!("kr-{}", ns.name);
    run(
        helm().args([
            "install",
            "kuberay-operator",
            &chart,
            "--namespace",
            &ns.name,
            "--skip-crds",
            "--wait=false",
            "--kubeconfig",
            &harness::kubeconfig().display().to_string(),
            "--set",
            &format!("fullnameOverride={full}"),
            "--set",
            &format!("serviceAccount.name={full}"),
            "--set",
            &format!("watchNamespace={{{}}}", ns.name),
        ]),
        None,
    );
    let dep = wait_named::<Deployment>(&ns, &full).await;
    let pod = dep.spec.template.spec.unwrap();
    assert_eq!(pod.service_account_name.as_deref(), Some(full.as_str()));
    let c = &pod.containers[0];
    let args = c.args.clone().unwrap_or_default();
    for want in [
        "--enable-leader-election=true",
        "--enable-metrics=true",
        "--reconcile-concurrency=10",
        &format!("--watch-namespace={}", ns.name),
    ] {
        assert!(
            args.iter().any(|a| a == want),
            "{want} missing from {args:?}"
        );
    }
    assert!(
        args.iter()
            .any(|a| a.starts_with("--feature-gates=RayClusterStatusConditions=true")),
        "{args:?}"
    );
    assert_eq!(
        c.readiness_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap()
            .path
            .as_deref(),
        Some("/readyz")
    );
    let env: Vec<&str> = c.env.iter().flatten().map(|e| e.name.as_str()).collect();
    assert!(env.contains(&"POD_NAME") && env.contains(&"POD_NAMESPACE"));
    let role = Api::<ClusterRole>::all(ns.client.clone())
        .get(&full)
        .await
        .unwrap();
    assert!(role.rules.unwrap().iter().any(|r| {
        r.resources
            .as_ref()
            .is_some_and(|res| res.contains(&"rayclusters".to_string()))
    }));

    // Now the real thing: the operator with nothing but that account's token.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = service_account_kubeconfig(&ns.name, &full, dir.path());
    let log = dir.path().join("operator.log");
    let metrics = free_port();
    let mut op = Command::new(env!("CARGO_BIN_EXE_kuberay-operator"))
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .arg(format!("--watch-namespace={}", ns.name))
        .arg(format!("--leader-election-namespace={}", ns.name))
        .arg(format!("--metrics-addr=127.0.0.1:{metrics}"))
        .args([
            "--health-probe-bind-address=127.0.0.1:0",
            "--log-stdout-encoder=console",
        ])
        .env("POD_NAME", "rbac-test")
        .env("RUST_LOG", "info")
        .stdout(std::fs::File::create(&log).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    apply::<RayCluster>(&ns, CLUSTER_WITH_EVERY_CHILD).await;
    wait_running(&ns, "rbac", 1).await;
    wait_every_child(&ns).await;
    wait_status(&ns, "rbac", "the status written", |rc| {
        condition(rc, "RayClusterProvisioned").is_some()
    })
    .await;
    let job = "apiVersion: ray.io/v1\nkind: RayJob\nmetadata:\n  name: rbac-job\nspec:\n  entrypoint: python -c 'print(1)'\n  rayClusterSpec:\n    headGroupSpec:\n      rayStartParams: {}\n      template:\n        spec:\n          containers:\n          - name: ray-head\n            image: rayproject/ray:2.52.0\n";
    apply::<RayJob>(&ns, job).await;
    wait_named::<Job>(&ns, "rbac-job").await;
    let api = ns.api::<RayJob>();
    wait_until("the RayJob Running", TIMEOUT, || async {
        let j = api.get("rbac-job").await.ok()?;
        (j.status?.job_deployment_status? == JobDeploymentStatus::Running).then_some(())
    })
    .await;
    // Everything it asked of the API server, the Lease included, is within
    // what the chart grants (tests/rbac.rs checks the rest both ways).
    let scraped = reqwest::get(format!("http://127.0.0.1:{metrics}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let mut needed = std::collections::BTreeSet::new();
    for call in calls_in_metrics(&scraped) {
        needed.extend(rbac::needed(&call));
    }
    let mut granted = rbac::permissions(rbac::OPERATOR_RULES);
    granted.extend(rbac::permissions(rbac::LEADER_ELECTION_RULES));
    let ungranted: Vec<_> = needed.difference(&granted).collect();
    assert!(
        ungranted.is_empty(),
        "called but not granted: {ungranted:?}"
    );
    let leases = rbac::called_permissions(rbac::LEADER_ELECTION_RULES);
    let unused: Vec<_> = leases.difference(&needed).collect();
    assert!(
        unused.is_empty(),
        "Lease permissions never used: {unused:?}"
    );
    let _ = op.kill();
    let _ = op.wait();
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        !text.to_lowercase().contains("forbidden"),
        "the operator hit a permission error:\n{text}"
    );
}

#[tokio::test]
async fn config_default_installs_with_kubectl() {
    harness::install_crds().await;
    let rendered = run(
        kubectl().args([
            "kustomize",
            &repo().join("config/default").display().to_string(),
        ]),
        None,
    );
    run(
        kubectl().args(["apply", "--server-side", "--force-conflicts", "-f", "-"]),
        Some(&rendered),
    );
    let client = harness::client().await;
    let dep: Api<Deployment> = Api::namespaced(client, "ray-system");
    let d = dep.get("kuberay-operator").await.unwrap();
    assert_eq!(
        d.spec
            .template
            .spec
            .unwrap()
            .service_account_name
            .as_deref(),
        Some("kuberay-operator")
    );
}
