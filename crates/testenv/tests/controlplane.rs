//! The local control plane behaves like a real cluster where this project
//! depends on it: scheduling onto simulated nodes, garbage collection, the Job
//! controller, EndpointSlices; and it cleans up after itself.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::api::batch::v1::{Job, JobSpec};
use k8s_openapi::api::core::v1::{
    ConfigMap, Container, Pod, PodSpec, PodTemplateSpec, Service, ServicePort, ServiceSpec,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{DeleteParams, ListParams, ObjectMeta, PostParams};
use kuberay_testenv::harness::{self, wait_until};
use kuberay_testenv::{ControlPlane, Error, Options};

const TIMEOUT: Duration = Duration::from_secs(60);

fn pod(name: &str, labels: &[(&str, &str)]) -> Pod {
    Pod {
        metadata: ObjectMeta {
            name: Some(name.into()),
            labels: Some(
                labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            ),
            ..Default::default()
        },
        spec: Some(PodSpec {
            containers: vec![Container {
                name: "main".into(),
                image: Some("busybox".into()),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn is_running(p: &Pod) -> bool {
    let status = p.status.as_ref();
    status.and_then(|s| s.phase.as_deref()) == Some("Running")
        && status.and_then(|s| s.pod_ip.as_ref()).is_some()
}

#[tokio::test]
async fn owned_pod_runs_on_a_simulated_node_and_is_garbage_collected_with_its_owner() {
    let ns = harness::namespace("gc").await;
    let cms = ns.api::<ConfigMap>();
    let owner = cms
        .create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some("owner".into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut p = pod("owned", &[]);
    p.metadata.owner_references = Some(vec![OwnerReference {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        name: "owner".into(),
        uid: owner.metadata.uid.clone().unwrap(),
        ..Default::default()
    }]);
    let pods = ns.api::<Pod>();
    pods.create(&PostParams::default(), &p).await.unwrap();

    let running = wait_until("the pod to be Running with an IP", TIMEOUT, || async {
        pods.get("owned").await.ok().filter(is_running)
    })
    .await;
    let node = running.spec.unwrap().node_name.expect("scheduled");
    assert!(node.starts_with("kwok-"), "scheduled to {node}");

    cms.delete("owner", &DeleteParams::foreground())
        .await
        .unwrap();
    wait_until(
        "the garbage collector to remove the pod",
        TIMEOUT,
        || async { matches!(pods.get_opt("owned").await, Ok(None)).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn job_controller_creates_the_jobs_pod() {
    let ns = harness::namespace("job").await;
    let job = Job {
        metadata: ObjectMeta {
            name: Some("hello".into()),
            ..Default::default()
        },
        spec: Some(JobSpec {
            template: PodTemplateSpec {
                spec: Some(PodSpec {
                    restart_policy: Some("Never".into()),
                    ..pod("x", &[]).spec.unwrap()
                }),
                ..Default::default()
            },
            ..Default::default()
        }),
        ..Default::default()
    };
    ns.api::<Job>()
        .create(&PostParams::default(), &job)
        .await
        .unwrap();
    let pods = ns.api::<Pod>();
    let lp = ListParams::default().labels("job-name=hello");
    wait_until("the Job controller to create a pod", TIMEOUT, || async {
        pods.list(&lp).await.ok().filter(|l| !l.items.is_empty())
    })
    .await;
    // Simulated Job pods complete, so the Job itself reaches Complete.
    let jobs = ns.api::<Job>();
    wait_until("the Job to succeed", TIMEOUT, || async {
        let j = jobs.get("hello").await.ok()?;
        (j.status?.succeeded? == 1).then_some(())
    })
    .await;
}

#[tokio::test]
async fn service_gets_endpoint_slices_for_running_pods() {
    let ns = harness::namespace("svc").await;
    let pods = ns.api::<Pod>();
    for name in ["a", "b"] {
        pods.create(&PostParams::default(), &pod(name, &[("app", "web")]))
            .await
            .unwrap();
    }
    let svc = Service {
        metadata: ObjectMeta {
            name: Some("web".into()),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([("app".into(), "web".into())])),
            ports: Some(vec![ServicePort {
                port: 80,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        ..Default::default()
    };
    ns.api::<Service>()
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();
    let slices = ns.api::<EndpointSlice>();
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    let ready = wait_until("two ready endpoints for the service", TIMEOUT, || async {
        let list = slices.list(&lp).await.ok()?;
        let addrs: Vec<String> = list
            .items
            .iter()
            .flat_map(|s| s.endpoints.iter().flatten())
            .filter(|e| e.conditions.as_ref().and_then(|c| c.ready) == Some(true))
            .flat_map(|e| e.addresses.clone())
            .collect();
        (addrs.len() == 2).then_some(addrs)
    })
    .await;
    for name in ["a", "b"] {
        let ip = pods
            .get(name)
            .await
            .unwrap()
            .status
            .unwrap()
            .pod_ip
            .unwrap();
        assert!(ready.contains(&ip), "{ip} of pod {name} not in {ready:?}");
    }
}

/// Whether a process with this PID still exists (and is not a zombie).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|s| s.split_whitespace().nth(2) != Some("Z"))
}

#[test]
fn a_dead_component_is_reported_with_its_log_and_stop_leaves_nothing_behind() {
    let plane = ControlPlane::start(Options {
        nodes: vec![],
        ..Options::default()
    })
    .unwrap();
    let components = [
        "etcd",
        "kube-apiserver",
        "kube-controller-manager",
        "kube-scheduler",
        "kwok",
    ];
    let pids: Vec<u32> = components.iter().map(|c| plane.pid(c).unwrap()).collect();
    plane.check().unwrap();

    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(plane.pid("kwok").unwrap() as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    let err = loop {
        match plane.check() {
            Err(e) => break e,
            Ok(()) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100))
            }
            Ok(()) => panic!("a killed kwok was not noticed"),
        }
    };
    match &err {
        Error::ComponentDied {
            component, tail, ..
        } => {
            assert_eq!(component, "kwok");
            assert!(!tail.is_empty(), "the report carries the log tail");
        }
        other => panic!("unexpected error: {other}"),
    }

    plane.stop();
    for (c, pid) in components.iter().zip(pids) {
        assert!(!alive(pid), "{c} (pid {pid}) survived stop");
    }
}

#[test]
fn killing_the_owner_process_stops_its_control_plane() {
    let dir = tempfile::tempdir().unwrap();
    let ready = dir.path().join("ready");
    let mut owner = std::process::Command::new(env!("CARGO_BIN_EXE_kuberay-controlplane"))
        .args(["up", "--nodes", "0", "--kubeconfig"])
        .arg(dir.path().join("kubeconfig"))
        .arg("--dir")
        .arg(dir.path().join("plane"))
        .arg("--ready-file")
        .arg(&ready)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !ready.exists() {
        assert!(
            std::time::Instant::now() < deadline,
            "control plane did not start"
        );
        assert!(owner.try_wait().unwrap().is_none(), "owner exited early");
        std::thread::sleep(Duration::from_millis(200));
    }
    let apiserver_pids = pids_with_arg(&dir.path().join("plane").display().to_string());
    assert!(
        !apiserver_pids.is_empty(),
        "found the components' processes"
    );

    owner.kill().unwrap(); // SIGKILL: no chance to clean up itself
    owner.wait().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    while apiserver_pids.iter().any(|p| alive(*p)) {
        assert!(
            std::time::Instant::now() < deadline,
            "components outlived their owner: {:?}",
            apiserver_pids
                .iter()
                .filter(|p| alive(**p))
                .collect::<Vec<_>>()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// PIDs of processes whose command line mentions `needle`.
fn pids_with_arg(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .map(|c| String::from_utf8_lossy(&c).contains(needle))
                .unwrap_or(false)
        })
        .collect()
}
