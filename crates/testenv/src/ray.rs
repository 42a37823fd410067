//! A real Ray head on loopback, from the Ray wheel installed by
//! `hack/install-ray.sh`: for tests of the dashboard client and for the
//! local environment. Its processes form one group that is stopped on drop
//! (or by the watchdog if the owner dies).

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::Error;
use crate::binaries::{cache_dir, version};
use crate::process::Processes;

/// The directory holding the `ray` command, installing Ray first if needed.
pub fn ray_bin() -> Result<PathBuf, Error> {
    let bin = cache_dir()
        .join(format!("ray-{}", version("RAY_VERSION")))
        .join("bin");
    if bin.join("ray").is_file() {
        return Ok(bin);
    }
    let script = crate::repo_root().join("hack/install-ray.sh");
    eprintln!("kuberay-testenv: Ray missing, running {}", script.display());
    let status = Command::new("bash")
        .arg(&script)
        .stdout(std::process::Stdio::null())
        .status()
        .map_err(|e| Error::io(&script, e))?;
    if !status.success() || !bin.join("ray").is_file() {
        return Err(Error::BuildFailed(format!(
            "{} exited with {status}",
            script.display()
        )));
    }
    Ok(bin)
}

pub struct RayHead {
    processes: Processes,
    pub dashboard: String,
    _dir: tempfile::TempDir,
}

fn free_port() -> Result<u16, Error> {
    let l = std::net::TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
    Ok(l.local_addr()
        .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?
        .port())
}

impl RayHead {
    /// Starts `ray start --head` with the dashboard on a free loopback port
    /// and waits until the dashboard answers.
    pub fn start(cpus: u32) -> Result<Self, Error> {
        let bin = ray_bin()?;
        // Ray's socket paths must stay short: a short temporary directory.
        let dir = tempfile::Builder::new()
            .prefix("ray")
            .tempdir_in("/tmp")
            .map_err(|e| Error::io(Path::new("/tmp"), e))?;
        let (gcs, dash) = (free_port()?, free_port()?);
        let mut processes = Processes::new(&dir.path().join("logs"))?;
        let args: Vec<String> = vec![
            "start".into(),
            "--head".into(),
            format!("--port={gcs}"),
            "--dashboard-host=127.0.0.1".into(),
            format!("--dashboard-port={dash}"),
            format!("--num-cpus={cpus}"),
            "--include-dashboard=true".into(),
            "--disable-usage-stats".into(),
            format!("--temp-dir={}", dir.path().join("t").display()),
            "--block".into(),
        ];
        processes.spawn("ray-head", &bin.join("ray"), &args)?;
        let dashboard = format!("http://127.0.0.1:{dash}");
        processes.wait_for(
            "the Ray dashboard (/api/version)",
            "ray-head",
            Duration::from_secs(120),
            || http_get_ok("127.0.0.1", dash, "/api/version"),
        )?;
        processes.start_monitor();
        Ok(Self {
            processes,
            dashboard,
            _dir: dir,
        })
    }

    pub fn check(&self) -> Result<(), Error> {
        self.processes.check()
    }
}

/// A minimal blocking HTTP GET: whether the answer is 200.
pub(crate) fn http_get_ok(host: &str, port: u16, path: &str) -> bool {
    use std::io::{Read, Write};
    let Ok(mut s) = std::net::TcpStream::connect((host, port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes())
        .is_err()
    {
        return false;
    }
    let mut buf = [0u8; 16];
    matches!(s.read(&mut buf), Ok(n) if n >= 12 && &buf[9..12] == b"200")
}
