//! The README's first command with `--simulated`, `hack/local-up.sh
//! --simulated`: it brings up a control plane with simulated nodes, the CRDs
//! and the operator; a RayCluster applied with kubectl gets Running pods;
//! Ctrl-C stops every process it started. (The default, real nodes, is
//! driven by `e2e_localenv.rs`.)

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams};
use kuberay_api::RayCluster;
use kuberay_testenv::binaries::Binaries;
use kuberay_testenv::harness::wait_until;
use kuberay_testenv::samples;
use support::cli::repo;
use support::free_port;

/// Processes whose command line mentions the state directory: every
/// component the script starts is given a path inside it.
fn processes_under(dir: &Path) -> Vec<String> {
    let out = Command::new("pgrep")
        .args(["-af", &dir.display().to_string()])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_owned)
        .collect()
}

/// KubeRay's own RayCluster sample.
fn raycluster_manifest() -> String {
    samples::required("ray-cluster.sample.yaml")
}

#[tokio::test]
async fn local_up_runs_a_raycluster_and_ctrl_c_stops_everything() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    // The operator binary cargo built for this test, and the control-plane
    // launcher next to it (a workspace build puts both there); the script
    // builds whatever is not given.
    let operator = PathBuf::from(env!("CARGO_BIN_EXE_kuberay-operator"));
    let launcher = operator.with_file_name("kuberay-controlplane");
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("hack/local-up.sh"))
        .arg("--simulated")
        .env("KUBERAY_LOCAL_DIR", dir)
        .env("KUBERAY_LOCAL_METRICS_PORT", free_port().to_string())
        .env("KUBERAY_LOCAL_PROBE_PORT", free_port().to_string())
        .env("KUBERAY_OPERATOR_BIN", &operator)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("local-up.out")).unwrap());
    if launcher.exists() {
        cmd.env("KUBERAY_CONTROLPLANE_BIN", &launcher);
    }
    // Its own process group, so the test can send Ctrl-C the way a terminal
    // does: to the script and everything it started at once.
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut script = cmd.spawn().unwrap();
    let group = nix::unistd::Pid::from_raw(-(script.id() as i32));
    let ctrl_c = || {
        let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGINT);
    };
    let output = || std::fs::read_to_string(dir.join("local-up.out")).unwrap_or_default();

    wait_until("the local environment", Duration::from_secs(600), || {
        if let Ok(Some(status)) = script.try_wait() {
            panic!("local-up.sh exited with {status}:\n{}", output());
        }
        let ready = dir.join("ready").exists().then_some(());
        async move { ready }
    })
    .await;
    let message = output();
    assert!(
        message.contains(&format!(
            "export KUBECONFIG={}",
            dir.join("kubeconfig").display()
        )),
        "the script should say where the kubeconfig is:\n{message}"
    );

    let kubeconfig = dir.join("kubeconfig");
    let applied = Command::new(Binaries::expected().kubectl)
        .arg(format!("--kubeconfig={}", kubeconfig.display()))
        .args(["apply", "-n", "default", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut child| {
            use std::io::Write;
            child
                .stdin
                .take()
                .unwrap()
                .write_all(raycluster_manifest().as_bytes())?;
            child.wait_with_output()
        })
        .unwrap();
    assert!(
        applied.status.success(),
        "kubectl apply failed: {}",
        String::from_utf8_lossy(&applied.stderr)
    );

    let client = kuberay_testenv::client_from_kubeconfig(&kubeconfig)
        .await
        .unwrap();
    let clusters: Api<RayCluster> = Api::namespaced(client.clone(), "default");
    let pods: Api<Pod> = Api::namespaced(client, "default");
    let (name, running) = wait_until("Running Ray pods", Duration::from_secs(90), || async {
        let rc = clusters
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .pop()?;
        let name = rc.metadata.name.clone()?;
        let selector = format!("ray.io/cluster={name}");
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .ok()?;
        let running = list
            .items
            .iter()
            .filter(|p| p.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running"))
            .count();
        let workers = rc.status?.desired_worker_replicas?;
        (running == 1 + workers as usize).then_some((name, running))
    })
    .await;
    assert!(running >= 1, "{name} has no Running pod");

    ctrl_c();
    let status = wait_until("local-up.sh to exit", Duration::from_secs(60), || {
        let exited = script.try_wait().unwrap();
        async move { exited }
    })
    .await;
    assert!(
        status.code().is_some_and(|c| c == 0 || c == 130),
        "Ctrl-C should stop the environment cleanly, got {status}:\n{}",
        output()
    );
    let left = processes_under(dir);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}
