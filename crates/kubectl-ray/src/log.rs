//! `kubectl ray log`: each Ray pod's container log and its Ray logs
//! (`/tmp/ray/session_latest/logs`, copied with `tar` through exec) into
//! `<out-dir>/<pod>/`; or, with `--link gke`, a Cloud Logging link.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, anyhow, bail};
use k8s_openapi::api::core::v1::Pod;
use kube::ResourceExt;
use kube::api::{Api, AttachParams, ListParams, LogParams};
use kuberay_api::names::{CLUSTER_LABEL, HEAD, NODE_TYPE_LABEL, WORKER};
use kuberay_api::{RayJob, RayService};
use tokio::io::AsyncReadExt;

use crate::cli::{LogArgs, NodeType};
use crate::connect::{Kube, KubeFlags, describe};
use crate::resource::{self, Kind};

pub const LOGS_IN_POD: &str = "/tmp/ray/session_latest/logs/";

pub async fn run(flags: &KubeFlags, a: LogArgs) -> Result<()> {
    let (kind, name) = resource::parse(&a.resource, true)?;
    println!(
        "{}",
        match a.node_type {
            NodeType::All => "Command set to retrieve both head and worker node logs.",
            NodeType::Head => "Command set to retrieve only head node logs.",
            NodeType::Worker => "Command set to retrieve only worker node logs.",
        }
    );
    let mut created_dir = None;
    let out_dir = match (&a.link, &a.out_dir) {
        (Some(link), _) if link != "gke" => {
            bail!("unsupported link type {link:?}, only \"gke\" is supported")
        }
        (Some(_), Some(_)) => bail!("--out-dir is incompatible with --link"),
        (Some(_), None) => PathBuf::new(),
        (None, Some(d)) => d.clone(),
        (None, None) => {
            println!(
                "No output directory specified, creating dir under current directory using resource name."
            );
            let d = PathBuf::from(&name);
            std::fs::create_dir_all(&d)
                .with_context(|| format!("could not create directory with cluster name {name}"))?;
            created_dir = Some(d.clone());
            d
        }
    };
    if a.link.is_none() {
        match std::fs::metadata(&out_dir) {
            Err(e) => bail!("Directory does not exist. Failed with: {e}"),
            Ok(m) if !m.is_dir() => {
                bail!("Path is not a directory. Please input a directory and try again")
            }
            Ok(_) => {}
        }
    }
    let kube = flags.connect().await?;
    let cluster = cluster_of(&kube, kind, &name).await?;
    if a.link.is_some() {
        return gke_link(&kube, &cluster, a.node_type).await;
    }
    let selector = match a.node_type {
        NodeType::All => format!("{CLUSTER_LABEL}={cluster}"),
        NodeType::Head => format!("{NODE_TYPE_LABEL}={HEAD},{CLUSTER_LABEL}={cluster}"),
        NodeType::Worker => format!("{NODE_TYPE_LABEL}={WORKER},{CLUSTER_LABEL}={cluster}"),
    };
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let list = pods
        .list(&ListParams::default().labels(&selector))
        .await
        .map_err(|e| {
            anyhow!(
                "failed to retrieve head node for Ray cluster {cluster}: {}",
                describe(&e)
            )
        })?;
    if list.items.is_empty() {
        if let Some(d) = created_dir {
            let _ = std::fs::remove_dir(d);
        }
        bail!("No Ray nodes found for resource {cluster}");
    }
    for pod in &list.items {
        download(&pods, pod, &out_dir).await?;
    }
    Ok(())
}

/// The RayCluster a resource runs on.
async fn cluster_of(kube: &Kube, kind: Kind, name: &str) -> Result<String> {
    let c = kube.client.clone();
    let ns = &kube.namespace;
    let failed = |e: kube::Error| {
        anyhow!(
            "failed to retrieve Ray job info for {name}: {}",
            describe(&e)
        )
    };
    Ok(match kind {
        Kind::RayCluster => name.to_string(),
        Kind::RayJob => Api::<RayJob>::namespaced(c, ns)
            .get(name)
            .await
            .map_err(failed)?
            .status
            .and_then(|s| s.ray_cluster_name)
            .unwrap_or_default(),
        Kind::RayService => Api::<RayService>::namespaced(c, ns)
            .get(name)
            .await
            .map_err(failed)?
            .status
            .and_then(|s| s.active_service_status)
            .and_then(|s| s.ray_cluster_name)
            .unwrap_or_default(),
    })
}

/// One pod: its first (Ray) container's log as `stdout.log`, then its Ray
/// log directory.
async fn download(pods: &Api<Pod>, pod: &Pod, out_dir: &Path) -> Result<()> {
    let name = pod.name_any();
    let container = pod
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .map(|c| c.name.clone())
        .unwrap_or_default();
    let dir = out_dir.join(&name);
    std::fs::create_dir_all(&dir)
        .with_context(|| format!("failed to create directory within path {}", dir.display()))?;
    let log = pods
        .logs(
            &name,
            &LogParams {
                container: Some(container.clone()),
                ..Default::default()
            },
        )
        .await
        .map_err(|e| {
            anyhow!(
                "Error retrieving log for Ray cluster node {name}: {}",
                describe(&e)
            )
        })?;
    std::fs::write(dir.join("stdout.log"), log)
        .with_context(|| format!("failed to write {}", dir.join("stdout.log").display()))?;

    let command = [
        "tar",
        "--warning=no-file-changed",
        "-cf",
        "-",
        "-C",
        LOGS_IN_POD,
        ".",
    ];
    let ap = AttachParams::default()
        .container(container)
        .stdin(false)
        .stdout(true)
        .stderr(true);
    let mut process = pods
        .exec(&name, command, &ap)
        .await
        .map_err(|e| anyhow!("failed to copy the Ray logs of {name}: {}", describe(&e)))?;
    let mut stdout = process.stdout().context("no stdout from exec")?;
    let mut stderr = process.stderr().context("no stderr from exec")?;
    let (mut archive, mut errors) = (Vec::new(), Vec::new());
    let (r1, r2) = tokio::join!(
        stdout.read_to_end(&mut archive),
        stderr.read_to_end(&mut errors)
    );
    r1.context("reading the log archive")?;
    r2.context("reading tar's errors")?;
    let _ = process.join().await;
    if archive.is_empty() {
        bail!(
            "failed to download the Ray logs of {name}: {}",
            String::from_utf8_lossy(&errors).trim()
        );
    }
    println!("Downloading log for Ray Node {name}");
    tar::Archive::new(archive.as_slice())
        .unpack(&dir)
        .with_context(|| format!("error while extracting the Ray logs of {name}"))?;
    Ok(())
}

/// A Cloud Logging query link for the cluster's pods (KubeRay's `--link gke`).
async fn gke_link(kube: &Kube, cluster: &str, node_type: NodeType) -> Result<()> {
    let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &kube.namespace);
    let heads = pods
        .list(&ListParams::default().labels(&format!(
            "{NODE_TYPE_LABEL}={HEAD},{CLUSTER_LABEL}={cluster}"
        )))
        .await;
    if let Ok(list) = heads
        && let Some(head) = list.items.first()
        && !head
            .spec
            .iter()
            .flat_map(|s| &s.containers)
            .any(|c| c.name == "fluentbit")
    {
        eprintln!(
            "Warning: The head pod does not have a 'fluentbit' container. Logs might not be exported to Google Cloud Logging."
        );
    }
    println!(
        "{}",
        gke_url(&kube.namespace, cluster, node_type, &kube.context)
    );
    if !kube.context.starts_with("gke_") {
        eprintln!(
            "Warning: The current kubectl context does not appear to be a GKE cluster. The generated link may not work."
        );
    }
    Ok(())
}

pub fn gke_url(namespace: &str, cluster: &str, node_type: NodeType, context: &str) -> String {
    let node_line = match node_type {
        NodeType::Head => format!(r#"labels."k8s-pod/ray_io/node-type"="{HEAD}""#),
        NodeType::Worker => format!(r#"labels."k8s-pod/ray_io/node-type"="{WORKER}""#),
        NodeType::All => r#"labels."k8s-pod/ray_io/is-ray-node"="yes""#.to_string(),
    };
    let query = [
        r#"resource.type="k8s_container""#.to_string(),
        format!(r#"resource.labels.namespace_name="{namespace}""#),
        format!(r#"labels."k8s-pod/ray_io/cluster"="{cluster}""#),
        node_line,
    ]
    .join("\n");
    let mut url = format!(
        "https://console.cloud.google.com/logs/query;query={}",
        query_escape(&query)
    );
    if let Some(rest) = context.strip_prefix("gke_") {
        let project = rest.split('_').next().unwrap_or("");
        url += &format!("?project={}", query_escape(project));
    }
    url
}

/// Go's `url.QueryEscape`.
fn query_escape(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            b' ' => "+".into(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gke_links_query_the_clusters_pods() {
        let url = gke_url("ns", "rc", NodeType::All, "gke_proj_us-central1_c");
        assert!(url.starts_with("https://console.cloud.google.com/logs/query;query=resource.type%3D%22k8s_container%22%0A"), "{url}");
        assert!(
            url.contains("labels.%22k8s-pod%2Fray_io%2Fis-ray-node%22%3D%22yes%22"),
            "{url}"
        );
        assert!(url.ends_with("?project=proj"));
        assert!(gke_url("ns", "rc", NodeType::Head, "kind").contains("node-type%22%3D%22head%22"));
    }
}
