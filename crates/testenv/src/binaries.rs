//! Where the control-plane binaries live. They are built by
//! `hack/build-control-plane.sh` into a cache outside the repository; the
//! versions come from `hack/versions.env`, read at compile time so the script
//! and this crate can never disagree about which build to use.

use std::path::PathBuf;
use std::process::Command;

use crate::Error;

const VERSIONS_ENV: &str = include_str!("../../../hack/versions.env");

/// The pinned version of one component, e.g. `version("K8S_VERSION")`.
pub fn version(key: &str) -> &'static str {
    VERSIONS_ENV
        .lines()
        .filter_map(|l| l.split_once('='))
        .find(|(k, _)| k.trim() == key)
        .map(|(_, v)| v.trim())
        .unwrap_or_else(|| panic!("hack/versions.env has no {key}"))
}

/// The cache directory shared by the build script, the Cargo target
/// directory and the Ray wheel: `$KUBERAY_RS_CACHE` or `~/.cache/kuberay-rs`.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("KUBERAY_RS_CACHE") {
        return PathBuf::from(dir);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/tmp".into());
    PathBuf::from(home).join(".cache").join("kuberay-rs")
}

/// The repository's `hack/` directory, for the build script.
fn hack_dir() -> PathBuf {
    crate::repo_root().join("hack")
}

/// Absolute paths of every binary the control plane runs.
#[derive(Debug, Clone)]
pub struct Binaries {
    pub etcd: PathBuf,
    pub kube_apiserver: PathBuf,
    pub kube_controller_manager: PathBuf,
    pub kube_scheduler: PathBuf,
    pub kubectl: PathBuf,
    pub kwok: PathBuf,
    pub helm: PathBuf,
    pub kubelet: PathBuf,
    pub kube_proxy: PathBuf,
    pub coredns: PathBuf,
    /// Traefik, whose Gateway API provider plays the Gateway controller in
    /// the incremental-upgrade end-to-end test.
    pub traefik: PathBuf,
    /// The Gateway API standard CRDs (a directory of YAML files), which the
    /// build script fetches with the binaries.
    pub gateway_api_crds: PathBuf,
}

impl Binaries {
    /// The expected locations, whether or not the files exist yet.
    pub fn expected() -> Self {
        let cache = cache_dir();
        let dir = |component: &str, key: &str| {
            cache
                .join(format!("{component}-{}", version(key)))
                .join("bin")
        };
        let k8s = dir("k8s", "K8S_VERSION");
        // The build script names CoreDNS's directory after its main
        // package too, since that decides which plugins are linked.
        let coredns_src = crate::repo_root().join("hack/coredns/main.go");
        let coredns_key = std::fs::read(&coredns_src)
            .map(|b| {
                use sha2::Digest;
                sha2::Sha256::digest(&b)
                    .iter()
                    .map(|x| format!("{x:02x}"))
                    .collect::<String>()[..12]
                    .to_string()
            })
            .unwrap_or_default();
        Self {
            kubelet: k8s.join("kubelet"),
            kube_proxy: k8s.join("kube-proxy"),
            coredns: cache
                .join(format!(
                    "coredns-{}-{coredns_key}",
                    version("COREDNS_VERSION")
                ))
                .join("bin/coredns"),
            etcd: dir("etcd", "ETCD_VERSION").join("etcd"),
            kube_apiserver: k8s.join("kube-apiserver"),
            kube_controller_manager: k8s.join("kube-controller-manager"),
            kube_scheduler: k8s.join("kube-scheduler"),
            kubectl: k8s.join("kubectl"),
            kwok: dir("kwok", "KWOK_VERSION").join("kwok"),
            helm: dir("helm", "HELM_VERSION").join("helm"),
            traefik: dir("traefik", "TRAEFIK_VERSION").join("traefik"),
            gateway_api_crds: cache
                .join(format!("gateway-api-{}", version("GATEWAY_API_VERSION")))
                .join("crds"),
        }
    }

    fn all(&self) -> [PathBuf; 12] {
        [
            self.gateway_api_crds
                .join("gateway.networking.k8s.io_httproutes.yaml"),
            self.kubelet.clone(),
            self.kube_proxy.clone(),
            self.coredns.clone(),
            self.etcd.clone(),
            self.kube_apiserver.clone(),
            self.kube_controller_manager.clone(),
            self.kube_scheduler.clone(),
            self.kubectl.clone(),
            self.kwok.clone(),
            self.helm.clone(),
            self.traefik.clone(),
        ]
    }

    /// The binaries if they are all built, else which are missing.
    pub fn locate() -> Result<Self, Error> {
        let bins = Self::expected();
        let missing: Vec<String> = bins
            .all()
            .iter()
            .filter(|p| !p.is_file())
            .map(|p| p.display().to_string())
            .collect();
        if missing.is_empty() {
            Ok(bins)
        } else {
            Err(Error::BinariesMissing {
                missing: missing.join(", "),
            })
        }
    }

    /// Like [`Binaries::locate`], but runs the build script first when
    /// something is missing, so `cargo test` on a fresh machine works on its
    /// own (slowly, once).
    pub fn ensure() -> Result<Self, Error> {
        if let Ok(bins) = Self::locate() {
            return Ok(bins);
        }
        let script = hack_dir().join("build-control-plane.sh");
        eprintln!(
            "kuberay-testenv: control-plane binaries missing, running {}",
            script.display()
        );
        let status = Command::new("bash")
            .arg(&script)
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| Error::io(&script, e))?;
        if !status.success() {
            return Err(Error::BuildFailed(format!(
                "{} exited with {status}; its messages are above",
                script.display()
            )));
        }
        Self::locate()
    }
}
