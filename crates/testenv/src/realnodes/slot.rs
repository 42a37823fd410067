//! A slot: the network namespace, the host routes and the cgroup tree of one
//! control plane with real nodes, reserved by a lock file so that several
//! can run at once (a test run beside the local environment) without
//! sharing addresses.
//!
//! Setting up and tearing down are generated shell scripts, so that what is
//! done to the machine can be read in one place (`<dir>/slot-setup.sh`,
//! `<dir>/slot-cleanup.sh`) and so that the process watchdog can run the
//! cleanup after its owner was killed. A copy of the cleanup script stays in
//! the cache until it has run: a slot whose owner vanished without cleaning
//! up is cleaned by the next owner before it is reused.

use std::fmt::Write as _;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use nix::fcntl::{Flock, FlockArg};

use super::cgroups::Hierarchy;
use crate::Error;
use crate::addresses::{LOCAL_RANGE, SLOTS, Slot};

/// The iptables chain that keeps pod traffic inside the machine.
pub const EGRESS_CHAIN: &str = "KUBERAY-RS-EGRESS";

/// A reserved slot; the reservation ends when this is dropped and no
/// process holds a [`SlotLease::hold`] of it any more.
pub struct SlotLease {
    pub slot: Slot,
    lock: Flock<File>,
    /// Where a copy of the cleanup script waits until it has run.
    pub pending_cleanup: PathBuf,
    /// The previous owner died without cleaning up: its cleanup was run
    /// here, and what it left on disk is not to be trusted.
    pub recovered: bool,
}

impl SlotLease {
    /// Another handle on the same lock: whoever keeps it open (the
    /// process watchdog, until it has run the cleanup) keeps the slot
    /// reserved, even after this process is gone.
    pub fn hold(&self) -> Result<File, Error> {
        self.lock
            .try_clone()
            .map_err(|e| Error::io(&self.pending_cleanup, e))
    }
}

/// Reserves the first free slot, cleaning up after a previous owner that
/// died without doing so (its watchdog would still hold the lock if it were
/// about to clean up itself).
pub fn reserve(cache: &Path) -> Result<SlotLease, Error> {
    let dir = cache.join("slots");
    std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
    for i in 0..SLOTS {
        let path = dir.join(format!("slot-{i}.lock"));
        let file = File::create(&path).map_err(|e| Error::io(&path, e))?;
        let Ok(lock) = Flock::lock(file, FlockArg::LockExclusiveNonblock) else {
            continue;
        };
        let pending_cleanup = dir.join(format!("slot-{i}.cleanup.sh"));
        let recovered = pending_cleanup.exists();
        if recovered {
            eprintln!(
                "kuberay-testenv: slot {i} was not cleaned up by its last owner; running {}",
                pending_cleanup.display()
            );
            let _ = Command::new("bash").arg(&pending_cleanup).status();
        }
        return Ok(SlotLease {
            slot: Slot(i),
            lock,
            pending_cleanup,
            recovered,
        });
    }
    Err(Error::Prerequisite(format!(
        "all {SLOTS} slots for control planes with real nodes are in use (locks in {}); stop one \
         (a local environment or another test run) and try again",
        dir.display()
    )))
}

/// What the scripts need to know.
#[derive(Debug, Clone)]
pub struct SlotPlan {
    pub slot: Slot,
    pub nodes: u8,
    pub hierarchies: Vec<Hierarchy>,
    /// The slot's cgroup path, the same in every hierarchy, e.g.
    /// `/sandbox/abc/kuberay-rs-0`; nodes' pods go below `<path>/node-<n>`.
    pub cgroup: String,
    /// Ancestors of that path that did not exist in some hierarchy before
    /// setup (e.g. the sandbox path exists only in `memory`): cleanup
    /// removes them again, deepest first.
    pub created_ancestors: Vec<PathBuf>,
    /// v2 hierarchies beside the v1 ones, where runc mirrors the tree.
    pub unified: Vec<PathBuf>,
}

impl SlotPlan {
    pub fn new(
        slot: Slot,
        nodes: u8,
        hierarchies: Vec<Hierarchy>,
        unified: Vec<PathBuf>,
        base: &str,
    ) -> Self {
        let cgroup = format!("{}/{}", base.trim_end_matches('/'), slot.netns());
        let mut created_ancestors = Vec::new();
        let mounts = hierarchies.iter().map(|h| &h.mount).chain(&unified);
        for mount in mounts {
            let mut dir = join(mount, &cgroup);
            while let Some(parent) = dir.parent().map(Path::to_path_buf) {
                if &parent == mount || parent.exists() {
                    break;
                }
                created_ancestors.push(parent.clone());
                dir = parent;
            }
        }
        Self {
            slot,
            nodes,
            hierarchies,
            cgroup,
            created_ancestors,
            unified,
        }
    }

    pub fn node_cgroup(&self, n: u8) -> String {
        format!("{}/node-{n}", self.cgroup)
    }

    /// The slot's cgroup directory in every hierarchy, v2 included.
    pub fn slot_dirs(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| &h.mount)
            .chain(&self.unified)
            .map(|m| join(m, &self.cgroup))
            .collect()
    }

    /// The `cgroup.procs` files a component writes its PID to, to join the
    /// slot's cgroup in every hierarchy.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        self.hierarchies
            .iter()
            .map(|h| join(&h.mount, &self.cgroup).join("cgroup.procs"))
            .collect()
    }

    /// Creates the namespace, its link to the host, the nodes' bridges, the
    /// egress firewall and the cgroup tree. Runs as one script with `-e`:
    /// the first failing command stops it and is reported.
    pub fn setup_script(&self) -> String {
        let s = self.slot;
        let ns = s.netns();
        let mut out = String::from("set -euo pipefail\n");
        let _ = writeln!(out, "ip netns add {ns}");
        let _ = writeln!(
            out,
            "ip link add {} type veth peer name {}",
            s.host_link(),
            s.namespace_link()
        );
        let _ = writeln!(out, "ip link set {} netns {ns}", s.namespace_link());
        let _ = writeln!(
            out,
            "ip addr add {}/{} dev {}",
            s.host_ip(),
            s.link_prefix_len(),
            s.host_link()
        );
        let _ = writeln!(out, "ip link set {} up", s.host_link());
        // The host reaches pods and services through the namespace.
        for cidr in [s.pod_cidr(), s.service_cidr()] {
            let _ = writeln!(
                out,
                "ip route add {cidr} via {} dev {}",
                s.namespace_ip(),
                s.host_link()
            );
        }
        let n = |cmd: String| format!("ip netns exec {ns} {cmd}\n");
        out += &n("ip link set lo up".into());
        out += &n(format!(
            "ip addr add {}/{} dev {}",
            s.namespace_ip(),
            s.link_prefix_len(),
            s.namespace_link()
        ));
        out += &n(format!("ip link set {} up", s.namespace_link()));
        out += &n(format!("ip route add default via {}", s.host_ip()));
        out += &n("sysctl -qw net.ipv4.ip_forward=1".into());
        out += &n("sysctl -qw net.bridge.bridge-nf-call-iptables=1".into());
        for i in 0..self.nodes {
            out += &n(format!("ip link add {} type bridge", s.bridge(i)));
            out += &n(format!(
                "ip addr add {}/24 dev {}",
                s.node_ip(i),
                s.bridge(i)
            ));
            out += &n(format!("ip link set {} up", s.bridge(i)));
        }
        // Whatever a pod or a node component sends beyond the benchmarking
        // range (which only ever exists inside this machine) is refused
        // here, before it could reach the host's routing.
        out += &n(format!("iptables -w -N {EGRESS_CHAIN}"));
        out += &n(format!("iptables -w -A {EGRESS_CHAIN} -o lo -j RETURN"));
        out += &n(format!(
            "iptables -w -A {EGRESS_CHAIN} -d {LOCAL_RANGE} -j RETURN"
        ));
        out += &n(format!(
            "iptables -w -A {EGRESS_CHAIN} -j REJECT --reject-with icmp-net-prohibited"
        ));
        out += &n(format!("iptables -w -I FORWARD 1 -j {EGRESS_CHAIN}"));
        out += &n(format!("iptables -w -I OUTPUT 1 -j {EGRESS_CHAIN}"));
        // The cgroup tree, with cpusets copied down: a v1 cpuset without
        // cpus and mems accepts no process.
        for h in &self.hierarchies {
            // Ancestors this setup creates come first, top-down, so each
            // cpuset is filled from an already filled parent.
            let mut dirs: Vec<PathBuf> = self
                .created_ancestors
                .iter()
                .rev()
                .filter(|a| a.starts_with(&h.mount))
                .cloned()
                .collect();
            dirs.push(join(&h.mount, &self.cgroup));
            dirs.extend((0..self.nodes).map(|i| join(&h.mount, &self.node_cgroup(i))));
            for d in dirs {
                let _ = writeln!(out, "mkdir -p {}", d.display());
                if h.controllers.iter().any(|c| c == "cpuset") {
                    let _ = writeln!(out, "fill_cpuset {}", d.display());
                }
            }
        }
        format!("{CPUSET_FN}{out}")
    }

    /// Stops every process of the slot and removes all it set up. Safe to
    /// run more than once, and on a half-made slot.
    pub fn cleanup_script(&self, state_dir: &Path, pending: &Path) -> String {
        let s = self.slot;
        let mut out = String::from("set +e\n");
        // One hierarchy is enough to find every process: all joined all.
        if let Some(h) = self.hierarchies.first() {
            let root = join(&h.mount, &self.cgroup);
            let _ = writeln!(
                out,
                "for _ in $(seq 100); do\n  \
                   pids=$(find {} -name cgroup.procs -exec cat {{}} + 2>/dev/null)\n  \
                   [ -z \"$pids\" ] && break\n  \
                   kill -9 $pids 2>/dev/null\n  \
                   sleep 0.1\n\
                 done",
                root.display()
            );
        }
        let _ = writeln!(
            out,
            "pids=$(ip netns pids {} 2>/dev/null); [ -n \"$pids\" ] && kill -9 $pids",
            s.netns()
        );
        for mount in self
            .hierarchies
            .iter()
            .map(|h| &h.mount)
            .chain(&self.unified)
        {
            let root = join(mount, &self.cgroup);
            let _ = writeln!(
                out,
                "for _ in 1 2 3 4 5; do [ -d {r} ] || break; find {r} -depth -type d -exec rmdir {{}} + 2>/dev/null; [ -d {r} ] && sleep 0.2; done",
                r = root.display()
            );
        }
        for d in &self.created_ancestors {
            let _ = writeln!(out, "rmdir {} 2>/dev/null", d.display());
        }
        let _ = writeln!(out, "ip netns delete {} 2>/dev/null", s.netns());
        let _ = writeln!(out, "ip link delete {} 2>/dev/null", s.host_link());
        // The nodes' mounts lived in their own mount namespace, gone with
        // its last process; anything that still shows under the state
        // directory in the host's is unmounted here.
        let _ = writeln!(
            out,
            "findmnt -rn -o TARGET | grep -F '{}' | sort -r | xargs -r -n1 umount -l 2>/dev/null",
            state_dir.display()
        );
        let _ = writeln!(out, "rm -f {}", pending.display());
        out += "exit 0\n";
        out
    }
}

const CPUSET_FN: &str = r#"fill_cpuset() {
  local d=$1 p
  p=$(dirname "$d")
  [ -s "$d/cpuset.cpus" ] && [ -n "$(tr -d '\n' <"$d/cpuset.cpus")" ] || cat "$p/cpuset.cpus" >"$d/cpuset.cpus"
  [ -s "$d/cpuset.mems" ] && [ -n "$(tr -d '\n' <"$d/cpuset.mems")" ] || cat "$p/cpuset.mems" >"$d/cpuset.mems"
}
"#;

/// `mount` + an absolute cgroup path.
fn join(mount: &Path, cgroup: &str) -> PathBuf {
    mount.join(cgroup.trim_start_matches('/'))
}

/// Runs a generated script, reporting the command that failed.
pub fn run_script(what: &str, path: &Path, body: &str) -> Result<(), Error> {
    std::fs::write(path, body).map_err(|e| Error::io(path, e))?;
    let out = Command::new("bash")
        .arg("-x")
        .arg(path)
        .output()
        .map_err(|e| Error::io(path, e))?;
    if out.status.success() {
        return Ok(());
    }
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().rev().take(6).collect();
    Err(Error::Setup {
        what: what.into(),
        detail: format!(
            "{} (script {}):\n{}",
            out.status,
            path.display(),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> SlotPlan {
        SlotPlan::new(
            Slot(1),
            2,
            vec![
                Hierarchy {
                    mount: "/sys/fs/cgroup/pids".into(),
                    controllers: vec!["pids".into()],
                },
                Hierarchy {
                    mount: "/sys/fs/cgroup/cpuset".into(),
                    controllers: vec!["cpuset".into()],
                },
            ],
            vec!["/sys/fs/cgroup/unified".into()],
            "/sb",
        )
    }

    #[test]
    fn setup_links_the_namespace_and_fences_egress() {
        let s = plan().setup_script();
        assert!(s.contains("ip netns add kuberay-rs-1\n"), "{s}");
        assert!(
            s.contains("ip route add 198.18.32.0/19 via 198.18.255.6 dev krs1h"),
            "{s}"
        );
        assert!(
            s.contains("ip route add 198.19.64.0/18 via 198.18.255.6 dev krs1h"),
            "{s}"
        );
        assert!(
            s.contains("ip netns exec kuberay-rs-1 ip addr add 198.18.33.1/24 dev krb1"),
            "{s}"
        );
        assert!(s.contains(&format!("-A {EGRESS_CHAIN} -d {LOCAL_RANGE} -j RETURN")));
        assert!(s.contains(&format!("-I FORWARD 1 -j {EGRESS_CHAIN}")));
        assert!(
            s.contains("mkdir -p /sys/fs/cgroup/pids/sb/kuberay-rs-1/node-1"),
            "{s}"
        );
        assert!(
            s.contains("fill_cpuset /sys/fs/cgroup/cpuset/sb/kuberay-rs-1/node-0"),
            "{s}"
        );
        assert!(!s.contains("fill_cpuset /sys/fs/cgroup/pids"), "{s}");
        // The created ancestor is filled before the slot's directory.
        let sb = s.find("fill_cpuset /sys/fs/cgroup/cpuset/sb\n").unwrap();
        let slot = s
            .find("fill_cpuset /sys/fs/cgroup/cpuset/sb/kuberay-rs-1\n")
            .unwrap();
        assert!(sb < slot, "{s}");
    }

    #[test]
    fn cleanup_kills_the_tree_then_removes_everything() {
        let s = plan().cleanup_script(Path::new("/state"), Path::new("/cache/slot-1.cleanup.sh"));
        let kill = s.find("kill -9").unwrap();
        let rmdir = s.find("rmdir").unwrap();
        let netns = s.find("ip netns delete kuberay-rs-1").unwrap();
        assert!(kill < rmdir && rmdir < netns, "{s}");
        assert!(s.contains("find /sys/fs/cgroup/pids/sb/kuberay-rs-1 -name cgroup.procs"));
        assert!(s.trim_end().ends_with("exit 0"));
        // /sys/fs/cgroup/pids/sb does not exist on the test machine.
        assert!(s.contains("rmdir /sys/fs/cgroup/pids/sb 2>"), "{s}");
        assert!(
            s.contains("[ -d /sys/fs/cgroup/unified/sb/kuberay-rs-1 ] || break"),
            "{s}"
        );
        assert_eq!(
            plan().procs_files()[1],
            PathBuf::from("/sys/fs/cgroup/cpuset/sb/kuberay-rs-1/cgroup.procs")
        );
    }
}
