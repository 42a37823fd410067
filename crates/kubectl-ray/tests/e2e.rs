//! `kubectl ray` on real nodes with real Ray (KubeRay's plugin e2e tests,
//! in spirit): `create cluster --wait` until Ray is up, `get cluster`,
//! `session` reaching the dashboard, `log` copying the head's and worker's
//! Ray logs, `delete`, and `job submit` running a job to completion through
//! the `ray` CLI. The operator runs in this process (the operator's own test
//! support), watching the test's namespace; from the host it reaches a
//! dashboard at the head pod's IP, as cluster DNS names do not resolve here.

#[path = "../../operator/tests/support/mod.rs"]
mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use kuberay_api::RayCluster;
use kuberay_operator::ray::dashboard::{DashboardClient, Dashboards};
use kuberay_operator::runtime::config::Config;
use kuberay_testenv::harness::{self, TestNamespace, wait_until};

/// Real Ray starts in tens of seconds; on a loaded two-core machine, minutes.
const RAY_TIMEOUT: Duration = Duration::from_secs(420);

/// The dashboard at the head pod's IP, which the host reaches (the slot's
/// pod range is routed to it), unlike the head service's DNS name.
struct PodIpDashboards;

impl Dashboards for PodIpDashboards {
    fn client(&self, cluster: &RayCluster, url: &str) -> DashboardClient {
        let ip = cluster
            .status
            .as_ref()
            .and_then(|s| s.head.as_ref())
            .and_then(|h| h.pod_ip.clone());
        let port = url.rsplit(':').next().unwrap_or("8265");
        match ip {
            Some(ip) => DashboardClient::new(&format!("http://{ip}:{port}")),
            None => DashboardClient::new(&format!("http://{url}")),
        }
    }
}

fn kubectl_ray(ns: &TestNamespace) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_kubectl-ray"));
    c.arg(format!("--kubeconfig={}", harness::kubeconfig().display()))
        .args(["-n", &ns.name]);
    c
}

/// Runs to the end (at most twice Ray's start-up time); panics with both
/// streams unless it succeeds.
fn ok(cmd: &mut Command) -> String {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl-ray runs");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        if rx.recv_timeout(2 * RAY_TIMEOUT).is_err() {
            // Still running: stop it so that the assertion below shows its output.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(i32::try_from(pid).unwrap_or(0)),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    });
    let out = child.wait_with_output().expect("kubectl-ray runs");
    let _ = tx.send(());
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).to_string(),
        String::from_utf8_lossy(&out.stderr).to_string(),
    );
    assert!(
        out.status.success(),
        "{cmd:?} failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    stdout
}

async fn blocking<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    tokio::task::spawn_blocking(f).await.expect("no panic")
}

#[tokio::test]
async fn e2e_kubectl_ray_runs_a_cluster_session_logs_and_a_job() {
    let _permit = harness::ray_permit().await;
    let ns = harness::real_namespace("e2e-kubectl-ray").await;
    harness::install_crds().await;
    support::init_logs();
    let _operator =
        support::Operator::start_with(&ns.name, Config::default(), Arc::new(PodIpDashboards));
    let ray_bin = kuberay_testenv::ray::ray_bin()
        .unwrap_or_else(|e| panic!("job submit needs the ray CLI (hack/install-ray.sh): {e}"));

    // create cluster --wait returns once Ray's head and worker are ready.
    let timeout = format!("{}s", RAY_TIMEOUT.as_secs());
    let mut create = kubectl_ray(&ns);
    create
        .args([
            "create",
            "cluster",
            "demo",
            "--head-cpu",
            "1",
            "--head-memory",
            "2Gi",
        ])
        .args([
            "--worker-cpu",
            "500m",
            "--worker-memory",
            "1Gi",
            "--wait",
            "--timeout",
            &timeout,
        ]);
    let out = blocking(move || ok(&mut create)).await;
    assert_eq!(
        out,
        "Created Ray cluster: demo\nRay cluster demo is provisioned\n"
    );

    let mut get = kubectl_ray(&ns);
    get.args(["get", "cluster"]);
    let table = blocking(move || ok(&mut get)).await;
    let row = table.lines().nth(1).unwrap_or_default().to_string();
    let cells: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(
        &cells[..10],
        [
            "demo",
            &ns.name,
            "1",
            "1",
            "1500m",
            "0",
            "0",
            "3Gi",
            "RayClusterProvisioned",
            "ready"
        ],
        "{table}"
    );

    // session: the dashboard answers on localhost:8265 through the forward.
    let mut session = kubectl_ray(&ns)
        .args(["session", "demo"])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let stdout = session.stdout.take().unwrap();
    let banner = blocking(move || {
        let mut lines = Vec::new();
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let done = line.starts_with("Forwarding from 127.0.0.1:10001");
            lines.push(line);
            if done {
                break;
            }
        }
        lines.join("\n")
    })
    .await;
    assert!(
        banner.contains("Forwarding ports to service demo-head-svc"),
        "{banner}"
    );
    assert!(
        banner.contains("Ray Dashboard: http://localhost:8265"),
        "{banner}"
    );
    assert!(
        banner.contains("Ray Interactive Client: http://localhost:10001"),
        "{banner}"
    );
    let version = wait_until(
        "the dashboard through kubectl ray session",
        Duration::from_secs(60),
        || async {
            let body = reqwest::get("http://127.0.0.1:8265/api/version")
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            body.contains("ray_version").then_some(body)
        },
    )
    .await;
    // Whatever tag the plugin asked for, the local image runs the pinned Ray.
    let pinned = kuberay_testenv::binaries::version("RAY_VERSION");
    assert!(version.contains(pinned), "{version}");
    session.kill().unwrap();
    let _ = session.wait();

    // log: each pod's container log and its Ray log directory.
    let dir = tempfile::tempdir().unwrap();
    let out_dir = dir.path().to_path_buf();
    let mut log = kubectl_ray(&ns);
    log.args(["log", "demo", "--out-dir"]).arg(&out_dir);
    let out = blocking(move || ok(&mut log)).await;
    assert!(
        out.starts_with("Command set to retrieve both head and worker node logs.\n"),
        "{out}"
    );
    let head = support::pods(&ns, "demo", "head").await.remove(0);
    let worker = support::pods(&ns, "demo", "worker").await.remove(0);
    for (pod, ray_log) in [(&head, "gcs_server.out"), (&worker, "raylet.out")] {
        let name = kube::ResourceExt::name_any(pod);
        assert!(
            out.contains(&format!("Downloading log for Ray Node {name}")),
            "{out}"
        );
        let pod_dir = out_dir.join(&name);
        assert!(
            pod_dir.join("stdout.log").is_file(),
            "no stdout.log for {name}"
        );
        let copied = pod_dir.join(ray_log);
        let text = std::fs::read_to_string(&copied)
            .unwrap_or_else(|e| panic!("{}: {e}", copied.display()));
        assert!(!text.is_empty(), "{} is empty", copied.display());
    }

    // delete -y: the cluster goes, making room for the job's.
    let mut delete = kubectl_ray(&ns);
    delete.args(["delete", "demo", "-y"]);
    assert_eq!(
        blocking(move || ok(&mut delete)).await,
        "Deleted raycluster demo\n"
    );

    // job submit: an InteractiveMode RayJob, its cluster, `ray job submit`
    // through the forward, the job's output, and its final status.
    let work = tempfile::tempdir().unwrap();
    std::fs::write(work.path().join("main.py"), "import ray\nray.init()\nprint('hello from kubectl ray:', ray.get(ray.remote(lambda: 6 * 7).remote()))\n").unwrap();
    let mut submit = kubectl_ray(&ns);
    let path = format!(
        "{}:{}",
        ray_bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    submit
        .env("PATH", path)
        .args(["job", "submit", "--name", "hello", "--working-dir"])
        .arg(work.path())
        .args([
            "--head-cpu",
            "1",
            "--head-memory",
            "2Gi",
            "--worker-replicas",
            "0",
        ])
        .args(["--cluster-timeout", &timeout, "--", "python", "main.py"]);
    let out = blocking(move || ok(&mut submit)).await;
    assert!(out.contains("Submitted RayJob hello."), "{out}");
    assert!(out.contains("hello from kubectl ray: 42"), "{out}");
    let id = out
        .lines()
        .find_map(|l| l.strip_prefix("Generated submission ID for Ray job: "))
        .unwrap_or_else(|| panic!("no submission id in:\n{out}"));
    assert!(
        out.contains(&format!("Job {id} finished with status SUCCEEDED.")),
        "{out}"
    );
    let job = ns.api::<kuberay_api::RayJob>().get("hello").await.unwrap();
    assert_eq!(job.spec.job_id.as_deref(), Some(id));
}
