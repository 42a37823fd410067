//! Starting and stopping a whole local control plane: etcd,
//! kube-apiserver (RBAC and ServiceAccount admission on), the controller
//! manager (garbage collection, Jobs, EndpointSlices, namespaces, service
//! accounts), the scheduler, KWOK with a fleet of simulated nodes, and real
//! nodes (see [`crate::realnodes`]) when asked for.
//!
//! Without real nodes everything listens on loopback. With them, the API
//! server listens on the host's end of the link to the nodes' network
//! namespace instead, so that kubelets, pods (through the `kubernetes`
//! Service) and the host all reach it at one address.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Node, ServiceAccount};
use kube::api::{Api, Patch, PatchParams, PostParams};

use crate::Error;
use crate::addresses::{
    SIMULATED_POD_CIDR, SIMULATED_SERVICE_CIDR, Slot, simulated_kubernetes_service_ip,
    simulated_node_ip,
};
use crate::binaries::{Binaries, version};
use crate::image::ImageSpec;
use crate::nodes::{STAGES, SimNode, default_nodes};
use crate::pki::{CertFiles, Pki, PkiOptions};
use crate::process::Processes;
use crate::provisioner::HostPathProvisioner;
use crate::realnodes::{RealNodeOptions, RealNodes, StartContext};

/// The `controllerName` of the Gateway controller
/// [`ControlPlane::start_gateway_controller`] runs (Traefik's).
pub const GATEWAY_CONTROLLER_NAME: &str = "traefik.io/gateway-controller";
/// Traefik's health endpoint (`/ping`), next to its Gateway listener.
const GATEWAY_PING_PORT: u16 = 8082;

/// How a control plane is started.
#[derive(Debug, Clone)]
pub struct Options {
    /// Where certificates, data and logs go; a fresh temporary directory
    /// (removed on stop) when `None`.
    pub dir: Option<PathBuf>,
    /// Where to write the admin kubeconfig in addition to `<dir>/admin.kubeconfig`.
    pub kubeconfig: Option<PathBuf>,
    /// Simulated (KWOK) nodes. Beside real nodes they are tainted, so
    /// that only pods which tolerate `kwok.x-k8s.io/node` land there.
    pub nodes: Vec<SimNode>,
    /// Real nodes (kubelet, containerd, kube-proxy, CoreDNS); none if unset.
    pub real_nodes: Option<RealNodeOptions>,
    /// How long the whole start may take before it is reported as stuck
    /// (real nodes add their own allowance).
    pub timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            dir: None,
            kubeconfig: None,
            nodes: default_nodes(),
            real_nodes: None,
            timeout: Duration::from_secs(120),
        }
    }
}

impl Options {
    /// A control plane whose pods run for real: `count` real nodes and no
    /// simulated ones.
    pub fn real(count: u8) -> Self {
        Self {
            nodes: Vec::new(),
            real_nodes: Some(RealNodeOptions {
                count,
                ..Default::default()
            }),
            ..Self::default()
        }
    }
}

/// The taint simulated nodes carry when real nodes are there too.
pub const SIMULATED_NODE_TAINT: &str = "kwok.x-k8s.io/node";

/// A running control plane. Dropping it stops every process.
pub struct ControlPlane {
    /// First: stops polling before the API server goes away.
    _provisioner: Option<HostPathProvisioner>,
    processes: Processes,
    /// After `processes`: dropped (releasing the slot) once they are stopped.
    real: Option<RealNodes>,
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
        let real = match &opts.real_nodes {
            Some(r) => Some(RealNodes::prepare(r, &dir)?),
            None => None,
        };
        let slot = real.as_ref().map(RealNodes::slot);
        let apiserver_ip = slot.map_or(std::net::Ipv4Addr::LOCALHOST, Slot::host_ip);
        let service_cidr = slot.map_or(SIMULATED_SERVICE_CIDR.to_string(), Slot::service_cidr);
        let pki = Pki::generate(
            &dir.join("pki"),
            &PkiOptions {
                kubernetes_service_ip: slot.map_or(
                    simulated_kubernetes_service_ip(),
                    Slot::kubernetes_service_ip,
                ),
                apiserver_ips: vec![apiserver_ip],
                nodes: real.as_ref().map(RealNodes::identities).unwrap_or_default(),
            },
        )?;
        let server = format!("https://{apiserver_ip}:{}", ports.apiserver);
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
        if let Some(r) = &real {
            procs.set_cleanup(r.cleanup_script(), r.hold()?);
        }
        let p = |s: &Path| s.display().to_string();
        // With real nodes: the Node authorizer and NodeRestriction for the
        // kubelets' identities, the `kubernetes` Service's endpoint kept by
        // the API server itself, and the API server's own client
        // certificate towards kubelets (logs, exec, port-forward), which it
        // reaches at their InternalIP (it would look their names up in DNS).
        let node_flags: Vec<(&str, String)> = match &real {
            None => vec![
                ("--authorization-mode", "RBAC".into()),
                // No kubelet serves the `kubernetes` Service's endpoints
                // and loopback is not a valid endpoint address.
                ("--endpoint-reconciler-type", "none".into()),
            ],
            Some(_) => vec![
                ("--authorization-mode", "Node,RBAC".into()),
                ("--endpoint-reconciler-type", "lease".into()),
                ("--kubelet-certificate-authority", p(&pki.ca_cert)),
                (
                    "--kubelet-client-certificate",
                    p(&pki.apiserver_kubelet_client.cert),
                ),
                ("--kubelet-client-key", p(&pki.apiserver_kubelet_client.key)),
                ("--kubelet-preferred-address-types", "InternalIP".into()),
            ],
        };
        let admission = match &real {
            None => {
                "ServiceAccount,NamespaceLifecycle,LimitRanger,ResourceQuota,ExtendedResourceToleration,OwnerReferencesPermissionEnforcement"
            }
            Some(_) => {
                "ServiceAccount,NamespaceLifecycle,LimitRanger,ResourceQuota,ExtendedResourceToleration,OwnerReferencesPermissionEnforcement,NodeRestriction"
            }
        };

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
                ("--bind-address", apiserver_ip.to_string()),
                ("--advertise-address", apiserver_ip.to_string()),
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
                ("--service-cluster-ip-range", service_cidr.clone()),
                // OwnerReferencesPermissionEnforcement as OpenShift runs it:
                // setting owner references then needs delete on the object
                // and blockOwnerDeletion update on the owner's finalizers,
                // which the RBAC tests must prove the chart grants.
                ("--enable-admission-plugins", admission.into()),
                ("--allow-privileged", "true".into()),
                ("--max-requests-inflight", "2000".into()),
                ("--max-mutating-requests-inflight", "1000".into()),
                ("--v", "1".into()),
            ])
            .into_iter()
            .chain(args(&node_flags))
            .collect::<Vec<_>>(),
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
                ("--service-cluster-ip-range", service_cidr.clone()),
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
        // Without real nodes KWOK always runs (simulated nodes may be
        // added later); beside real nodes only when it has nodes to manage.
        if real.is_none() || !opts.nodes.is_empty() {
            procs.spawn(
                "kwok",
                &binaries.kwok,
                &args(&[
                    ("--kubeconfig", p(&kubeconfig)),
                    ("--config", p(&stages)),
                    ("--manage-all-nodes", "false".into()),
                    ("--manage-nodes-with-label-selector", "type=kwok".into()),
                    ("--cidr", SIMULATED_POD_CIDR.into()),
                    ("--node-ip", simulated_node_ip(0)),
                    ("--node-lease-duration-seconds", "40".into()),
                    ("--server-address", format!("127.0.0.1:{}", ports.kwok)),
                ]),
            )?;
        }

        let mut remaining = opts.timeout.saturating_sub(started.elapsed());
        client.create_nodes(&opts.nodes, real.is_some())?;
        if let Some(r) = &real {
            let deadline = Instant::now() + remaining + crate::realnodes::START_TIMEOUT;
            let images = real_node_images(opts)?;
            let write = |path: &Path, cert: &CertFiles, user: &str| {
                write_kubeconfig(path, &server, &pki.ca_cert, cert, user)
            };
            let prepare_dns = |slot: Slot| client.prepare_dns(slot);
            let ctx = StartContext {
                binaries: &binaries,
                pki: &pki,
                coredns_kubeconfig: dir.join("coredns.kubeconfig"),
                kube_proxy_kubeconfig: dir.join("kube-proxy.kubeconfig"),
                write_kubeconfig: &write,
                prepare_dns: &prepare_dns,
            };
            write(
                &ctx.coredns_kubeconfig,
                &pki.coredns,
                crate::pki::COREDNS_USER,
            )?;
            write(
                &ctx.kube_proxy_kubeconfig,
                &pki.kube_proxy,
                "system:kube-proxy",
            )?;
            r.start(&mut procs, &ctx, &images, deadline)?;
            remaining = deadline.saturating_duration_since(Instant::now());
        }
        let want = opts.nodes.len() + real.as_ref().map_or(0, |r| r.nodes.len());
        let log_of = if real.is_some() {
            "kubelet-node-0"
        } else {
            "kwok"
        };
        procs.wait_for("every node to become Ready", log_of, remaining, || {
            client.ready_nodes().is_ok_and(|n| n >= want)
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
        // Claims (the embedded GCS store's) need a default class on real
        // nodes; simulated pods mount nothing, so they go without.
        let provisioner = match &real {
            Some(_) => Some(HostPathProvisioner::start(
                &kubeconfig,
                dir.join("volumes"),
                dir.join("logs").join("hostpath-provisioner.log"),
            )?),
            None => None,
        };
        procs.start_monitor();
        Ok(Self {
            _provisioner: provisioner,
            processes: procs,
            real,
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

    /// The real nodes, if this control plane has them.
    pub fn real_nodes(&self) -> Option<&RealNodes> {
        self.real.as_ref()
    }

    /// Imports an image into every real node (packing it first); an error
    /// without real nodes.
    pub fn import_image(&self, spec: &ImageSpec) -> Result<(), Error> {
        match &self.real {
            Some(r) => r.import_all(std::slice::from_ref(spec)),
            None => Err(Error::Prerequisite(
                "this control plane has no real nodes".into(),
            )),
        }
    }

    /// Starts Traefik's Gateway API provider as one more component: the
    /// controller of [`GATEWAY_CONTROLLER_NAME`] (a GatewayClass naming it
    /// is the caller's), serving every Gateway listener on port 80 at the
    /// returned address, the host's end of the slot's link (unique per
    /// slot; the host reaches pods, so requests go straight to them).
    /// Needs real nodes. Call it once per control plane.
    pub fn start_gateway_controller(&self) -> Result<std::net::SocketAddr, Error> {
        let real = self.real.as_ref().ok_or_else(|| {
            Error::Prerequisite("a Gateway controller needs real nodes to route to".into())
        })?;
        let traefik = Binaries::locate()?.traefik;
        let ip = real.slot().host_ip();
        let ping = format!("{ip}:{GATEWAY_PING_PORT}");
        self.processes.spawn_member(
            "traefik",
            &traefik,
            &[
                format!("--entryPoints.web.address={ip}:80"),
                format!("--entryPoints.ping.address={ping}"),
                "--ping=true".into(),
                "--ping.entryPoint=ping".into(),
                "--providers.kubernetesgateway=true".into(),
                "--log.level=INFO".into(),
                // One JSON line per request, with the backend that served it
                // and how long it took: what a test that sees a failed
                // request through the Gateway needs to say why.
                "--accesslog=true".into(),
                "--accesslog.format=json".into(),
                format!(
                    "--accesslog.filepath={}",
                    self.gateway_access_log().display()
                ),
            ],
            &[("KUBECONFIG", self.kubeconfig.as_os_str())],
        )?;
        self.processes.wait_for(
            &format!("Traefik's ping endpoint on {ping}"),
            "traefik",
            Duration::from_secs(60),
            || std::net::TcpStream::connect(&ping).is_ok(),
        )?;
        Ok(std::net::SocketAddr::from((ip, 80)))
    }

    /// Where the Gateway controller started by
    /// [`Self::start_gateway_controller`] logs each request, as JSON lines.
    pub fn gateway_access_log(&self) -> PathBuf {
        self.dir.join("logs").join("traefik-access.log")
    }

    /// Stops every process; also what dropping does.
    pub fn stop(mut self) {
        self.processes.stop();
    }
}

/// The images every real node holds: pause, Ray and what the options add.
fn real_node_images(opts: &Options) -> Result<Vec<ImageSpec>, Error> {
    let mut images = crate::realnodes::images::standard_images(
        crate::samples::reference_dir_if_present().as_deref(),
    )?;
    images.extend(
        opts.real_nodes
            .iter()
            .flat_map(|r| r.extra_images.iter().cloned()),
    );
    Ok(images)
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

    fn create_nodes(&self, nodes: &[SimNode], beside_real: bool) -> Result<(), Error> {
        let api: Api<Node> = Api::all(self.client.clone());
        for (i, n) in nodes.iter().enumerate() {
            let mut n = n.clone();
            // Distinct node IPs keep hostIP-based logic honest in tests.
            n.ip.get_or_insert_with(|| simulated_node_ip(i));
            let mut node = n.to_node();
            if beside_real {
                // Pods that really need to run must not land where
                // nothing runs them.
                node.spec
                    .get_or_insert_default()
                    .taints
                    .get_or_insert_default()
                    .push(k8s_openapi::api::core::v1::Taint {
                        key: SIMULATED_NODE_TAINT.into(),
                        value: Some("fake".into()),
                        effect: "NoSchedule".into(),
                        time_added: None,
                    });
            }
            match self.run(api.create(&PostParams::default(), &node)) {
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

    /// What CoreDNS needs from the API server: read access to services,
    /// endpoint slices and namespaces for its user, and the `kube-dns`
    /// Service at the slot's DNS address, whose one endpoint is CoreDNS on
    /// the namespace's link address. Retried while `kube-system` is not
    /// created yet.
    fn prepare_dns(&self, slot: Slot) -> Result<(), Error> {
        use k8s_openapi::api::core::v1::Service;
        use k8s_openapi::api::discovery::v1::EndpointSlice;
        use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding};
        let role: ClusterRole = serde_json::from_value(serde_json::json!({
            "metadata": {"name": crate::pki::COREDNS_USER},
            "rules": [
                {"apiGroups": [""], "resources": ["services", "namespaces"], "verbs": ["list", "watch"]},
                {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": ["list", "watch"]},
            ],
        }))
        .expect("valid role");
        let binding: ClusterRoleBinding = serde_json::from_value(serde_json::json!({
            "metadata": {"name": crate::pki::COREDNS_USER},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": crate::pki::COREDNS_USER},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": crate::pki::COREDNS_USER}],
        }))
        .expect("valid binding");
        let labels = serde_json::json!({"k8s-app": "kube-dns", "kubernetes.io/name": "CoreDNS"});
        let service: Service = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "kube-dns", "namespace": "kube-system", "labels": labels},
            "spec": {
                "clusterIP": slot.dns_service_ip().to_string(),
                "ports": [
                    {"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 53},
                    {"name": "dns-tcp", "port": 53, "protocol": "TCP", "targetPort": 53},
                ],
            },
        }))
        .expect("valid service");
        let slice: EndpointSlice = serde_json::from_value(serde_json::json!({
            "metadata": {
                "name": "kube-dns-coredns",
                "namespace": "kube-system",
                "labels": {"kubernetes.io/service-name": "kube-dns", "endpointslice.kubernetes.io/managed-by": "kuberay-testenv"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": [slot.namespace_ip().to_string()], "conditions": {"ready": true}}],
            "ports": [
                {"name": "dns", "port": 53, "protocol": "UDP"},
                {"name": "dns-tcp", "port": 53, "protocol": "TCP"},
            ],
        }))
        .expect("valid endpoint slice");
        let pp = PatchParams::apply("kuberay-testenv").force();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let c = &self.client;
            let result = self
                .run(Api::<ClusterRole>::all(c.clone()).patch(
                    crate::pki::COREDNS_USER,
                    &pp,
                    &Patch::Apply(&role),
                ))
                .and_then(|_| {
                    self.run(Api::<ClusterRoleBinding>::all(c.clone()).patch(
                        crate::pki::COREDNS_USER,
                        &pp,
                        &Patch::Apply(&binding),
                    ))
                })
                .and_then(|_| {
                    self.run(Api::<Service>::namespaced(c.clone(), "kube-system").patch(
                        "kube-dns",
                        &pp,
                        &Patch::Apply(&service),
                    ))
                })
                .and_then(|_| {
                    self.run(
                        Api::<EndpointSlice>::namespaced(c.clone(), "kube-system").patch(
                            "kube-dns-coredns",
                            &pp,
                            &Patch::Apply(&slice),
                        ),
                    )
                });
            match result {
                Ok(_) => return Ok(()),
                Err(Error::Kube(kube::Error::Api(s)))
                    if s.code == 404 && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => return Err(e),
            }
        }
    }

    fn has_default_service_account(&self, namespace: &str) -> bool {
        let api = Api::<ServiceAccount>::namespaced(self.client.clone(), namespace);
        matches!(self.run(api.get_opt("default")), Ok(Some(_)))
    }
}
