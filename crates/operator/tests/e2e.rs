//! End to end on real nodes: pods really run (kubelet, containerd, the
//! locally built Ray image), the operator runs in the cluster from its own
//! image as the `kuberay-operator` chart installs it, and what is checked is
//! what Ray itself reports. Needs root; the first run builds the node
//! images (see `hack/build-node-images.sh`).
//!
//! Every test here is named `e2e_*`, so `cargo test -- --skip e2e_` runs the
//! fast suite alone.

mod e2e_support;
mod support;

use e2e_support::*;
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kuberay_api::{RayCluster, RayJob};
use kuberay_testenv::harness::{self, wait_until};
use kuberay_testenv::samples;
use support::cli::{kubectl, run};

#[tokio::test]
async fn e2e_pods_reach_the_api_server_and_dns_but_nothing_outside() {
    let ns = harness::real_namespace("e2e-net").await;
    let rejected_before = egress_rejections();
    // The pod uses the in-cluster conventions every client relies on: the
    // `kubernetes` Service's environment variables, the projected token
    // and the cluster CA; then it tries a TEST-NET-1 address (never routed
    // anywhere), which the slot's firewall must refuse.
    let script = r#"
set -u
sa=/var/run/secrets/kubernetes.io/serviceaccount
wget -q -O- --ca-certificate=$sa/ca.crt --header "Authorization: Bearer $(cat $sa/token)" \
  "https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT/api" | tr -d ' \n'; echo
getent hosts kubernetes.default.svc.cluster.local >/dev/null && echo dns=ok || echo dns=failed
getent hosts example.com >/dev/null && echo outside-dns=resolved || echo outside-dns=refused
timeout 5 bash -c 'echo > /dev/tcp/192.0.2.1/80' 2>/dev/null && echo outside=reached || echo outside=blocked
"#;
    let pod = serde_json::json!({
        "apiVersion": "v1", "kind": "Pod", "metadata": {"name": "probe"},
        "spec": {"restartPolicy": "Never", "containers": [{
            "name": "probe", "image": RAY_IMAGE, "command": ["bash", "-c", script],
        }]},
    });
    apply_json::<Pod>(&ns, pod).await;
    let logs = wait_pod_done(&ns, "probe").await;
    assert!(logs.contains(r#""kind":"APIVersions""#), "{logs}");
    assert!(logs.contains("dns=ok"), "{logs}");
    assert!(logs.contains("outside-dns=refused"), "{logs}");
    assert!(logs.contains("outside=blocked"), "{logs}");
    assert!(
        egress_rejections() > rejected_before,
        "the attempt to leave the machine was not counted by the egress firewall"
    );
}

#[tokio::test]
async fn e2e_raycluster_sample_runs_ray_with_a_worker_joined_through_dns() {
    let _permit = harness::ray_permit().await;
    operator_installed().await;
    let ns = harness::real_namespace("e2e-cluster").await;
    let manifest = samples::required("ray-cluster.sample.yaml");
    let rc: RayCluster = apply_yaml(&ns, &manifest).await;
    let name = rc.name_any();

    let ready = tokio::time::timeout(
        RAY_TIMEOUT,
        wait_until(
            "the sample RayCluster to be ready",
            RAY_TIMEOUT * 2,
            || async {
                let rc = ns.api::<RayCluster>().get(&name).await.ok()?;
                let state = rc.status.as_ref()?.state.clone()?;
                (state.to_string() == "ready").then_some(rc)
            },
        ),
    )
    .await;
    let Ok(rc) = ready else {
        let report = namespace_report(&ns.name);
        panic!(
            "the sample RayCluster was not ready in {}s{report}",
            RAY_TIMEOUT.as_secs()
        );
    };
    let status = rc.status.as_ref().unwrap();
    assert_eq!(status.ready_worker_replicas, Some(1), "{status:?}");

    // Ready means the real probes passed: the containers report ready.
    let head = ray_pod(&ns, &name, "head").await;
    let worker = ray_pod(&ns, &name, "worker").await;
    for p in [&head, &worker] {
        let statuses = p
            .status
            .as_ref()
            .unwrap()
            .container_statuses
            .clone()
            .unwrap();
        assert!(
            statuses.iter().all(|c| c.ready),
            "{}: {statuses:?}",
            p.name_any()
        );
    }

    // Ray itself sees both nodes, the worker at its pod IP.
    let nodes = run(
        kubectl()
            .args([
                "exec",
                "-n",
                &ns.name,
                &head.name_any(),
                "-c",
                "ray-head",
                "--",
            ])
            .args([
                "python",
                "-c",
                "import ray; ray.init(address='auto', logging_level='ERROR'); \
             print(sorted(n['NodeManagerAddress'] for n in ray.nodes() if n['Alive']))",
            ]),
        None,
    );
    let worker_ip = worker.status.as_ref().unwrap().pod_ip.clone().unwrap();
    let head_ip = head.status.as_ref().unwrap().pod_ip.clone().unwrap();
    assert!(
        nodes.contains(&worker_ip) && nodes.contains(&head_ip),
        "{nodes}"
    );
    let status_text = run(
        kubectl().args([
            "exec",
            "-n",
            &ns.name,
            &head.name_any(),
            "-c",
            "ray-head",
            "--",
            "ray",
            "status",
        ]),
        None,
    );
    assert!(status_text.contains("1 workergroup"), "{status_text}");

    // The only address the worker was given for the head is the head
    // service's DNS name, so its being alive proves the name resolved.
    let fqdn = format!("{name}-head-svc.{}.svc.cluster.local", ns.name);
    let spec = serde_json::to_string(&worker.spec).unwrap();
    assert!(
        spec.contains(&fqdn),
        "the worker's pod spec does not name {fqdn}: {spec}"
    );

    // kubectl logs and port-forward reach the real containers.
    let logs = run(
        kubectl().args([
            "logs",
            "-n",
            &ns.name,
            &worker.name_any(),
            "-c",
            "wait-gcs-ready",
        ]),
        None,
    );
    assert!(!logs.trim().is_empty(), "the init container logged nothing");
    let forward = PortForward::start(&ns.name, &format!("svc/{name}-head-svc"), 8265);
    let version = forward.get("/api/version");
    assert!(version.contains("ray_version"), "{version}");
}

#[tokio::test]
async fn e2e_rayjob_sample_runs_its_entrypoint_in_k8s_job_mode() {
    let _permit = harness::ray_permit().await;
    operator_installed().await;
    let ns = harness::real_namespace("e2e-job").await;
    // The sample's ConfigMap (its code) and RayJob; its runtime_env pip
    // packages come from the image's wheelhouse.
    let manifest = samples::required("ray-job.sample.yaml");
    apply_documents(&ns, &manifest).await;
    let job = wait_job_finished(&ns, "rayjob-sample").await;
    let status = job.status.as_ref().unwrap();
    assert_eq!(
        status
            .job_status
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("SUCCEEDED"),
        "{status:?}"
    );
    assert_eq!(
        status
            .job_deployment_status
            .as_ref()
            .map(ToString::to_string)
            .as_deref(),
        Some("Complete"),
        "{status:?}"
    );
    // The submitter's log holds the entrypoint's real output.
    let logs = job_pod_logs(&ns, "rayjob-sample").await;
    assert!(
        logs.contains("test_counter got 5"),
        "submitter log:\n{logs}"
    );
}

#[tokio::test]
async fn e2e_rayjob_runs_in_http_and_sidecar_modes() {
    let _permit = harness::ray_permit().await;
    operator_installed().await;
    let ns = harness::real_namespace("e2e-modes").await;
    let entrypoint = "python -c \"import ray; ray.init(); print('answer', ray.get(ray.remote(lambda: 6 * 7).remote()))\"";
    for mode in ["HTTPMode", "SidecarMode"] {
        let name = mode.to_lowercase();
        apply_yaml::<RayJob>(&ns, &small_rayjob(&name, mode, entrypoint)).await;
        let job = wait_job_finished(&ns, &name).await;
        let status = job.status.as_ref().unwrap();
        assert_eq!(
            status
                .job_status
                .as_ref()
                .map(ToString::to_string)
                .as_deref(),
            Some("SUCCEEDED"),
            "{mode}: {status:?}"
        );
        if mode == "SidecarMode" {
            // The submitter runs beside the head; its log has the output.
            let head = ray_pod(&ns, status.ray_cluster_name.as_deref().unwrap(), "head").await;
            let logs = run(
                kubectl().args([
                    "logs",
                    "-n",
                    &ns.name,
                    &head.name_any(),
                    "-c",
                    "ray-job-submitter",
                ]),
                None,
            );
            assert!(logs.contains("answer 42"), "{mode} submitter log:\n{logs}");
        }
    }
}

#[tokio::test]
async fn e2e_operator_runs_in_the_cluster_from_its_chart() {
    operator_installed().await;
    let client = harness::client().await;
    let pods: kube::Api<Pod> = kube::Api::namespaced(client, OPERATOR_NAMESPACE);
    let list = pods
        .list(&kube::api::ListParams::default().labels("app.kubernetes.io/name=kuberay-operator"))
        .await
        .unwrap();
    let pod = list.items.first().expect("the operator pod");
    let spec = pod.spec.as_ref().unwrap();
    assert_eq!(
        spec.service_account_name.as_deref(),
        Some("kuberay-operator")
    );
    assert_eq!(
        spec.containers[0].image.as_deref(),
        Some(kuberay_testenv::realnodes::images::OPERATOR_IMAGE)
    );
    let ready = pod
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
    assert!(ready, "the operator pod is not Ready: {:?}", pod.status);
    // Its metrics endpoint answers through the API server's proxy.
    let forward = PortForward::start(OPERATOR_NAMESPACE, &format!("pod/{}", pod.name_any()), 8080);
    let metrics = forward.get("/metrics");
    assert!(
        metrics.contains("kuberay_kube_client_requests_total"),
        "{metrics}"
    );
}

#[test]
fn e2e_stopping_real_nodes_leaves_nothing_behind() {
    let plane = kuberay_testenv::ControlPlane::start(kuberay_testenv::Options::real(1))
        .unwrap_or_else(|e| panic!("a control plane with one real node did not start: {e}"));
    let dir = plane.dir().to_path_buf();
    let nodes = plane.real_nodes().unwrap();
    let slot = nodes.slot();
    let cgroup_dirs = nodes.cgroup_dirs();
    let kubeconfig = plane.kubeconfig().to_path_buf();
    // A running pod, so that there are containers, mounts and a pod
    // network namespace to clean up.
    let kubectl = || {
        let mut c =
            std::process::Command::new(kuberay_testenv::binaries::Binaries::expected().kubectl);
        c.arg(format!("--kubeconfig={}", kubeconfig.display()));
        c
    };
    run(
        kubectl().args([
            "run",
            "sleeper",
            "--image",
            RAY_IMAGE,
            "--restart=Never",
            "--",
            "sleep",
            "3600",
        ]),
        None,
    );
    run(
        kubectl().args([
            "wait",
            "--for=condition=Ready",
            "pod/sleeper",
            "--timeout=120s",
        ]),
        None,
    );
    assert!(!processes_mentioning(&dir).is_empty());

    plane.stop();

    let left = processes_mentioning(&dir);
    assert!(
        left.is_empty(),
        "processes left behind:\n{}",
        left.join("\n")
    );
    let sleepers: Vec<String> = ps_lines()
        .into_iter()
        .filter(|l| l.ends_with("sleep 3600"))
        .collect();
    assert!(
        sleepers.is_empty(),
        "the pod's container outlived its node: {sleepers:?}"
    );
    let netns = run(
        std::process::Command::new("ip").args(["netns", "list"]),
        None,
    );
    assert!(
        !netns.contains(&slot.netns()),
        "network namespace left behind: {netns}"
    );
    let links = run(std::process::Command::new("ip").args(["-o", "link"]), None);
    assert!(
        !links.contains(&slot.host_link()),
        "host link left behind: {links}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&dir.display().to_string()),
        "mounts left behind under {}",
        dir.display()
    );
    for d in cgroup_dirs {
        assert!(!d.exists(), "cgroup left behind: {}", d.display());
    }
}
