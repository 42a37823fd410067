//! The command-line tools of the local control plane (kubectl, helm), run
//! from tests.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kuberay_testenv::binaries::Binaries;
use kuberay_testenv::harness;

/// The repository's root.
pub fn repo() -> PathBuf {
    kuberay_testenv::repo_root()
}

/// Runs a command; panics with its output if it fails.
pub fn run(cmd: &mut Command, stdin: Option<&str>) -> String {
    try_run(cmd, stdin).unwrap_or_else(|e| panic!("{e}"))
}

/// Runs a command; its stdout, or the command and its stderr if it fails.
pub fn try_run(cmd: &mut Command, stdin: Option<&str>) -> Result<String, String> {
    use std::io::Write;
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    if !out.status.success() {
        return Err(format!(
            "{cmd:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

pub fn helm() -> Command {
    Command::new(Binaries::expected().helm)
}

/// kubectl, as the control plane's admin.
pub fn kubectl() -> Command {
    let mut c = Command::new(Binaries::expected().kubectl);
    c.arg(format!("--kubeconfig={}", harness::kubeconfig().display()));
    c
}

/// A kubeconfig that authenticates as `sa` in `ns` with a fresh token.
pub fn service_account_kubeconfig(ns: &str, sa: &str, dir: &Path) -> PathBuf {
    let token = run(
        kubectl().args(["create", "token", sa, "-n", ns, "--duration=1h"]),
        None,
    );
    let admin: serde_yaml::Value =
        serde_yaml::from_str(&std::fs::read_to_string(harness::kubeconfig()).unwrap()).unwrap();
    let cluster = admin["clusters"][0]["cluster"].clone();
    let kc = serde_json::json!({
        "apiVersion": "v1", "kind": "Config",
        "clusters": [{"name": "c", "cluster": cluster}],
        "users": [{"name": sa, "user": {"token": token.trim()}}],
        "contexts": [{"name": "x", "context": {"cluster": "c", "user": sa, "namespace": ns}}],
        "current-context": "x"
    });
    let path = dir.join(format!("{sa}.kubeconfig"));
    std::fs::write(&path, serde_yaml::to_string(&kc).unwrap()).unwrap();
    path
}
