//! Real nodes: kubelets that run pods for real with containerd, runc and
//! the CNI bridge, kube-proxy for services and CoreDNS for `cluster.local`,
//! all on this machine beside the control plane.
//!
//! Layout. A *slot* (see [`slot`]) gives the nodes a network namespace of
//! their own, linked to the host by a veth pair: the API server listens on
//! the host's end, so the host, the node components and the pods all reach
//! it; the host routes the slot's pod and service ranges into the
//! namespace, so tests reach pods and ClusterIPs directly. Inside, each node
//! has a bridge whose gateway is its IP, and a firewall that rejects
//! anything leaving the benchmarking range. The node components also share
//! one private mount namespace (held open by a `sleep` process), so every
//! mount they make (overlay roots, volumes, network namespace handles)
//! disappears with them, and one cgroup tree, so that stopping is "kill the
//! tree" (see [`cgroups`]).
//!
//! Each node has its own containerd (a kubelet kills containers it did not
//! start, so two kubelets cannot share one), whose root is kept in the
//! cache: images are imported once, not at every start.

pub mod cgroups;
pub mod configs;
pub mod images;
pub mod slot;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::Error;
use crate::addresses::{MAX_REAL_NODES, Slot};
use crate::binaries::{Binaries, cache_dir};
use crate::image::{self, ImageSpec};
use crate::pki::Pki;
use crate::process::Processes;
use configs::{KubeletSettings, NodePaths};
use slot::{SlotLease, SlotPlan};

/// How many real nodes, and which images besides pause and Ray.
#[derive(Debug, Clone)]
pub struct RealNodeOptions {
    pub count: u8,
    pub extra_images: Vec<ImageSpec>,
}

impl Default for RealNodeOptions {
    fn default() -> Self {
        Self {
            count: 3,
            extra_images: Vec::new(),
        }
    }
}

/// Programs from the machine's packages (`hack/install-node-deps.sh`).
#[derive(Debug, Clone)]
pub struct SystemTools {
    pub containerd: PathBuf,
    pub ctr: PathBuf,
    pub cni_bin: PathBuf,
}

impl SystemTools {
    pub fn locate() -> Result<Self, Error> {
        let find = |name: &str| -> Option<PathBuf> {
            ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/bin", "/sbin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file())
        };
        let mut missing = Vec::new();
        for tool in [
            "containerd",
            "ctr",
            "runc",
            "iptables",
            "ip",
            "nsenter",
            "unshare",
            "findmnt",
            "tar",
            "ldd",
            "conntrack",
        ] {
            if find(tool).is_none() {
                missing.push(tool);
            }
        }
        let cni_bin = ["/usr/lib/cni", "/opt/cni/bin"]
            .iter()
            .map(PathBuf::from)
            .find(|d| d.join("bridge").is_file() && d.join("host-local").is_file());
        if cni_bin.is_none() {
            missing.push("CNI plugins (bridge, host-local, portmap)");
        }
        if !missing.is_empty() {
            return Err(Error::Prerequisite(format!(
                "missing {}; install them with `hack/install-node-deps.sh` (Debian packages containerd, runc, \
                 containernetworking-plugins, iptables, conntrack)",
                missing.join(", ")
            )));
        }
        Ok(Self {
            containerd: find("containerd").expect("checked"),
            ctr: find("ctr").expect("checked"),
            cni_bin: cni_bin.expect("checked"),
        })
    }
}

/// One real node.
#[derive(Debug, Clone)]
pub struct RealNode {
    pub name: String,
    pub ip: Ipv4Addr,
    pub paths: NodePaths,
}

/// The real nodes of one control plane, from their slot's reservation to
/// the running kubelets.
pub struct RealNodes {
    lease: SlotLease,
    plan: SlotPlan,
    dir: PathBuf,
    pub nodes: Vec<RealNode>,
    tools: SystemTools,
    cleanup: PathBuf,
}

/// The containerd store of a slot's node: kept between runs (in the cache)
/// so that images are imported once.
fn node_store(slot: Slot, node: &str) -> PathBuf {
    cache_dir()
        .join("nodes")
        .join(format!("slot-{}-{node}", slot.index()))
}

/// `bash -c` body that joins the cgroups named before `--`, then runs the
/// rest: how every node component enters the slot's cgroup tree.
const JOIN_CGROUPS: &str =
    r#"while [ "$1" != -- ]; do echo $$ >"$1" || exit 1; shift; done; shift; exec "$@""#;

impl RealNodes {
    /// Reserves a slot and sets up its namespace, link, bridges, firewall
    /// and cgroups. The cleanup script exists before anything is changed,
    /// so a failure half-way is undone like a normal stop.
    pub fn prepare(opts: &RealNodeOptions, dir: &Path) -> Result<Self, Error> {
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::Prerequisite(
                "they need root (network namespaces, cgroups, containerd); run as root".into(),
            ));
        }
        if opts.count == 0 || opts.count > MAX_REAL_NODES {
            return Err(Error::Prerequisite(format!(
                "{} real nodes asked for; between 1 and {MAX_REAL_NODES} can run",
                opts.count
            )));
        }
        let tools = SystemTools::locate()?;
        let hierarchies = cgroups::hierarchies()?;
        cgroups::check_required(&hierarchies)?;
        let base = cgroups::own_memory_path()?;
        let lease = slot::reserve(&cache_dir())?;
        if lease.recovered {
            // A store whose containerd was killed mid-write (or whose
            // containers belonged to a control plane that no longer
            // exists) is started afresh; its images are imported again.
            for n in 0..MAX_REAL_NODES {
                let store = node_store(lease.slot, &format!("node-{n}"));
                if store.exists() {
                    eprintln!("kuberay-testenv: removing {}", store.display());
                    if let Err(e) = std::fs::remove_dir_all(&store) {
                        eprintln!(
                            "kuberay-testenv: {}: {e}; using it as it is",
                            store.display()
                        );
                    }
                }
            }
        }
        let plan = SlotPlan::new(
            lease.slot,
            opts.count,
            hierarchies,
            cgroups::unified_mounts()?,
            &base,
        );
        let dir = dir.join("nodes");
        std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        let cleanup = dir.join("slot-cleanup.sh");
        let body = plan.cleanup_script(&dir, &lease.pending_cleanup);
        for p in [&cleanup, &lease.pending_cleanup] {
            std::fs::write(p, &body).map_err(|e| Error::io(p, e))?;
        }
        let nodes = (0..opts.count)
            .map(|n| {
                let name = format!("node-{n}");
                RealNode {
                    ip: lease.slot.node_ip(n),
                    paths: NodePaths {
                        state: dir.join(&name),
                        containerd_root: node_store(lease.slot, &name),
                    },
                    name,
                }
            })
            .collect();
        let me = Self {
            lease,
            plan,
            dir,
            nodes,
            tools,
            cleanup,
        };
        if let Err(e) = slot::run_script(
            "network and cgroups",
            &me.dir.join("slot-setup.sh"),
            &me.plan.setup_script(),
        ) {
            me.run_cleanup();
            return Err(e);
        }
        Ok(me)
    }

    pub fn slot(&self) -> Slot {
        self.lease.slot
    }

    /// The script that stops every node process and undoes the setup.
    pub fn cleanup_script(&self) -> &Path {
        &self.cleanup
    }

    /// A handle that keeps the slot reserved while it is open.
    pub fn hold(&self) -> Result<std::fs::File, Error> {
        self.lease.hold()
    }

    pub fn run_cleanup(&self) {
        let _ = Command::new("bash").arg(&self.cleanup).status();
    }

    /// The slot's cgroup directories, in every hierarchy (v2 included).
    pub fn cgroup_dirs(&self) -> Vec<PathBuf> {
        self.plan.slot_dirs()
    }

    /// Names and IPs, for the nodes' certificates.
    pub fn identities(&self) -> Vec<(String, Ipv4Addr)> {
        self.nodes.iter().map(|n| (n.name.clone(), n.ip)).collect()
    }

    /// `bash` arguments that run `program args` inside the slot's cgroups
    /// and namespaces (`holder` is the PID holding the mount namespace).
    fn enter(&self, holder: Option<u32>, program: &Path, args: &[String]) -> Vec<String> {
        let mut v = vec!["-c".to_string(), JOIN_CGROUPS.into(), "join".into()];
        v.extend(
            self.plan
                .procs_files()
                .iter()
                .map(|p| p.display().to_string()),
        );
        v.push("--".into());
        match holder {
            Some(pid) => v.extend([
                "nsenter".into(),
                format!("--target={pid}"),
                "--mount".into(),
                "--net".into(),
                "--".into(),
            ]),
            None => v.extend([
                "nsenter".into(),
                format!("--net=/run/netns/{}", self.slot().netns()),
                "--".into(),
                "unshare".into(),
                "--mount".into(),
                "--propagation".into(),
                "private".into(),
                "--".into(),
            ]),
        }
        v.push(program.display().to_string());
        v.extend(args.iter().cloned());
        v
    }

    /// Starts everything up to Ready nodes: the namespace holder, one
    /// containerd per node with the images imported, CoreDNS, kube-proxy
    /// and the kubelets. `api` creates the objects CoreDNS needs.
    pub fn start(
        &self,
        procs: &mut Processes,
        ctx: &StartContext,
        images: &[ImageSpec],
        deadline: Instant,
    ) -> Result<(), Error> {
        let bash = Path::new("/bin/bash");
        let remaining = || deadline.saturating_duration_since(Instant::now());
        procs.spawn(
            "node-namespaces",
            bash,
            &self.enter(None, Path::new("sleep"), &["infinity".into()]),
        )?;
        let holder = procs.pid("node-namespaces").expect("just spawned");
        let own_mnt = std::fs::read_link("/proc/self/ns/mnt").ok();
        procs.wait_for(
            "the nodes' mount namespace",
            "node-namespaces",
            remaining(),
            || {
                std::fs::read_link(format!("/proc/{holder}/ns/mnt")).ok() != own_mnt
                    && std::fs::read_link(format!("/proc/{holder}/exe"))
                        .is_ok_and(|p| p.ends_with("sleep"))
            },
        )?;

        for node in &self.nodes {
            let p = &node.paths;
            for d in [
                &p.state,
                &p.containerd_root,
                &p.cni_conf_dir(),
                &p.pod_logs(),
            ] {
                std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
            }
            write(
                &p.containerd_config(),
                &configs::containerd_config(p, &self.tools.cni_bin),
            )?;
            let n = self.index_of(node);
            write(
                &p.cni_conf_dir().join("10-kuberay-rs.conflist"),
                &configs::cni_conflist(self.slot(), n, p),
            )?;
            procs.spawn(
                &format!("containerd-{}", node.name),
                bash,
                &self.enter(
                    Some(holder),
                    &self.tools.containerd,
                    &[
                        "--config".into(),
                        p.containerd_config().display().to_string(),
                    ],
                ),
            )?;
        }
        for node in &self.nodes {
            let name = format!("containerd-{}", node.name);
            let sock = node.paths.containerd_socket();
            procs.wait_for(&format!("{name} to answer"), &name, remaining(), || {
                sock.exists() && self.ctr(&sock, &["version"]).is_ok()
            })?;
        }
        self.import_all(images)?;

        (ctx.prepare_dns)(self.slot())?;
        write(
            &self.dir.join("Corefile"),
            &configs::corefile(self.slot(), &ctx.coredns_kubeconfig),
        )?;
        procs.spawn(
            "coredns",
            bash,
            &self.enter(
                Some(holder),
                &ctx.binaries.coredns,
                &[
                    "-conf".into(),
                    self.dir.join("Corefile").display().to_string(),
                ],
            ),
        )?;
        let kp_config = self.dir.join("kube-proxy.yaml");
        write(
            &kp_config,
            &configs::kube_proxy_config(
                self.slot(),
                &ctx.kube_proxy_kubeconfig,
                &self.nodes[0].name,
            ),
        )?;
        procs.spawn(
            "kube-proxy",
            bash,
            &self.enter(
                Some(holder),
                &ctx.binaries.kube_proxy,
                &[
                    "--config".into(),
                    kp_config.display().to_string(),
                    "--v=1".into(),
                ],
            ),
        )?;

        let plugin_socket = device_plugin_socket(holder);
        for (node, certs) in self.nodes.iter().zip(&ctx.pki.nodes) {
            let p = &node.paths;
            write(
                &p.resolv_conf(),
                &format!("nameserver {}\n", self.slot().dns_service_ip()),
            )?;
            let cgroup_root = self.plan.node_cgroup(self.index_of(node));
            write(
                &p.kubelet_config(),
                &configs::kubelet_config(
                    p,
                    &KubeletSettings {
                        node_ip: node.ip,
                        dns_ip: self.slot().dns_service_ip(),
                        cgroup_root: &cgroup_root,
                        ca: &ctx.pki.ca_cert,
                        serving_cert: &certs.serving.cert,
                        serving_key: &certs.serving.key,
                    },
                ),
            )?;
            (ctx.write_kubeconfig)(
                &p.kubelet_kubeconfig(),
                &certs.client,
                &format!("system:node:{}", node.name),
            )?;
            let kubelet = format!("kubelet-{}", node.name);
            let before = socket_identity(&plugin_socket);
            procs.spawn(
                &kubelet,
                bash,
                &self.enter(
                    Some(holder),
                    &ctx.binaries.kubelet,
                    &[
                        format!("--config={}", p.kubelet_config().display()),
                        format!("--kubeconfig={}", p.kubelet_kubeconfig().display()),
                        format!("--root-dir={}", p.kubelet_root().display()),
                        format!("--hostname-override={}", node.name),
                        format!("--node-ip={}", node.ip),
                        "--v=1".into(),
                    ],
                ),
            )?;
            // Every kubelet serves device-plugin registration on one fixed
            // path (not under --root-dir): it empties the directory, then
            // binds. Two kubelets starting together can both empty it and
            // the second bind fails ("address already in use"), which ends
            // that kubelet. So the next one starts once this one's socket
            // is there.
            procs.wait_for(
                &format!("kubelet {} to serve device-plugin registration", node.name),
                &kubelet,
                remaining(),
                || socket_identity(&plugin_socket).is_some_and(|i| Some(i) != before),
            )?;
        }
        let dns = self.slot().namespace_ip().to_string();
        procs.wait_for("CoreDNS to be ready", "coredns", remaining(), || {
            crate::ray::http_get_ok(&dns, configs::COREDNS_READY_PORT, "/ready")
        })?;
        Ok(())
    }

    fn index_of(&self, node: &RealNode) -> u8 {
        self.nodes
            .iter()
            .position(|n| n.name == node.name)
            .expect("own node") as u8
    }

    fn ctr(&self, socket: &Path, args: &[&str]) -> Result<String, Error> {
        let out = Command::new(&self.tools.ctr)
            .arg("--address")
            .arg(socket)
            .args(["--namespace", "k8s.io"])
            .args(args)
            .output()
            .map_err(|e| Error::io(&self.tools.ctr, e))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).into_owned())
        } else {
            Err(Error::Setup {
                what: format!("ctr {}", args.join(" ")),
                detail: String::from_utf8_lossy(&out.stderr).trim().to_string(),
            })
        }
    }

    /// Packs each image (once per content) and imports it into every node
    /// that lacks it, nodes in parallel.
    pub fn import_all(&self, images: &[ImageSpec]) -> Result<(), Error> {
        let archives_dir = cache_dir().join("images").join("archives");
        let packed: Vec<(PathBuf, &ImageSpec)> = images
            .iter()
            .map(|spec| Ok((spec.pack(&archives_dir, true)?, spec)))
            .collect::<Result<_, Error>>()?;
        std::thread::scope(|s| {
            let handles: Vec<_> = self
                .nodes
                .iter()
                .map(|node| {
                    let packed = &packed;
                    s.spawn(move || -> Result<(), Error> {
                        for (archive, spec) in packed {
                            self.import_one(node, archive, spec)?;
                        }
                        Ok(())
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("import thread panicked"))
                .collect::<Result<Vec<()>, Error>>()
        })?;
        Ok(())
    }

    fn import_one(&self, node: &RealNode, archive: &Path, spec: &ImageSpec) -> Result<(), Error> {
        let socket = node.paths.containerd_socket();
        let marker = node
            .paths
            .containerd_root
            .join("kuberay-rs-imported")
            .join(archive.file_name().expect("archive file"));
        if marker.exists() {
            let stored = self.ctr(&socket, &["images", "ls", "--quiet"])?;
            if spec
                .names
                .iter()
                .all(|n| stored.lines().any(|s| image::stored_as(s, n)))
            {
                return Ok(());
            }
        }
        image::import(&self.tools.ctr, &socket, archive, &spec.names).map_err(|e| {
            Error::Setup {
                what: format!("image {} on {}", spec.names[0], node.name),
                detail: e.to_string(),
            }
        })?;
        if let Some(parent) = marker.parent() {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        std::fs::write(&marker, "").map_err(|e| Error::io(&marker, e))
    }
}

/// What [`RealNodes::start`] needs from the control plane.
pub struct StartContext<'a> {
    pub binaries: &'a Binaries,
    pub pki: &'a Pki,
    pub coredns_kubeconfig: PathBuf,
    pub kube_proxy_kubeconfig: PathBuf,
    /// Writes a kubeconfig for a client certificate (path, cert, user).
    pub write_kubeconfig: &'a dyn Fn(&Path, &crate::pki::CertFiles, &str) -> Result<(), Error>,
    /// Creates the `kube-dns` Service, its EndpointSlice and CoreDNS's role.
    pub prepare_dns: &'a dyn Fn(Slot) -> Result<(), Error>,
}

/// The kubelet's device-plugin registration socket as the nodes' mount
/// namespace (held by `holder`) sees it.
fn device_plugin_socket(holder: u32) -> PathBuf {
    PathBuf::from(format!(
        "/proc/{holder}/root/var/lib/kubelet/device-plugins/kubelet.sock"
    ))
}

/// The identity of the file at `path`, to tell a socket a kubelet just
/// bound from the one an earlier kubelet left: its inode and change time
/// (a file system may give the new socket the old one's freed inode).
fn socket_identity(path: &Path) -> Option<(u64, i64, i64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.ino(), m.ctime(), m.ctime_nsec()))
}

fn write(path: &Path, body: &str) -> Result<(), Error> {
    std::fs::write(path, body).map_err(|e| Error::io(path, e))
}

/// How long node start-up may take on a warm cache before it is reported.
pub const START_TIMEOUT: Duration = Duration::from_secs(300);
