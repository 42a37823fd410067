//! Supervision of the control plane's processes: start each with its output
//! in a log file, notice when one dies (and say why, with the tail of its
//! log), stop them all, and make sure none outlives the process that started
//! them, even when that process is killed or a test panics and statics are
//! never dropped.
//!
//! All components share one process group. A small watchdog process, in a
//! group of its own, polls the owner's PID and kills the group once the owner
//! is gone, so cleanup needs no signal handler and no unsafe code.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill, killpg};
use nix::unistd::Pid;

use crate::Error;

struct Component {
    name: String,
    child: Child,
    log: PathBuf,
    /// Reported once: the monitor thread must not repeat itself every second.
    reported: bool,
}

/// The running processes of one control plane.
pub struct Processes {
    components: Arc<Mutex<Vec<Component>>>,
    pgid: Option<Pid>,
    watchdog: Option<Child>,
    log_dir: PathBuf,
    monitor_stop: Arc<AtomicBool>,
    /// Run after every component is stopped, by [`Processes::stop`] or by
    /// the watchdog: for what the components leave outside their process
    /// group (real nodes' containers, namespaces, cgroups).
    cleanup: Option<PathBuf>,
    /// Given to the watchdog as its stdin, so that a lock held through it
    /// (an open file description) outlives us until the cleanup has run.
    hold: Option<File>,
}

impl Processes {
    pub fn new(log_dir: &Path) -> Result<Self, Error> {
        std::fs::create_dir_all(log_dir).map_err(|e| Error::io(log_dir, e))?;
        Ok(Self {
            components: Arc::default(),
            pgid: None,
            watchdog: None,
            log_dir: log_dir.to_path_buf(),
            monitor_stop: Arc::default(),
            cleanup: None,
            hold: None,
        })
    }

    /// A script to run once everything is stopped. Must be set before the
    /// first component starts, since the watchdog is told about it then.
    /// `hold` (a lock file) stays open in the watchdog until the script has
    /// run: whoever waits for that lock never sees a half-cleaned state.
    pub fn set_cleanup(&mut self, script: &Path, hold: File) {
        assert!(self.pgid.is_none(), "set_cleanup after the first spawn");
        self.cleanup = Some(script.to_path_buf());
        self.hold = Some(hold);
    }

    /// Starts `program` as component `name`; the first component leads the
    /// process group the others join.
    pub fn spawn(&mut self, name: &str, program: &Path, args: &[String]) -> Result<(), Error> {
        let pid = self.launch(name, program, args, &[])?;
        if self.pgid.is_none() {
            let pgid = Pid::from_raw(pid as i32);
            self.pgid = Some(pgid);
            self.watchdog = Some(spawn_watchdog(
                pgid,
                self.cleanup.as_deref(),
                self.hold.take(),
            )?);
        }
        Ok(())
    }

    /// Starts one more component once the group runs (with `env` added to
    /// its environment): supervised, and stopped with the others, like
    /// those [`Processes::spawn`] started.
    pub fn spawn_member(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<(), Error> {
        assert!(self.pgid.is_some(), "spawn_member before the first spawn");
        self.launch(name, program, args, env).map(drop)
    }

    /// Spawns `program` into the group (or as its leader) with its output
    /// in `<name>.log`, and records it; returns its PID.
    fn launch(
        &self,
        name: &str,
        program: &Path,
        args: &[String],
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Result<u32, Error> {
        let log = self.log_dir.join(format!("{name}.log"));
        let out = File::create(&log).map_err(|e| Error::io(&log, e))?;
        let err = out.try_clone().map_err(|e| Error::io(&log, e))?;
        let mut cmd = Command::new(program);
        cmd.args(args)
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .process_group(self.pgid.map_or(0, Pid::as_raw));
        let child = cmd.spawn().map_err(|source| Error::Spawn {
            component: name.to_string(),
            source,
        })?;
        let id = child.id();
        self.components.lock().unwrap().push(Component {
            name: name.to_string(),
            child,
            log,
            reported: false,
        });
        Ok(id)
    }

    /// The PID of a running component, by name.
    pub fn pid(&self, name: &str) -> Option<u32> {
        let comps = self.components.lock().unwrap();
        comps.iter().find(|c| c.name == name).map(|c| c.child.id())
    }

    /// An error for the first component that has exited, if any.
    pub fn check(&self) -> Result<(), Error> {
        let mut comps = self.components.lock().unwrap();
        for c in comps.iter_mut() {
            if let Some(err) = exited(c) {
                return Err(err);
            }
        }
        Ok(())
    }

    /// Polls until `ready` answers true, failing early if a component dies.
    /// `what` and `log_of` name what is awaited and whose log explains a timeout.
    pub fn wait_for(
        &self,
        what: &str,
        log_of: &str,
        timeout: Duration,
        mut ready: impl FnMut() -> bool,
    ) -> Result<(), Error> {
        let start = Instant::now();
        loop {
            self.check()?;
            if ready() {
                return Ok(());
            }
            if start.elapsed() > timeout {
                let log = self.log_dir.join(format!("{log_of}.log"));
                return Err(Error::Timeout {
                    what: what.to_string(),
                    seconds: timeout.as_secs(),
                    detail: format!("; last lines of {}:\n{}", log.display(), tail(&log, 20)),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// A thread that reports, once each, components that die while the
    /// control plane is in use, so a test failure that follows is explained.
    pub fn start_monitor(&self) {
        let comps = Arc::clone(&self.components);
        let stop = Arc::clone(&self.monitor_stop);
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                for c in comps.lock().unwrap().iter_mut() {
                    if c.reported {
                        continue;
                    }
                    if let Some(err) = exited(c) {
                        c.reported = true;
                        eprintln!("kuberay-testenv: {err}");
                    }
                }
                std::thread::sleep(Duration::from_secs(1));
            }
        });
    }

    /// Stops every component: SIGTERM to the group, then SIGKILL to whatever
    /// is still there after a grace period.
    pub fn stop(&mut self) {
        self.monitor_stop.store(true, Ordering::Relaxed);
        let mut comps = self.components.lock().unwrap();
        if let Some(pgid) = self.pgid.take() {
            let _ = killpg(pgid, Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(5);
            while Instant::now() < deadline
                && comps
                    .iter_mut()
                    .any(|c| matches!(c.child.try_wait(), Ok(None)))
            {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        for c in comps.iter_mut() {
            let _ = c.child.wait();
        }
        comps.clear();
        if let Some(script) = self.cleanup.take() {
            let _ = Command::new("bash")
                .arg(&script)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status();
        }
        if let Some(mut w) = self.watchdog.take() {
            let _ = kill(Pid::from_raw(w.id() as i32), Signal::SIGKILL);
            let _ = w.wait();
        }
    }
}

impl Drop for Processes {
    fn drop(&mut self) {
        self.stop();
    }
}

/// If `c` has exited, the error that says so. Every caller gets it, however
/// often it asks (the child keeps its exit status once reaped): the monitor
/// printing a death must not hide it from `check`.
fn exited(c: &mut Component) -> Option<Error> {
    let status = c.child.try_wait().ok().flatten()?;
    let tail_text = tail(&c.log, 30);
    if let Some(port) = port_in_use(&tail_text) {
        return Some(Error::PortClash {
            component: c.name.clone(),
            port,
        });
    }
    Some(Error::ComponentDied {
        component: c.name.clone(),
        status: status.to_string(),
        log: c.log.clone(),
        tail: tail_text,
    })
}

/// The port from an "address already in use" message, as Go programs print it
/// (`listen tcp 127.0.0.1:1234: bind: address already in use`).
fn port_in_use(log: &str) -> Option<u16> {
    log.lines()
        .filter(|l| l.contains("address already in use"))
        .find_map(|l| {
            let before = &l[..l.find(": bind")?];
            before.rsplit(':').next()?.trim().parse().ok()
        })
}

/// The last `lines` lines of a log file (reads at most its last 64 KiB).
pub fn tail(path: &Path, lines: usize) -> String {
    let Ok(mut f) = File::open(path) else {
        return String::from("(no log)");
    };
    let len = f.metadata().map(|m| m.len()).unwrap_or(0);
    let _ = f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)));
    let mut buf = Vec::new();
    let _ = f.read_to_end(&mut buf);
    let text = String::from_utf8_lossy(&buf);
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// A shell loop that outlives us only to kill our process group once we are
/// gone, then run the cleanup script if there is one. It runs in its own
/// group so that stopping the components does not stop it first.
fn spawn_watchdog(pgid: Pid, cleanup: Option<&Path>, hold: Option<File>) -> Result<Child, Error> {
    let script = r#"
        owner="$1"; group="$2"; cleanup="$3"
        while kill -0 "$owner" 2>/dev/null; do sleep 1; done
        kill -TERM -- "-$group" 2>/dev/null
        sleep 3
        kill -KILL -- "-$group" 2>/dev/null
        [ -n "$cleanup" ] && bash "$cleanup" >/dev/null 2>&1
        exit 0
    "#;
    Command::new("bash")
        .args(["-c", script, "kuberay-testenv-watchdog"])
        .arg(std::process::id().to_string())
        .arg(pgid.as_raw().to_string())
        .arg(cleanup.map(|p| p.display().to_string()).unwrap_or_default())
        .stdin(hold.map_or_else(Stdio::null, Stdio::from))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .spawn()
        .map_err(|source| Error::Spawn {
            component: "watchdog".into(),
            source,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_port_of_a_bind_failure() {
        let log = "I1122 starting\nE1122 failed: listen tcp 127.0.0.1:41234: bind: address already in use\n";
        assert_eq!(port_in_use(log), Some(41234));
        assert_eq!(port_in_use("all good\n"), None);
    }

    #[test]
    fn tail_returns_the_last_lines() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("x.log");
        std::fs::write(&p, "a\nb\nc\nd\n").unwrap();
        assert_eq!(tail(&p, 2), "c\nd");
        assert_eq!(tail(&dir.path().join("none"), 2), "(no log)");
    }
}
