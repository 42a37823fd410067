//! The configuration files of a real node's components, as pure functions
//! of where things live and which addresses they use: containerd, the CNI
//! network, the kubelet, kube-proxy and CoreDNS.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use crate::addresses::Slot;

/// The reference of the pod sandbox image every node's containerd uses.
pub const PAUSE_IMAGE: &str = "kuberay-rs/pause:1";

/// Where one node's files live.
#[derive(Debug, Clone)]
pub struct NodePaths {
    /// Per run: sockets, runtime state, kubelet root, logs.
    pub state: PathBuf,
    /// Kept between runs (in the cache): containerd's content and
    /// snapshots, so images are imported once, not at every start.
    pub containerd_root: PathBuf,
}

impl NodePaths {
    pub fn containerd_socket(&self) -> PathBuf {
        self.state.join("containerd.sock")
    }
    pub fn containerd_config(&self) -> PathBuf {
        self.state.join("containerd.toml")
    }
    pub fn containerd_state(&self) -> PathBuf {
        self.state.join("containerd")
    }
    pub fn cni_conf_dir(&self) -> PathBuf {
        self.state.join("cni")
    }
    pub fn cni_ipam_dir(&self) -> PathBuf {
        self.state.join("ipam")
    }
    pub fn kubelet_root(&self) -> PathBuf {
        self.state.join("kubelet")
    }
    pub fn kubelet_config(&self) -> PathBuf {
        self.state.join("kubelet.yaml")
    }
    pub fn kubelet_kubeconfig(&self) -> PathBuf {
        self.state.join("kubelet.kubeconfig")
    }
    pub fn pod_logs(&self) -> PathBuf {
        self.state.join("pod-logs")
    }
    pub fn resolv_conf(&self) -> PathBuf {
        self.state.join("resolv.conf")
    }
}

/// containerd 1.6 (Debian's package), configured for one node: its own
/// root, state and socket, the CRI plugin with our pause image and CNI
/// network. `restrict_oom_score_adj`: this VM refuses to lower
/// `oom_score_adj`, which otherwise fails every sandbox.
pub fn containerd_config(paths: &NodePaths, cni_bin: &Path) -> String {
    let p = |p: PathBuf| p.display().to_string();
    format!(
        r#"version = 2
root = "{root}"
state = "{state}"
disabled_plugins = [
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.internal.v1.tracing",
  "io.containerd.tracing.processor.v1.otlp",
]

[grpc]
  address = "{socket}"

[ttrpc]
  address = "{socket}.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{cni_conf}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{opt}"
"#,
        root = p(paths.containerd_root.clone()),
        state = p(paths.containerd_state()),
        socket = p(paths.containerd_socket()),
        pause = PAUSE_IMAGE,
        cni_bin = cni_bin.display(),
        cni_conf = p(paths.cni_conf_dir()),
        opt = p(paths.state.join("opt")),
    )
}

/// The pod network of node `n`: a bridge whose gateway is the node's IP,
/// addresses from the node's /24, and `portmap` for `hostPort`s. Pods get a
/// default route (Ray finds its own address by routing towards a public
/// one); what would leave the machine is rejected by the slot namespace's
/// firewall (see `network`).
pub fn cni_conflist(slot: Slot, n: u8, paths: &NodePaths) -> String {
    serde_json::to_string_pretty(&serde_json::json!({
        "cniVersion": "0.4.0",
        "name": format!("kuberay-rs-{}-node-{n}", slot.index()),
        "plugins": [
            {
                "type": "bridge",
                "bridge": slot.bridge(n),
                "isGateway": true,
                "hairpinMode": true,
                "ipam": {
                    "type": "host-local",
                    "dataDir": paths.cni_ipam_dir(),
                    "ranges": [[{
                        "subnet": slot.node_pod_cidr(n),
                        "gateway": slot.node_ip(n).to_string(),
                    }]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": true}},
        ],
    }))
    .expect("json")
}

/// What a kubelet needs to know beyond its paths.
#[derive(Debug, Clone)]
pub struct KubeletSettings<'a> {
    pub node_ip: Ipv4Addr,
    pub dns_ip: Ipv4Addr,
    pub cgroup_root: &'a str,
    pub ca: &'a Path,
    pub serving_cert: &'a Path,
    pub serving_key: &'a Path,
}

/// The KubeletConfiguration of one node. This machine has cgroup v1 only:
/// kubelet 1.37 still runs there with `failCgroupV1: false` and the
/// cgroupfs driver. Image garbage collection is off (the images were
/// imported, there is no registry to pull them back from), node-pressure
/// eviction is off, and every listener binds the node's own IP so that
/// several kubelets share one network namespace.
///
/// Why no eviction: every node of a slot, and every slot, measures the same
/// host. The memory signal counts the host's page cache, which a fresh CI
/// machine fills with the Go and Cargo builds, and the disk signals count
/// everything else on the host's disk. A CI run saw the operator's pod
/// evicted a second after it started and its replacement left unschedulable
/// (all nodes tainted at once), although nothing in the test used much. The
/// kernel's OOM killer still guards the host; "0%" is the kubelet's spelling
/// of "no threshold".
pub fn kubelet_config(paths: &NodePaths, s: &KubeletSettings) -> String {
    let config = serde_json::json!({
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": s.node_ip.to_string(),
        "port": 10250,
        "readOnlyPort": 0,
        "healthzBindAddress": s.node_ip.to_string(),
        "healthzPort": 10248,
        "authentication": {
            "anonymous": {"enabled": false},
            "webhook": {"enabled": true},
            "x509": {"clientCAFile": s.ca},
        },
        "authorization": {"mode": "Webhook"},
        "tlsCertFile": s.serving_cert,
        "tlsPrivateKeyFile": s.serving_key,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": s.cgroup_root,
        "cgroupsPerQOS": true,
        "enforceNodeAllocatable": ["pods"],
        "failCgroupV1": false,
        "failSwapOn": false,
        "clusterDomain": "cluster.local",
        "clusterDNS": [s.dns_ip.to_string()],
        "resolvConf": paths.resolv_conf(),
        "containerRuntimeEndpoint": format!("unix://{}", paths.containerd_socket().display()),
        "imageServiceEndpoint": format!("unix://{}", paths.containerd_socket().display()),
        "podLogsDir": paths.pod_logs(),
        "volumePluginDir": paths.state.join("volume-plugins"),
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        "evictionHard": {
            "memory.available": "0%",
            "nodefs.available": "0%",
            "nodefs.inodesFree": "0%",
            "imagefs.available": "0%",
            "imagefs.inodesFree": "0%",
        },
        "serializeImagePulls": false,
        "registerNode": true,
        "rotateCertificates": false,
        "serverTLSBootstrap": false,
        "protectKernelDefaults": false,
        "makeIPTablesUtilChains": false,
        "maxPods": 110,
        "shutdownGracePeriod": "0s",
        "containerLogMaxSize": "10Mi",
        "containerLogMaxFiles": 3,
    });
    serde_yaml::to_string(&config).expect("yaml")
}

/// kube-proxy in iptables mode for the slot's namespace, which all nodes
/// share: one kube-proxy serves them all. Conntrack limits are left to the
/// host (`maxPerCore: 0`): they are global, not per namespace.
pub fn kube_proxy_config(slot: Slot, kubeconfig: &Path, node_name: &str) -> String {
    let config = serde_json::json!({
        "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
        "kind": "KubeProxyConfiguration",
        "clientConnection": {"kubeconfig": kubeconfig},
        "mode": "iptables",
        "clusterCIDR": slot.pod_cidr(),
        "hostnameOverride": node_name,
        "bindAddress": "0.0.0.0",
        "healthzBindAddress": format!("{}:10256", slot.namespace_ip()),
        "metricsBindAddress": format!("{}:10249", slot.namespace_ip()),
        "conntrack": {"maxPerCore": 0, "min": 0},
        "iptables": {"localhostNodePorts": false},
    });
    serde_yaml::to_string(&config).expect("yaml")
}

/// Port of CoreDNS's readiness endpoint on the namespace's link address.
pub const COREDNS_READY_PORT: u16 = 8181;

/// CoreDNS: `cluster.local` (and reverse lookups of pods and services)
/// from the API server, NXDOMAIN for every other name, since nothing is
/// forwarded out of the machine.
pub fn corefile(slot: Slot, kubeconfig: &Path) -> String {
    format!(
        r#".:53 {{
    errors
    health {ns}:8080
    ready {ns}:{ready}
    kubernetes cluster.local in-addr.arpa ip6.arpa {{
        kubeconfig {kubeconfig}
        pods insecure
        fallthrough in-addr.arpa ip6.arpa
        ttl 30
    }}
    cache 30
    template ANY ANY {{
        rcode NXDOMAIN
    }}
}}
"#,
        ns = slot.namespace_ip(),
        ready = COREDNS_READY_PORT,
        kubeconfig = kubeconfig.display(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn paths() -> NodePaths {
        NodePaths {
            state: "/state/node-1".into(),
            containerd_root: "/cache/node-1".into(),
        }
    }

    #[test]
    fn containerd_keeps_its_root_and_uses_our_pause_image() {
        let c = containerd_config(&paths(), Path::new("/usr/lib/cni"));
        assert!(c.contains(r#"root = "/cache/node-1""#), "{c}");
        assert!(
            c.contains(r#"address = "/state/node-1/containerd.sock""#),
            "{c}"
        );
        assert!(c.contains("restrict_oom_score_adj = true"));
        assert!(c.contains(&format!(r#"sandbox_image = "{PAUSE_IMAGE}""#)));
    }

    #[test]
    fn cni_network_of_a_node_uses_its_bridge_and_range() {
        let c: serde_json::Value =
            serde_json::from_str(&cni_conflist(Slot(1), 2, &paths())).unwrap();
        let bridge = &c["plugins"][0];
        assert_eq!(bridge["bridge"], "krb2");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["subnet"], "198.18.34.0/24");
        assert_eq!(bridge["ipam"]["ranges"][0][0]["gateway"], "198.18.34.1");
    }

    #[test]
    fn kubelet_binds_its_node_ip_and_runs_on_cgroup_v1() {
        let s = KubeletSettings {
            node_ip: Ipv4Addr::new(198, 18, 1, 1),
            dns_ip: Ipv4Addr::new(198, 19, 0, 10),
            cgroup_root: "/kuberay-rs-0/node-1",
            ca: Path::new("/pki/ca.crt"),
            serving_cert: Path::new("/pki/k.crt"),
            serving_key: Path::new("/pki/k.key"),
        };
        let y: serde_json::Value = serde_yaml::from_str(&kubelet_config(&paths(), &s)).unwrap();
        assert_eq!(y["address"], "198.18.1.1");
        assert_eq!(y["healthzBindAddress"], "198.18.1.1");
        assert_eq!(y["failCgroupV1"], false);
        assert_eq!(y["cgroupDriver"], "cgroupfs");
        assert_eq!(y["clusterDNS"][0], "198.19.0.10");
        assert_eq!(
            y["containerRuntimeEndpoint"],
            "unix:///state/node-1/containerd.sock"
        );
        // The kubelet fills in its defaults (10% disk, 100Mi memory) only
        // when the map is absent, and reads "0%" as "no threshold": every
        // signal it knows on Linux must be listed, and off.
        let eviction = y["evictionHard"].as_object().expect("evictionHard");
        for signal in [
            "memory.available",
            "nodefs.available",
            "nodefs.inodesFree",
            "imagefs.available",
            "imagefs.inodesFree",
        ] {
            assert_eq!(eviction[signal], "0%", "{signal}");
        }
        assert_eq!(y.get("mergeDefaultEvictionSettings"), None);
    }

    #[test]
    fn coredns_answers_cluster_names_and_forwards_nothing() {
        let c = corefile(Slot(0), Path::new("/k/coredns.kubeconfig"));
        assert!(c.contains("kubernetes cluster.local"));
        assert!(c.contains("kubeconfig /k/coredns.kubeconfig"));
        assert!(!c.contains("forward"));
        assert!(c.contains("rcode NXDOMAIN"));
    }
}
