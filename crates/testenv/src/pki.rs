//! Certificates for a local control plane: one throw-away CA, the API server's
//! serving certificate, one client certificate per component, and the service
//! account signing key. Generated fresh for every control plane, so nothing
//! secret is ever stored in the repository or reused between runs.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::Error;

/// What the certificates must name besides the fixed identities.
#[derive(Debug, Clone)]
pub struct PkiOptions {
    /// The `kubernetes` Service's ClusterIP: in-cluster clients connect to
    /// it, so the API server's certificate must name it.
    pub kubernetes_service_ip: Ipv4Addr,
    /// Further addresses the API server is reached at (besides loopback).
    pub apiserver_ips: Vec<Ipv4Addr>,
    /// Real nodes, by name and IP: each gets a kubelet client certificate
    /// (`system:node:<name>`) and a serving certificate for its IP.
    pub nodes: Vec<(String, Ipv4Addr)>,
}

/// The certificates of one real node's kubelet.
#[derive(Debug, Clone)]
pub struct NodeCerts {
    pub name: String,
    /// Client certificate the kubelet talks to the API server with.
    pub client: CertFiles,
    /// Serving certificate of the kubelet's own API (logs, exec, ...).
    pub serving: CertFiles,
}

/// A PEM certificate and its private key, written to disk.
#[derive(Debug, Clone)]
pub struct CertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// Everything the control plane's processes need, on disk under one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub serving: CertFiles,
    /// Client certificate in `system:masters`: the admin kubeconfig.
    pub admin: CertFiles,
    pub controller_manager: CertFiles,
    pub scheduler: CertFiles,
    /// Private key the API server signs service account tokens with.
    pub service_account_key: PathBuf,
    /// Its public half, which the API server verifies tokens with. Written
    /// separately because Kubernetes only derives public keys from SEC1 EC
    /// keys, and rcgen writes PKCS#8.
    pub service_account_pub: PathBuf,
    /// What the API server presents to kubelets (in `system:masters`).
    pub apiserver_kubelet_client: CertFiles,
    /// kube-proxy's identity, bound to `system:node-proxier` by default.
    pub kube_proxy: CertFiles,
    /// CoreDNS's identity, given read access to services by the control plane.
    pub coredns: CertFiles,
    pub nodes: Vec<NodeCerts>,
}

/// The user CoreDNS authenticates as; the control plane binds it to a role
/// that reads what the `kubernetes` plugin watches.
pub const COREDNS_USER: &str = "kuberay-rs:coredns";

/// Who a client certificate speaks for: Kubernetes reads the user from the
/// common name and the groups from the organisations.
struct Identity<'a> {
    file: &'a str,
    user: &'a str,
    groups: &'a [&'a str],
}

impl Pki {
    pub fn generate(dir: &Path, opts: &PkiOptions) -> Result<Self, Error> {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        let ca_key = KeyPair::generate()?;
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kuberay-rs local CA");
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key_pem = ca_key.serialize_pem();
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key)?;

        let write = |name: &str, body: &str| -> Result<PathBuf, Error> {
            let path = dir.join(name);
            std::fs::write(&path, body).map_err(|e| Error::io(&path, e))?;
            Ok(path)
        };
        let ca_cert = write("ca.crt", &ca.pem())?;
        let ca_key = write("ca.key", &ca_key_pem)?;

        let serving = {
            let mut params = CertificateParams::new(vec![
                "localhost".to_string(),
                "kubernetes".to_string(),
                "kubernetes.default".to_string(),
                "kubernetes.default.svc".to_string(),
                "kubernetes.default.svc.cluster.local".to_string(),
            ])?;
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
            for ip in std::iter::once(opts.kubernetes_service_ip)
                .chain(opts.apiserver_ips.iter().copied())
            {
                params
                    .subject_alt_names
                    .push(SanType::IpAddress(IpAddr::V4(ip)));
            }
            params
                .distinguished_name
                .push(DnType::CommonName, "kube-apiserver");
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            CertFiles {
                cert: write("apiserver.crt", &cert.pem())?,
                key: write("apiserver.key", &key.serialize_pem())?,
            }
        };

        let client = |id: Identity| -> Result<CertFiles, Error> {
            let mut params = CertificateParams::new(Vec::<String>::new())?;
            params.distinguished_name.push(DnType::CommonName, id.user);
            for group in id.groups {
                params
                    .distinguished_name
                    .push(DnType::OrganizationName, *group);
            }
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            Ok(CertFiles {
                cert: write(&format!("{}.crt", id.file), &cert.pem())?,
                key: write(&format!("{}.key", id.file), &key.serialize_pem())?,
            })
        };
        let admin = client(Identity {
            file: "admin",
            user: "kuberay-rs-admin",
            groups: &["system:masters"],
        })?;
        // The built-in RBAC roles bind these exact user names, so the
        // components run with their real, limited permissions.
        let controller_manager = client(Identity {
            file: "controller-manager",
            user: "system:kube-controller-manager",
            groups: &[],
        })?;
        let scheduler = client(Identity {
            file: "scheduler",
            user: "system:kube-scheduler",
            groups: &[],
        })?;

        let apiserver_kubelet_client = client(Identity {
            file: "apiserver-kubelet-client",
            user: "kube-apiserver-kubelet-client",
            groups: &["system:masters"],
        })?;
        let kube_proxy = client(Identity {
            file: "kube-proxy",
            user: "system:kube-proxy",
            groups: &[],
        })?;
        let coredns = client(Identity {
            file: "coredns",
            user: COREDNS_USER,
            groups: &[],
        })?;
        let mut nodes = Vec::new();
        for (name, ip) in &opts.nodes {
            let user = format!("system:node:{name}");
            let file = format!("kubelet-{name}");
            let node_client = client(Identity {
                file: &file,
                user: &user,
                groups: &["system:nodes"],
            })?;
            let mut params = CertificateParams::new(vec![name.clone()])?;
            params
                .subject_alt_names
                .push(SanType::IpAddress(IpAddr::V4(*ip)));
            params
                .distinguished_name
                .push(DnType::CommonName, user.as_str());
            params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
            let key = KeyPair::generate()?;
            let cert = params.signed_by(&key, &ca)?;
            nodes.push(NodeCerts {
                name: name.clone(),
                client: node_client,
                serving: CertFiles {
                    cert: write(&format!("kubelet-{name}-serving.crt"), &cert.pem())?,
                    key: write(&format!("kubelet-{name}-serving.key"), &key.serialize_pem())?,
                },
            });
        }

        let sa = KeyPair::generate()?;
        let service_account_key = write("sa.key", &sa.serialize_pem())?;
        let service_account_pub = write("sa.pub", &sa.public_key_pem())?;

        Ok(Self {
            ca_cert,
            ca_key,
            serving,
            admin,
            controller_manager,
            scheduler,
            service_account_key,
            service_account_pub,
            apiserver_kubelet_client,
            kube_proxy,
            coredns,
            nodes,
        })
    }
}
