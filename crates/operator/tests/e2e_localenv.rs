//! The README's first command, `hack/local-up.sh`, with real nodes: it
//! reaches Ready and prints a quickstart, and that quickstart, run line by
//! line as a user would paste it, installs the operator and a Ray cluster
//! whose head reports its worker; Ctrl-C stops everything and leaves
//! nothing behind. A binary of its own: it runs a second control plane with
//! real Ray, which must not share the machine with the other end-to-end
//! tests.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::cli::repo;
use support::free_port;

fn processes_mentioning(dir: &Path) -> Vec<String> {
    let out = Command::new("ps")
        .args(["-eo", "pid,args"])
        .output()
        .unwrap();
    let needle = dir.display().to_string();
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(&needle))
        .map(str::to_owned)
        .collect()
}

/// The indented lines after "In another shell:", up to the next blank line
/// that ends the block: what the user is told to run.
fn quickstart(message: &str) -> Vec<String> {
    message
        .lines()
        .skip_while(|l| !l.starts_with("In another shell:"))
        .skip(2)
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.trim().to_string())
        .collect()
}

/// Runs one quickstart line in bash after the `export` line; its output.
fn shell(export: &str, line: &str) -> String {
    let out = Command::new("bash")
        .arg("-c")
        .arg(format!("set -e; {export}; {line}"))
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "`{line}` failed:\n{text}");
    text
}

#[test]
fn e2e_local_up_quickstart_runs_a_ray_cluster_and_ctrl_c_stops_everything() {
    let state = tempfile::tempdir().unwrap();
    let dir = state.path();
    let operator = PathBuf::from(env!("CARGO_BIN_EXE_kuberay-operator"));
    let launcher = operator.with_file_name("kuberay-controlplane");
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("hack/local-up.sh"))
        .env("KUBERAY_LOCAL_DIR", dir)
        .env("KUBERAY_LOCAL_METRICS_PORT", free_port().to_string())
        .env("KUBERAY_LOCAL_PROBE_PORT", free_port().to_string())
        // The image is built from this test's operator build.
        .env("KUBERAY_OPERATOR_BIN", &operator)
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("local-up.out")).unwrap());
    if launcher.exists() {
        cmd.env("KUBERAY_CONTROLPLANE_BIN", &launcher);
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut script = cmd.spawn().unwrap();
    let group = nix::unistd::Pid::from_raw(-(script.id() as i32));
    let output = || std::fs::read_to_string(dir.join("local-up.out")).unwrap_or_default();

    let deadline = Instant::now() + Duration::from_secs(900);
    while !dir.join("ready").exists() {
        if let Ok(Some(status)) = script.try_wait() {
            panic!("local-up.sh exited with {status}:\n{}", output());
        }
        assert!(
            Instant::now() < deadline,
            "local-up.sh never became ready:\n{}",
            output()
        );
        std::thread::sleep(Duration::from_millis(500));
    }
    let message = output();
    let lines = quickstart(&message);
    let export = lines
        .iter()
        .find(|l| l.starts_with("export KUBECONFIG="))
        .unwrap_or_else(|| panic!("no export line in the quickstart:\n{message}"))
        .clone();
    assert!(
        export.contains(&dir.join("kubeconfig").display().to_string()),
        "{export}"
    );

    let mut ray_status = String::new();
    let mut dashboard = String::new();
    for line in lines.iter().filter(|l| !l.starts_with("export ")) {
        if line.contains("port-forward") {
            // Long-running: in the background, for one request.
            let command = line.split('#').next().unwrap().trim();
            let mut forward = Command::new("bash")
                .arg("-c")
                .arg(format!("{export}; exec {command}"))
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap();
            let mut first = [0u8; 64];
            let _ = forward.stdout.as_mut().unwrap().read(&mut first);
            let local = command
                .split_whitespace()
                .last()
                .unwrap()
                .split(':')
                .next()
                .unwrap()
                .to_string();
            dashboard = shell(
                &export,
                &format!(
                    "curl -fsS --retry 5 --retry-all-errors http://127.0.0.1:{local}/api/version"
                ),
            );
            let _ = forward.kill();
            let _ = forward.wait();
            continue;
        }
        let out = shell(&export, line);
        if line.contains("ray status") {
            ray_status = out;
        }
    }
    assert!(
        ray_status.contains("1 workergroup") && ray_status.contains("1 headgroup"),
        "ray status:\n{ray_status}"
    );
    assert!(
        dashboard.contains("ray_version"),
        "the dashboard answered: {dashboard}"
    );

    let _ = nix::sys::signal::kill(group, nix::sys::signal::Signal::SIGINT);
    let deadline = Instant::now() + Duration::from_secs(90);
    let status = loop {
        if let Some(s) = script.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "local-up.sh did not stop after Ctrl-C"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.code().is_some_and(|c| c == 0 || c == 130),
        "Ctrl-C should stop the environment cleanly, got {status}:\n{}",
        output()
    );
    let left = processes_mentioning(dir);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(
        !mounts.contains(&dir.display().to_string()),
        "mounts left behind under {}",
        dir.display()
    );
}
