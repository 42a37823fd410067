//! Starting and stopping a whole local control plane on loopback: etcd,
//! kube-apiserver (RBAC and ServiceAccount admission on), the controller
//! manager (garbage collection, Jobs, EndpointSlices, namespaces, service
//! accounts), the scheduler, and KWOK with a fleet of simulated nodes.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, PostParams};

use crate::Error;
use crate::binaries::{Binaries, version};
use crate::nodes::{STAGES, SimNode, default_nodes};
use crate::pki::{CertFiles, Pki, SERVICE_CIDR};
use crate::process::Processes;

/// How a control plane is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where certificates, data and logs go; a fresh temporary directory
    /// (removed on stop) when `None`.
    pub dir: Option<PathBuf>,
    /// Where to write the admin kubeconfig in addition to `<dir>/admin.kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    pub nodes: Vec<SimNode>,
    /// How long the whole start may take before it is reported as stuck.
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dir: None,
            kubeconfig: None,
            nodes: default_nodes(),
            timeout: Duration::from_secs(120),
        }
    }
}

/// A running control plane. Dropping it stops every process.
pub struct ControlPlane {
    processes: Processes,
    kubeconfig: PathBuf,
    server: String,
    dir: PathBuf,
    _tempdir: Option<tempfile::TempDir>,
    pub binaries: Binaries,
}

/// Free loopback ports, one per listener the components open.
struct Ports {
    etcd_client: u16,
    etcd_peer: u16,
    apiserver: u16,
    controller_manager: u16,
    scheduler: u16,
    kwok: u16,
}

impl Ports {
    fn pick() -> Result<Self, Error> {
        // Hold every listener until all are chosen so no two are equal; the
        // short window before a component binds is covered by the retry on
        // PortClash in `ControlPlane::start`.
        let listeners: Vec<TcpListener> = (0..6)
            .map(|_| TcpListener::bind("127.0.0.1:0"))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        let p: Vec<u16> = listeners
            .iter()
            .map(|l| l.local_addr().map(|a| a.port()))
            .collect::<Result<_, _>>()
            .map_err(|e| Error::io(Path::new("127.0.0.1:0"), e))?;
        Ok(Self {
            etcd_client: p[0],
            etcd_peer: p[1],
            apiserver: p[2],
            controller_manager: p[3],
            scheduler: p[4],
            kwok: p[5],
        })
    }
}

impl ControlPlane {
    /// Starts a control plane, building the binaries first if needed.
    /// Blocking; safe to call from inside an async runtime.
    pub fn start(opts: Options) -> Result<Self, Error> {
        let binaries = Binaries::ensure()?;
        // A thread of its own: the start-up checks drive a private runtime,
        // which must neither run nor be dropped inside a caller's runtime.
        std::thread::spawn(move || {
            let mut attempt = 0;
            loop {
                attempt += 1;
                match Self::start_once(&opts, binaries.clone()) {
                    Err(Error::PortClash { .. }) if attempt < 3 => continue,
                    other => return other,
                }
            }
        })
        .join()
        .expect("control-plane start-up thread panicked")
    }

    fn start_once(opts: &Options, binaries: Binaries) -> Result<Self, Error> {
        let (dir, tempdir) = match &opts.dir {
            Some(d) => {
                // A reused directory must not carry old etcd data or certificates.
                let _ = std::fs::remove_dir_all(d);
                std::fs::create_dir_all(d).map_err(|e| Error::io(d, e))?;
                (d.clone(), None)
            }
            None => {
                let t = tempfile::Builder::new()
                    .prefix("kuberay-controlplane-")
                    .tempdir()
                    .map_err(|e| Error::io(Path::new("/tmp"), e))?;
                (t.path().to_path_buf(), Some(t))
            }
        };
        let started = Instant::now();
        let ports = Ports::pick()?;
        let pki = Pki::generate(&dir.join("pki"))?;
        let server = format!("https://127.0.0.1:{}", ports.apiserver);
        let kubeconfig = dir.join("admin.kubeconfig");
        write_kubeconfig(&kubeconfig, &server, &pki.ca_cert, &pki.admin, "admin")?;
        let kcm_config = dir.join("controller-manager.kubeconfig");
        write_kubeconfig(
            &kcm_config,
            &server,
            &pki.ca_cert,
            &pki.controller_manager,
            "kube-controller-manager",
        )?;
        let sched_config = dir.join("scheduler.kubeconfig");
        write_kubeconfig(
            &sched_config,
            &server,
            &pki.ca_cert,
            &pki.scheduler,
            "kube-scheduler",
        )?;
        let stages = dir.join("kwok-stages.yaml");
        std::fs::write(&stages, STAGES).map_err(|e| Error::io(&stages, e))?;

        let mut procs = Processes::new(&dir.join("logs"))?;
        let p = |s: &Path| s.display().to_string();

        procs.spawn(
            "etcd",
            &binaries.etcd,
            &args(&[
                ("--name", "default".into()),
                ("--data-dir", p(&dir.join("etcd"))),
                (
                    "--listen-client-urls",
                    format!("http://127.0.0.1:{}", ports.etcd_client),
                ),
                (
                    "--advertise-client-urls",
                    format!("http://127.0.0.1:{}", ports.etcd_client),
                ),
                (
                    "--listen-peer-urls",
                    format!("http://127.0.0.1:{}", ports.etcd_peer),
                ),
                (
                    "--initial-advertise-peer-urls",
                    format!("http://127.0.0.1:{}", ports.etcd_peer),
                ),
                (
                    "--initial-cluster",
                    format!("default=http://127.0.0.1:{}", ports.etcd_peer),
                ),
                // Tests and the local environment do not need durability;
                // skipping fsync makes every write several times faster.
                ("--unsafe-no-fsync", "true".into()),
                ("--quota-backend-bytes", (4u64 << 30).to_string()),
                ("--log-level", "warn".into()),
            ]),
        )?;
        procs.wait_for("etcd to accept connections", "etcd", opts.timeout, || {
            std::net::TcpStream::connect(("127.0.0.1", ports.etcd_client)).is_ok()
        })?;

        procs.spawn(
            "kube-apiserver",
            &binaries.kube_apiserver,
            &args(&[
                (
                    "--etcd-servers",
                    format!("http://127.0.0.1:{}", ports.etcd_client),
                ),
                ("--bind-address", "127.0.0.1".into()),
                ("--advertise-address", "127.0.0.1".into()),
                ("--secure-port", ports.apiserver.to_string()),
                ("--cert-dir", p(&dir.join("apiserver-certs"))),
                ("--tls-cert-file", p(&pki.serving.cert)),
                ("--tls-private-key-file", p(&pki.serving.key)),
                ("--client-ca-file", p(&pki.ca_cert)),
                ("--service-account-key-file", p(&pki.service_account_pub)),
                (
                    "--service-account-signing-key-file",
                    p(&pki.service_account_key),
                ),
                (
                    "--service-account-issuer",
                    "https://kubernetes.default.svc.cluster.local".into(),
                ),
                ("--service-cluster-ip-range", SERVICE_CIDR.into()),
                ("--authorization-mode", "RBAC".into()),
                // OwnerReferencesPermissionEnforcement as OpenShift runs it:
                // setting owner references then needs delete on the object
                // and blockOwnerDeletion update on the owner's finalizers,
                // which the RBAC tests must prove the chart grants.
                (
                    "--enable-admission-plugins",
                    "ServiceAccount,NamespaceLifecycle,LimitRanger,ResourceQuota,ExtendedResourceToleration,OwnerReferencesPermissionEnforcement".into(),
                ),
                ("--allow-privileged", "true".into()),
                // No kubelet serves the `kubernetes` Service's endpoints and
                // loopback is not a valid endpoint address; leave them alone.
                ("--endpoint-reconciler-type", "none".into()),
                ("--max-requests-inflight", "2000".into()),
                ("--max-mutating-requests-inflight", "1000".into()),
                ("--v", "1".into()),
            ]),
        )?;
        let client = Client::new(&kubeconfig)?;
        procs.wait_for(
            "kube-apiserver to be ready (/readyz)",
            "kube-apiserver",
            opts.timeout,
            || {
                client
                    .get_text("/readyz")
                    .is_ok_and(|body| body.trim() == "ok")
            },
        )?;

        procs.spawn(
            "kube-controller-manager",
            &binaries.kube_controller_manager,
            &args(&[
                ("--kubeconfig", p(&kcm_config)),
                ("--authentication-kubeconfig", p(&kcm_config)),
                ("--authorization-kubeconfig", p(&kcm_config)),
                ("--bind-address", "127.0.0.1".into()),
                ("--secure-port", ports.controller_manager.to_string()),
                ("--cert-dir", p(&dir.join("kcm-certs"))),
                ("--leader-elect", "false".into()),
                ("--use-service-account-credentials", "true".into()),
                ("--root-ca-file", p(&pki.ca_cert)),
                ("--service-cluster-ip-range", SERVICE_CIDR.into()),
                ("--cluster-signing-cert-file", p(&pki.ca_cert)),
                ("--cluster-signing-key-file", p(&pki.ca_key)),
                // Everything a real cluster runs except pod CIDR allocation:
                // KWOK hands out pod IPs itself.
                ("--controllers", "*,-node-ipam-controller".into()),
                ("--concurrent-gc-syncs", "20".into()),
                ("--kube-api-qps", "200".into()),
                ("--kube-api-burst", "400".into()),
                ("--v", "1".into()),
            ]),
        )?;
        procs.spawn(
            "kube-scheduler",
            &binaries.kube_scheduler,
            &args(&[
                ("--kubeconfig", p(&sched_config)),
                ("--authentication-kubeconfig", p(&sched_config)),
                ("--authorization-kubeconfig", p(&sched_config)),
                ("--bind-address", "127.0.0.1".into()),
                ("--secure-port", ports.scheduler.to_string()),
                ("--cert-dir", p(&dir.join("scheduler-certs"))),
                ("--leader-elect", "false".into()),
                ("--kube-api-qps", "200".into()),
                ("--kube-api-burst", "400".into()),
                ("--v", "1".into()),
            ]),
        )?;
        procs.spawn(
            "kwok",
            &binaries.kwok,
            &args(&[
                ("--kubeconfig", p(&kubeconfig)),
                ("--config", p(&stages)),
                ("--manage-all-nodes", "false".into()),
                ("--manage-nodes-with-label-selector", "type=kwok".into()),
                ("--cidr", "10.244.0.0/16".into()),
                ("--node-ip", "10.240.0.1".into()),
                ("--node-lease-duration-seconds", "40".into()),
                ("--server-address", format!("127.0.0.1:{}", ports.kwok)),
            ]),
        )?;

        let remaining = opts.timeout.saturating_sub(started.elapsed());
        client.create_nodes(&opts.nodes)?;
        procs.wait_for("simulated nodes to become Ready", "kwok", remaining, || {
            client.ready_nodes().is_ok_and(|n| n >= opts.nodes.len())
        })?;
        // The ServiceAccount admission plugin rejects pods until the
        // namespace's `default` account exists; wait for the controller
        // manager to create it so the first test does not race it.
        procs.wait_for(
            "the `default` ServiceAccount (controller manager)",
            "kube-controller-manager",
            remaining,
            || client.has_default_service_account("default"),
        )?;

        if let Some(extra) = &opts.kubeconfig {
            if let Some(parent) = extra.parent() {
                std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
            }
            std::fs::copy(&kubeconfig, extra).map_err(|e| Error::io(extra, e))?;
        }
        procs.start_monitor();
        Ok(Self {
            processes: procs,
            kubeconfig,
            server,
            dir,
            _tempdir: tempdir,
            binaries,
        })
    }

    /// The admin kubeconfig (user in `system:masters`).
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn server(&self) -> &str {
        &self.server
    }

    /// Where logs, data and certificates live.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// An error naming the component that died, with the tail of its log.
    pub fn check(&self) -> Result<(), Error> {
        self.processes.check()
    }

    /// The PID of a component (`etcd`, `kube-apiserver`, `kwok`, ...).
    pub fn pid(&self, component: &str) -> Option<u32> {
        self.processes.pid(component)
    }

    /// The Kubernetes version the binaries were built at.
    pub fn kubernetes_version() -> &'static str {
        version("K8S_VERSION")
    }

    /// Stops every process; also what dropping does.
    pub fn stop(mut self) {
        self.processes.stop();
    }
}

fn args(pairs: &[(&str, String)]) -> Vec<String> {
    pairs.iter().map(|(k, v)| format!("{k}={v}")).collect()
}

/// Writes a kubeconfig that authenticates with a client certificate. Files
/// are referenced by absolute path, so the kubeconfig is valid exactly as long
/// as the control plane's directory exists.
pub fn write_kubeconfig(
    path: &Path,
    server: &str,
    ca: &Path,
    cert: &CertFiles,
    user: &str,
) -> Result<(), Error> {
    let abs = |p: &Path| -> Result<String, Error> {
        Ok(std::path::absolute(p)
            .map_err(|e| Error::io(p, e))?
            .display()
            .to_string())
    };
    let body = serde_json::json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "kuberay-local", "cluster": {
            "server": server,
            "certificate-authority": abs(ca)?,
        }}],
        "users": [{"name": user, "user": {
            "client-certificate": abs(&cert.cert)?,
            "client-key": abs(&cert.key)?,
        }}],
        "contexts": [{"name": "kuberay-local", "context": {"cluster": "kuberay-local", "user": user}}],
        "current-context": "kuberay-local",
    });
    let yaml = serde_yaml::to_string(&body).map_err(|e| Error::Kubeconfig(e.to_string()))?;
    std::fs::write(path, yaml).map_err(|e| Error::io(path, e))
}

/// A blocking façade over a kube client for the start-up checks. It owns a
/// small runtime, which is why `start` runs on a thread of its own.
struct Client {
    rt: tokio::runtime::Runtime,
    client: kube::Client,
}

impl Client {
    fn new(kubeconfig: &Path) -> Result<Self, Error> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io(Path::new("tokio runtime"), e))?;
        let client = rt.block_on(crate::client_from_kubeconfig(kubeconfig))?;
        Ok(Self { rt, client })
    }

    fn run<T>(&self, f: impl Future<Output = Result<T, kube::Error>>) -> Result<T, Error> {
        self.rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(10), f).await })
            .map_err(|_| Error::Timeout {
                what: "an API request".into(),
                seconds: 10,
                detail: String::new(),
            })?
            .map_err(Error::from)
    }

    fn get_text(&self, path: &str) -> Result<String, Error> {
        let req = http::Request::get(path)
            .body(Vec::new())
            .expect("valid request");
        self.run(self.client.request_text(req))
    }

    fn create_nodes(&self, nodes: &[SimNode]) -> Result<(), Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        for (i, n) in nodes.iter().enumerate() {
            let mut n = n.clone();
            // Distinct node IPs keep hostIP-based logic honest in tests.
            n.ip.get_or_insert_with(|| format!("10.240.{}.{}", i / 250, i % 250 + 1));
            match self.run(api.create(&PostParams::default(), &n.to_node())) {
                Ok(_) => {}
                Err(Error::Kube(kube::Error::Api(s))) if s.code == 409 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn ready_nodes(&self) -> Result<usize, Error> {
        let nodes = self.run(Api::<Node>::all(self.client.clone()).list(&Default::default()))?;
        Ok(nodes
            .items
            .iter()
            .filter(|n| crate::node_is_ready(n))
            .count())
    }

    fn has_default_service_account(&self, namespace: &str) -> bool {
        let api = Api::<ServiceAccount>::namespaced(self.client.clone(), namespace);
        matches!(self.run(api.get_opt("default")), Ok(Some(_)))
    }
}
