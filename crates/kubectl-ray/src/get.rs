//! `kubectl ray get cluster|workergroup|node|token`: KubeRay's tables, same
//! headers and order, or the objects with `-o json|yaml`.

use anyhow::{Context as _, Result, bail};
use k8s_openapi::api::core::v1::{Pod, Secret};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::ResourceExt;
use kube::api::{Api, ListParams};
use kuberay_api::RayCluster;
use kuberay_api::names::{CLUSTER_LABEL, GROUP_LABEL, IS_RAY_NODE_LABEL, NODE_TYPE_LABEL, WORKER};
use kuberay_api::raycluster::{AuthMode, ClusterState, WorkerGroupSpec};
use kuberay_operator::ray::conditions;
use kuberay_operator::ray::quantity::Totals;
use serde_json::json;

use crate::cli::{GetCommand, ListFlags, Output};
use crate::connect::{Kube, KubeFlags, describe};
use crate::generation::{GOOGLE_TPU, NVIDIA_GPU};
use crate::table;

pub async fn run(flags: &KubeFlags, what: GetCommand) -> Result<()> {
    let kube = flags.connect().await?;
    match what {
        GetCommand::Cluster {
            name,
            all_namespaces,
            output,
        } => cluster(&kube, name.as_deref(), all_namespaces, output).await,
        GetCommand::Workergroup { group, list } => {
            workergroup(&kube, group.as_deref(), &list).await
        }
        GetCommand::Node { node, list } => node_cmd(&kube, node.as_deref(), &list).await,
        GetCommand::Token { cluster } => token(&kube, &cluster).await,
    }
}

fn api<K>(kube: &Kube, all_namespaces: bool) -> Api<K>
where
    K: kube::Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    if all_namespaces {
        Api::all(kube.client.clone())
    } else {
        Api::namespaced(kube.client.clone(), &kube.namespace)
    }
}

/// ` in namespace X` or ` in any namespace`, as KubeRay words not-found errors.
fn where_(kube: &Kube, all_namespaces: bool) -> String {
    if all_namespaces {
        " in any namespace".into()
    } else {
        format!(" in namespace {}", kube.namespace)
    }
}

fn print_objects<T: serde::Serialize>(items: Vec<T>, single: bool, output: Output) -> Result<()> {
    let value = if single && items.len() == 1 {
        serde_json::to_value(&items[0])?
    } else {
        json!({"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}})
    };
    match output {
        Output::Json => println!("{}", serde_json::to_string_pretty(&value)?),
        Output::Yaml => print!("{}", serde_yaml::to_string(&value)?),
    }
    Ok(())
}

pub const CLUSTER_HEADERS: [&str; 11] = [
    "Name",
    "Namespace",
    "Desired Workers",
    "Available Workers",
    "CPUs",
    "GPUs",
    "TPUs",
    "Memory",
    "Condition",
    "Status",
    "Age",
];

async fn cluster(
    kube: &Kube,
    name: Option<&str>,
    all_namespaces: bool,
    output: Option<Output>,
) -> Result<()> {
    let mut lp = ListParams::default();
    if let Some(n) = name {
        lp = lp.fields(&format!("metadata.name={n}"));
    }
    let list = api::<RayCluster>(kube, all_namespaces)
        .list(&lp)
        .await
        .map_err(|e| {
            let scope = if all_namespaces {
                "for all namespaces".to_string()
            } else {
                format!("for namespace {}", kube.namespace)
            };
            anyhow::anyhow!("unable to retrieve Ray clusters {scope}: {}", describe(&e))
        })?;
    if let Some(n) = name
        && list.items.is_empty()
    {
        bail!("Ray cluster {n} not found{}", where_(kube, all_namespaces));
    }
    if let Some(o) = output {
        return print_objects(list.items, name.is_some(), o);
    }
    print!("{}", cluster_table(&list.items));
    // Beyond KubeRay: say why a cluster is not ready, on stderr so that the
    // table on stdout stays what scripts parse.
    for rc in &list.items {
        if let Some(why) = not_ready_reason(rc) {
            eprintln!(
                "{}/{} is not ready: {why}",
                rc.namespace().unwrap_or_default(),
                rc.name_any()
            );
        }
    }
    Ok(())
}

pub fn cluster_table(clusters: &[RayCluster]) -> String {
    let rows: Vec<Vec<String>> = clusters
        .iter()
        .map(|rc| {
            let s = rc.status.clone().unwrap_or_default();
            vec![
                rc.name_any(),
                rc.namespace().unwrap_or_default(),
                s.desired_worker_replicas.unwrap_or(0).to_string(),
                s.available_worker_replicas.unwrap_or(0).to_string(),
                table::quantity(s.desired_cpu.as_ref()),
                table::quantity(s.desired_gpu.as_ref()),
                table::quantity(s.desired_tpu.as_ref()),
                table::quantity(s.desired_memory.as_ref()),
                relevant_condition(rc)
                    .map(|c| c.type_.clone())
                    .unwrap_or_default(),
                s.state.map(|st| st.to_string()).unwrap_or_default(),
                table::age(rc.metadata.creation_timestamp.as_ref()),
            ]
        })
        .collect();
    table::render(&CLUSTER_HEADERS, &rows)
}

/// KubeRay's most relevant condition: the first of Provisioned, HeadPodReady,
/// ReplicaFailure, Suspended, Suspending that is True.
pub fn relevant_condition(rc: &RayCluster) -> Option<&Condition> {
    let all = rc.status.as_ref()?.conditions.as_ref()?;
    [
        conditions::PROVISIONED,
        conditions::HEAD_POD_READY,
        conditions::REPLICA_FAILURE,
        conditions::SUSPENDED,
        conditions::SUSPENDING,
    ]
    .iter()
    .find_map(|t| all.iter().find(|c| c.type_ == *t && c.status == "True"))
}

/// Why a cluster is not ready, from what the operator wrote: the status
/// reason, else the message of a failing condition.
pub fn not_ready_reason(rc: &RayCluster) -> Option<String> {
    let s = rc.status.as_ref()?;
    if s.state == Some(ClusterState::Ready) || s.state == Some(ClusterState::Suspended) {
        return None;
    }
    if let Some(r) = s.reason.as_ref().filter(|r| !r.is_empty()) {
        return Some(r.clone());
    }
    let conds = s.conditions.as_ref()?;
    let failing = conds
        .iter()
        .find(|c| c.type_ == conditions::REPLICA_FAILURE && c.status == "True")
        .or_else(|| {
            conds
                .iter()
                .find(|c| c.type_ == conditions::HEAD_POD_READY && c.status == "False")
        })?;
    Some(format!("{} ({})", failing.message, failing.reason))
}

pub const WORKERGROUP_HEADERS: [&str; 9] = [
    "Name", "Min", "Max", "Replicas", "CPUs", "GPUs", "TPUs", "Memory", "Cluster",
];

#[derive(serde::Serialize, Debug, Clone, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct WorkerGroupRow {
    pub namespace: String,
    pub name: String,
    pub cluster: String,
    pub min_replicas: i32,
    pub max_replicas: i32,
    pub ready_replicas: i32,
    pub desired_replicas: i32,
    pub cpus: String,
    pub gpus: String,
    pub tpus: String,
    pub memory: String,
}

async fn workergroup(kube: &Kube, group: Option<&str>, list: &ListFlags) -> Result<()> {
    let (ray_cluster, all_namespaces, output) = (
        list.ray_cluster.as_deref(),
        list.all_namespaces,
        list.output,
    );
    let mut lp = ListParams::default();
    if let Some(c) = ray_cluster {
        lp = lp.fields(&format!("metadata.name={c}"));
    }
    let clusters = api::<RayCluster>(kube, all_namespaces)
        .list(&lp)
        .await
        .map_err(|e| match ray_cluster {
            Some(c) => anyhow::anyhow!(
                "unable to get Ray cluster {c} in namespace {}: {}",
                kube.namespace,
                describe(&e)
            ),
            None => anyhow::anyhow!(
                "unable to list Ray clusters in namespace {}: {}",
                kube.namespace,
                describe(&e)
            ),
        })?;
    let mut rows = Vec::new();
    for rc in &clusters.items {
        let ns = rc.namespace().unwrap_or_default();
        for spec in rc.spec.worker_group_specs.iter().flatten() {
            if group.is_some_and(|g| g != spec.group_name) {
                continue;
            }
            let pods: Api<Pod> = Api::namespaced(kube.client.clone(), &ns);
            let selector = format!(
                "{NODE_TYPE_LABEL}={WORKER},{GROUP_LABEL}={},{CLUSTER_LABEL}={}",
                spec.group_name,
                rc.name_any()
            );
            let list = pods
                .list(&ListParams::default().labels(&selector))
                .await
                .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
            rows.push(workergroup_row(&ns, &rc.name_any(), spec, &list.items));
        }
    }
    if let Some(g) = group
        && rows.is_empty()
    {
        let in_cluster = match ray_cluster {
            Some(c) => format!(" in Ray cluster {c}"),
            None => " in any Ray cluster".into(),
        };
        bail!(
            "Ray worker group {g} not found{}{in_cluster}",
            where_(kube, all_namespaces)
        );
    }
    if let Some(o) = output {
        return print_objects(rows, false, o);
    }
    print!("{}", workergroup_table(&rows, all_namespaces));
    Ok(())
}

/// One worker group's row: ready pods over desired replicas, and the
/// group's total resources (per pod, requests else limits, times replicas;
/// nothing while the group is suspended).
pub fn workergroup_row(
    ns: &str,
    cluster: &str,
    spec: &WorkerGroupSpec,
    pods: &[Pod],
) -> WorkerGroupRow {
    let replicas = spec.replicas.unwrap_or(0);
    let mut totals = Totals::default();
    if spec.suspend != Some(true) {
        let pod_spec = spec.template.spec.clone().unwrap_or_default();
        totals.merge(&Totals::of_pod(&pod_spec), f64::from(replicas));
    }
    let ready = pods
        .iter()
        .filter(|p| p.labels().get(NODE_TYPE_LABEL).map(String::as_str) == Some(WORKER))
        .filter(|p| is_running_and_ready(p))
        .count();
    WorkerGroupRow {
        namespace: ns.to_string(),
        name: spec.group_name.clone(),
        cluster: cluster.to_string(),
        min_replicas: spec.min_replicas.unwrap_or(0),
        max_replicas: spec.max_replicas.unwrap_or(i32::MAX),
        ready_replicas: i32::try_from(ready).unwrap_or(i32::MAX),
        desired_replicas: replicas,
        cpus: totals.quantity("cpu").0,
        gpus: totals.quantity(NVIDIA_GPU).0,
        tpus: totals.quantity(GOOGLE_TPU).0,
        memory: totals.quantity("memory").0,
    }
}

fn is_running_and_ready(p: &Pod) -> bool {
    let Some(s) = &p.status else { return false };
    s.phase.as_deref() == Some("Running")
        && s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == "Ready" && c.status == "True")
}

pub fn workergroup_table(rows: &[WorkerGroupRow], all_namespaces: bool) -> String {
    let headers: Vec<&str> = all_namespaces
        .then_some("Namespace")
        .into_iter()
        .chain(WORKERGROUP_HEADERS)
        .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            all_namespaces
                .then(|| r.namespace.clone())
                .into_iter()
                .chain([
                    r.name.clone(),
                    r.min_replicas.to_string(),
                    r.max_replicas.to_string(),
                    format!("{}/{}", r.ready_replicas, r.desired_replicas),
                    r.cpus.clone(),
                    r.gpus.clone(),
                    r.tpus.clone(),
                    r.memory.clone(),
                    r.cluster.clone(),
                ])
                .collect()
        })
        .collect();
    table::render(&headers, &cells)
}

pub const NODE_HEADERS: [&str; 9] = [
    "Name",
    "CPUs",
    "GPUs",
    "TPUs",
    "Memory",
    "Cluster",
    "Type",
    "Worker Group",
    "Age",
];

async fn node_cmd(kube: &Kube, node: Option<&str>, list: &ListFlags) -> Result<()> {
    let (ray_cluster, all_namespaces, output) = (
        list.ray_cluster.as_deref(),
        list.all_namespaces,
        list.output,
    );
    let mut selector = format!("{IS_RAY_NODE_LABEL}=yes");
    if let Some(c) = ray_cluster {
        selector += &format!(",{CLUSTER_LABEL}={c}");
    }
    let mut lp = ListParams::default().labels(&selector);
    if let Some(n) = node {
        lp = lp.fields(&format!("metadata.name={n}"));
    }
    let pods = api::<Pod>(kube, all_namespaces)
        .list(&lp)
        .await
        .map_err(|e| anyhow::anyhow!("unable to get Ray nodes: {}", describe(&e)))?;
    if let Some(n) = node
        && pods.items.is_empty()
    {
        let in_cluster = match ray_cluster {
            Some(c) => format!(" in Ray cluster {c}"),
            None => " in any Ray cluster".into(),
        };
        bail!(
            "Ray node {n} not found{}{in_cluster}",
            where_(kube, all_namespaces)
        );
    }
    if let Some(o) = output {
        return print_objects(pods.items, node.is_some(), o);
    }
    print!("{}", node_table(&pods.items, all_namespaces));
    Ok(())
}

/// A pod's row: the first container's requests (KubeRay's choice: the Ray
/// container comes first).
pub fn node_table(pods: &[Pod], all_namespaces: bool) -> String {
    let headers: Vec<&str> = all_namespaces
        .then_some("Namespace")
        .into_iter()
        .chain(NODE_HEADERS)
        .collect();
    let rows: Vec<Vec<String>> = pods
        .iter()
        .map(|p| {
            let requests = p
                .spec
                .as_ref()
                .and_then(|s| s.containers.first())
                .and_then(|c| c.resources.as_ref())
                .and_then(|r| r.requests.clone())
                .unwrap_or_default();
            let label = |k: &str| p.labels().get(k).cloned().unwrap_or_default();
            all_namespaces
                .then(|| p.namespace().unwrap_or_default())
                .into_iter()
                .chain([
                    p.name_any(),
                    table::quantity(requests.get("cpu")),
                    table::quantity(requests.get(NVIDIA_GPU)),
                    table::quantity(requests.get(GOOGLE_TPU)),
                    table::quantity(requests.get("memory")),
                    label(CLUSTER_LABEL),
                    label(NODE_TYPE_LABEL),
                    label(GROUP_LABEL),
                    table::age(p.metadata.creation_timestamp.as_ref()),
                ])
                .collect()
        })
        .collect();
    table::render(&headers, &rows)
}

async fn token(kube: &Kube, name: &str) -> Result<()> {
    let ns = &kube.namespace;
    let clusters: Api<RayCluster> = Api::namespaced(kube.client.clone(), ns);
    let rc = clusters
        .get(name)
        .await
        .map_err(|e| anyhow::anyhow!("failed to get RayCluster {ns}/{name}: {}", describe(&e)))?;
    let mode = rc.spec.auth_options.as_ref().and_then(|a| a.mode.clone());
    if mode != Some(AuthMode::Token) {
        bail!("RayCluster {ns}/{name} was not configured to use authentication tokens");
    }
    // The operator's Secret, or the one the user named.
    let secret_name = rc
        .spec
        .auth_options
        .as_ref()
        .and_then(|a| a.secret_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| kuberay_api::names::check_name(name, 50));
    let secrets: Api<Secret> = Api::namespaced(kube.client.clone(), ns);
    let secret = secrets.get(&secret_name).await.map_err(|e| {
        anyhow::anyhow!("failed to get secret {ns}/{secret_name}: {}", describe(&e))
    })?;
    let key = kuberay_operator::ray::auth::TOKEN_KEY;
    let token = secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .with_context(|| format!("secret {ns}/{secret_name} does not have an {key}"))?;
    use std::io::Write;
    std::io::stdout().write_all(&token.0)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(yaml: &str) -> RayCluster {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// KubeRay's `TestRayClusterGetRun`, second case.
    #[test]
    fn the_cluster_table_matches_kuberays_test() {
        let rc = cluster(
            r#"
apiVersion: ray.io/v1
kind: RayCluster
metadata: {name: raycluster-kuberay, namespace: test}
spec: {headGroupSpec: {template: {}}}
status:
  desiredWorkerReplicas: 2
  availableWorkerReplicas: 2
  desiredCPU: "6"
  desiredGPU: "1"
  desiredTPU: "1"
  desiredMemory: 24Gi
  state: ready
  conditions:
  - {type: ReplicaFailure, status: "False", reason: HeadPodNotFound, message: Head Pod not found, lastTransitionTime: "2024-07-21T00:00:00Z"}
  - {type: RayClusterProvisioned, status: "True", reason: AllPodRunningAndReadyFirstTime, message: ok, lastTransitionTime: "2025-01-20T00:00:00Z"}
  - {type: HeadPodReady, status: "True", reason: HeadPodRunningAndReady, message: ok, lastTransitionTime: "2024-11-05T00:00:00Z"}
"#,
        );
        assert_eq!(
            cluster_table(&[rc]),
            "NAME                 NAMESPACE   DESIRED WORKERS   AVAILABLE WORKERS   CPUS   GPUS   TPUS   MEMORY   CONDITION               STATUS   AGE\n\
             raycluster-kuberay   test        2                 2                   6      1      1      24Gi     RayClusterProvisioned   ready    <unknown>\n"
        );
    }

    #[test]
    fn a_cluster_without_status_shows_zeros_and_blanks() {
        let rc =
            cluster("metadata: {name: a, namespace: n}\nspec: {headGroupSpec: {template: {}}}\n");
        let t = cluster_table(&[rc]);
        assert_eq!(
            t.lines().nth(1).unwrap(),
            "a      n           0                 0                   0      0      0      0                             <unknown>"
        );
        assert_eq!(
            not_ready_reason(&cluster(
                "metadata: {name: a}\nspec: {headGroupSpec: {template: {}}}\n"
            )),
            None
        );
    }

    #[test]
    fn a_worker_group_totals_its_replicas() {
        let spec: WorkerGroupSpec = serde_yaml::from_str(
            r#"
groupName: workergroup
replicas: 2
minReplicas: 1
maxReplicas: 5
template:
  spec:
    containers:
    - name: ray-worker
      resources:
        requests: {cpu: 500m, memory: 1Gi}
        limits: {cpu: "1", memory: 1Gi, nvidia.com/gpu: "1"}
"#,
        )
        .unwrap();
        let row = workergroup_row("ns", "rc", &spec, &[]);
        assert_eq!(
            workergroup_table(std::slice::from_ref(&row), false),
            "NAME          MIN   MAX   REPLICAS   CPUS   GPUS   TPUS   MEMORY   CLUSTER\n\
             workergroup   1     5     0/2        1      2      0      2Gi      rc\n"
        );
        assert!(workergroup_table(&[row], true).starts_with("NAMESPACE   NAME"));
        let mut suspended = spec.clone();
        suspended.suspend = Some(true);
        suspended.max_replicas = None;
        let row = workergroup_row("ns", "rc", &suspended, &[]);
        assert_eq!((row.cpus.as_str(), row.max_replicas), ("0", i32::MAX));
    }
}
