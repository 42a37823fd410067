//! The cgroup v1 hierarchies of this machine and the tree a slot's
//! processes live in. Every component of the real nodes (containerd and its
//! shims, kubelets, kube-proxy, CoreDNS) joins the slot's cgroup, and the
//! kubelets put pods below it, so stopping a slot is "kill everything in
//! this tree", whatever escaped the process group (containerd's shims start
//! sessions of their own).

use std::path::{Path, PathBuf};

use crate::Error;

/// One mounted v1 hierarchy and where this process sits in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// e.g. `/sys/fs/cgroup/memory`
    pub mount: PathBuf,
    /// Controllers (or `name=...`) of the hierarchy.
    pub controllers: Vec<String>,
}

/// The v1 hierarchies, from `/proc/self/mountinfo`.
pub fn hierarchies() -> Result<Vec<Hierarchy>, Error> {
    Ok(parse_mountinfo(&mountinfo()?))
}

/// Mount points of the v2 (unified) hierarchy, if one is mounted beside
/// the v1 ones: runc mirrors its cgroups there, so cleanup must look there.
pub fn unified_mounts() -> Result<Vec<PathBuf>, Error> {
    Ok(parse_unified(&mountinfo()?))
}

fn mountinfo() -> Result<String, Error> {
    let path = Path::new("/proc/self/mountinfo");
    std::fs::read_to_string(path).map_err(|e| Error::io(path, e))
}

fn parse_unified(text: &str) -> Vec<PathBuf> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mount = left.split_whitespace().nth(4)?;
            (right.split_whitespace().next()? == "cgroup2").then(|| PathBuf::from(mount))
        })
        .collect()
}

fn parse_mountinfo(text: &str) -> Vec<Hierarchy> {
    text.lines()
        .filter_map(|line| {
            let (left, right) = line.split_once(" - ")?;
            let mut r = right.split_whitespace();
            if r.next()? != "cgroup" {
                return None;
            }
            let _source = r.next()?;
            let options = r.next()?;
            let mount = left.split_whitespace().nth(4)?;
            let known = [
                "cpu",
                "cpuacct",
                "cpuset",
                "memory",
                "devices",
                "freezer",
                "blkio",
                "pids",
                "hugetlb",
                "net_cls",
                "net_prio",
                "perf_event",
                "rdma",
                "misc",
            ];
            let controllers: Vec<String> = options
                .split(',')
                .filter(|o| known.contains(o) || o.starts_with("name="))
                .map(str::to_owned)
                .collect();
            (!controllers.is_empty()).then(|| Hierarchy {
                mount: PathBuf::from(mount),
                controllers,
            })
        })
        .collect()
}

/// This process's path in the `memory` hierarchy (or `/`): a slot's tree
/// is created below it, so whatever limits the machine puts on this
/// process (a CI sandbox's memory cgroup) also bound the pods.
pub fn own_memory_path() -> Result<String, Error> {
    let path = Path::new("/proc/self/cgroup");
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    Ok(parse_own_path(&text, "memory").unwrap_or_else(|| "/".into()))
}

fn parse_own_path(text: &str, controller: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let _id = parts.next()?;
        let controllers = parts.next()?;
        let path = parts.next()?;
        controllers
            .split(',')
            .any(|c| c == controller)
            .then(|| path.to_string())
    })
}

/// Whether the machine has what a kubelet on cgroup v1 needs.
pub fn check_required(hs: &[Hierarchy]) -> Result<(), Error> {
    let has = |c: &str| hs.iter().any(|h| h.controllers.iter().any(|x| x == c));
    let missing: Vec<&str> = ["cpu", "cpuacct", "cpuset", "memory", "pids"]
        .into_iter()
        .filter(|c| !has(c))
        .collect();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(Error::Prerequisite(format!(
            "the cgroup v1 controllers {} are not mounted under /sys/fs/cgroup; a kubelet cannot run without them",
            missing.join(", ")
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
30 24 0:26 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
32 30 0:28 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
33 30 0:29 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
34 30 0:30 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
35 30 0:31 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct
";

    #[test]
    fn finds_v1_hierarchies_and_skips_v2() {
        let hs = parse_mountinfo(MOUNTINFO);
        let mounts: Vec<_> = hs.iter().map(|h| h.mount.display().to_string()).collect();
        assert_eq!(
            mounts,
            [
                "/sys/fs/cgroup/cpu",
                "/sys/fs/cgroup/memory",
                "/sys/fs/cgroup/systemd",
                "/sys/fs/cgroup/cpu,cpuacct"
            ]
        );
        assert_eq!(hs[3].controllers, ["cpu", "cpuacct"]);
        assert_eq!(hs[2].controllers, ["name=systemd"]);
        assert_eq!(
            parse_unified(MOUNTINFO),
            [PathBuf::from("/sys/fs/cgroup/unified")]
        );
        let err = check_required(&hs).unwrap_err().to_string();
        assert!(err.contains("cpuset, pids"), "{err}");
    }

    #[test]
    fn reads_own_memory_path() {
        let text = "9:name=systemd:/\n4:memory:/sandbox/abc\n1:cpu:/\n0::/\n";
        assert_eq!(
            parse_own_path(text, "memory").as_deref(),
            Some("/sandbox/abc")
        );
        assert_eq!(parse_own_path(text, "pids"), None);
    }
}
