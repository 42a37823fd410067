//! `kubectl ray create cluster|workergroup`.

use std::collections::BTreeSet;

use anyhow::{Result, bail};
use kube::api::{Api, Patch, PatchParams};
use kuberay_api::RayCluster;
use serde_json::{Value, json};

use crate::cli::{CreateClusterArgs, CreateCommand, CreateWorkerGroupArgs, to_map};
use crate::config::{Autoscaler, ClusterConfig, Head, WorkerGroup};
use crate::connect::{Kube, KubeFlags, describe};
use crate::generation::{
    DEFAULT_GROUP, DEFAULT_IMAGE_REPO, GOOGLE_TPU, NVIDIA_GPU, RAY_VERSION, default_image, to_yaml,
};
use crate::validation::{validate_quantity, validate_quantity_flags, validate_tpu};
use crate::wait;

/// The field manager of every write, as KubeRay's plugin names it.
pub const FIELD_MANAGER: &str = "ray-kubectl-plugin";

pub async fn run(
    flags: &KubeFlags,
    what: CreateCommand,
    explicit: &BTreeSet<String>,
) -> Result<()> {
    match what {
        CreateCommand::Cluster(args) => cluster(flags, *args, explicit).await,
        CreateCommand::Workergroup(args) => workergroup(flags, *args).await,
    }
}

/// Flags that only shape how the command runs, allowed beside `--file`
/// (KubeRay's list, plus the kubeconfig flags, which KubeRay refuses by
/// mistake).
const ALLOWED_WITH_FILE: &[&str] = &[
    "file",
    "context",
    "namespace",
    "dry_run",
    "wait",
    "timeout",
    "kubeconfig",
    "kube_cluster",
    "user",
];

fn flag_name(id: &str) -> String {
    match id {
        "kube_cluster" => "cluster".into(),
        other => other.replace('_', "-"),
    }
}

/// The cluster the flags describe, after KubeRay's checks.
fn config_from_flags(
    a: &CreateClusterArgs,
    namespace: &str,
    explicit: &BTreeSet<String>,
) -> Result<ClusterConfig> {
    let s = &a.shape;
    validate_quantity_flags(
        &[
            ("head-cpu", &s.head_cpu),
            ("head-gpu", &s.head_gpu),
            ("head-memory", &s.head_memory),
            ("head-ephemeral-storage", &a.head_ephemeral_storage),
            ("worker-cpu", &s.worker_cpu),
            ("worker-gpu", &s.worker_gpu),
            ("worker-tpu", &a.worker_tpu),
            ("worker-memory", &s.worker_memory),
            ("worker-ephemeral-storage", &a.worker_ephemeral_storage),
        ],
        explicit,
    )?;
    let worker_selectors = to_map(&a.shape.worker_node_selectors);
    validate_tpu(Some(&a.worker_tpu), Some(a.num_of_hosts), &worker_selectors)?;
    // The default image follows a non-default --ray-version.
    let image = if a.shape.image.is_empty()
        || (a.shape.image == default_image() && a.shape.ray_version != RAY_VERSION)
    {
        format!("{DEFAULT_IMAGE_REPO}:{}", a.shape.ray_version)
    } else {
        a.shape.image.clone()
    };
    Ok(ClusterConfig {
        namespace: Some(namespace.to_string()),
        name: Some(a.name.clone()),
        labels: to_map(&a.labels),
        annotations: to_map(&a.annotations),
        ray_version: Some(a.shape.ray_version.clone()),
        image: Some(image),
        service_account: None,
        head: Some(Head {
            cpu: Some(a.shape.head_cpu.clone()),
            gpu: Some(a.shape.head_gpu.clone()),
            memory: Some(a.shape.head_memory.clone()),
            ephemeral_storage: Some(a.head_ephemeral_storage.clone()),
            ray_start_params: to_map(&a.head_ray_start_params),
            node_selectors: to_map(&a.shape.head_node_selectors),
        }),
        gke: None,
        autoscaler: Some(Autoscaler {
            version: a.autoscaler,
        }),
        worker_groups: Some(vec![WorkerGroup {
            name: Some(DEFAULT_GROUP.into()),
            cpu: Some(a.shape.worker_cpu.clone()),
            gpu: Some(a.shape.worker_gpu.clone()),
            tpu: Some(a.worker_tpu.clone()),
            num_of_hosts: Some(a.num_of_hosts),
            memory: Some(a.shape.worker_memory.clone()),
            ephemeral_storage: Some(a.worker_ephemeral_storage.clone()),
            ray_start_params: to_map(&a.worker_ray_start_params),
            node_selectors: worker_selectors,
            replicas: a.shape.worker_replicas,
        }]),
    })
}

/// The cluster a `--file` describes, its name and namespace reconciled with
/// the command line's as KubeRay does.
fn config_from_file(
    a: &CreateClusterArgs,
    file: &std::path::Path,
    namespace: &str,
    namespace_from_flag: bool,
    explicit: &BTreeSet<String>,
) -> Result<ClusterConfig> {
    let refused: Vec<String> = explicit
        .iter()
        .filter(|id| !ALLOWED_WITH_FILE.contains(&id.as_str()) && id.as_str() != "name")
        .map(|id| flag_name(id))
        .collect();
    if !refused.is_empty() {
        bail!(
            "the following flags are incompatible with --file: [{}]",
            refused.join(" ")
        );
    }
    let mut config = ClusterConfig::from_file(file)
        .map_err(|e| anyhow::anyhow!("failed to parse config file: {e:#}"))?;
    config
        .validate()
        .map_err(|e| anyhow::anyhow!("failed to validate config file: {e:#}"))?;
    if let Some(n) = config.name.as_deref().filter(|n| !n.is_empty())
        && n != a.name
    {
        bail!(
            "the cluster name in the config file {n:?} does not match the cluster name {:?}. You must use the same name to perform this operation",
            a.name
        );
    }
    config.name = Some(a.name.clone());
    match config.namespace.as_deref().filter(|n| !n.is_empty()) {
        Some(n) if namespace_from_flag && n != namespace => bail!(
            "the namespace in the config file {n:?} does not match the namespace {namespace:?}. You must pass --namespace={n} to perform this operation"
        ),
        Some(_) => {}
        None => config.namespace = Some(namespace.to_string()),
    }
    Ok(config)
}

async fn cluster(
    flags: &KubeFlags,
    a: CreateClusterArgs,
    explicit: &BTreeSet<String>,
) -> Result<()> {
    // A dry run needs no API server, but the namespace comes from the kubeconfig.
    let (kube, namespace, from_flag) = if a.dry_run {
        let ns = match &flags.namespace {
            Some(n) => n.clone(),
            None => match flags.connect().await {
                Ok(k) => k.namespace,
                Err(_) => "default".into(),
            },
        };
        (None, ns, flags.namespace.is_some())
    } else {
        let k = flags.connect().await?;
        let (ns, f) = (k.namespace.clone(), k.namespace_from_flag);
        (Some(k), ns, f)
    };
    let config = match &a.file {
        Some(file) => config_from_file(&a, file, &namespace, from_flag, explicit)?,
        None => config_from_flags(&a, &namespace, explicit)?,
    };
    let object = config.ray_cluster();
    let Some(kube) = kube else {
        println!("{}", to_yaml(&object));
        return Ok(());
    };
    let ns = config.namespace.clone().unwrap_or_default();
    let name = config.name.clone().unwrap_or_default();
    let api: Api<RayCluster> = Api::namespaced(kube.client.clone(), &ns);
    match api.get_opt(&name).await {
        Ok(Some(_)) => bail!("the Ray cluster {name} in namespace {ns} already exists"),
        Ok(None) => {}
        Err(e) => bail!("failed to create Ray cluster: {}", describe(&e)),
    }
    let created = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER),
            &Patch::Apply(&object),
        )
        .await
        .map_err(|e| anyhow::anyhow!("failed to create Ray cluster: {}", describe(&e)))?;
    let created_name = kube::ResourceExt::name_any(&created);
    println!("Created Ray cluster: {created_name}");
    if a.wait {
        wait::cluster_provisioned(&kube, &ns, &created_name, a.timeout).await?;
        println!("Ray cluster {created_name} is provisioned");
    }
    Ok(())
}

/// The worker group `create workergroup` appends, as KubeRay builds it
/// (CPU and memory as requests and limits, GPUs and TPUs only when not zero).
pub fn worker_group_spec(a: &CreateWorkerGroupArgs) -> Value {
    let mut resources = json!({"cpu": a.worker_cpu, "memory": a.worker_memory});
    for (name, v) in [(NVIDIA_GPU, &a.worker_gpu), (GOOGLE_TPU, &a.worker_tpu)] {
        if kuberay_operator::ray::quantity::parse(v).is_some_and(|x| x != 0.0) {
            resources[name] = json!(v);
        }
    }
    let image = if a.image.is_empty() {
        format!("{DEFAULT_IMAGE_REPO}:{}", a.ray_version)
    } else {
        a.image.clone()
    };
    let mut spec = json!({
        "containers": [{
            "name": "ray-worker",
            "image": image,
            "resources": {"requests": resources, "limits": resources},
        }],
    });
    let selectors = to_map(&a.worker_node_selectors);
    if !selectors.is_empty() {
        spec["nodeSelector"] = json!(selectors);
    }
    json!({
        "groupName": a.group,
        "replicas": a.worker_replicas,
        "numOfHosts": a.num_of_hosts,
        "minReplicas": a.worker_min_replicas,
        "maxReplicas": a.worker_max_replicas,
        "rayStartParams": to_map(&a.worker_ray_start_params),
        "template": {"spec": spec},
    })
}

fn check_workergroup(a: &CreateWorkerGroupArgs) -> Result<()> {
    validate_tpu(
        Some(&a.worker_tpu),
        Some(a.num_of_hosts),
        &to_map(&a.worker_node_selectors),
    )?;
    for (name, v) in [
        ("worker-cpu", &a.worker_cpu),
        ("worker-gpu", &a.worker_gpu),
        ("worker-tpu", &a.worker_tpu),
        ("worker-memory", &a.worker_memory),
    ] {
        validate_quantity(v, name)?;
    }
    Ok(())
}

async fn workergroup(flags: &KubeFlags, a: CreateWorkerGroupArgs) -> Result<()> {
    check_workergroup(&a)?;
    let kube: Kube = flags.connect().await?;
    let ns = &kube.namespace;
    let api: Api<RayCluster> = Api::namespaced(kube.client.clone(), ns);
    let rc = api
        .get(&a.ray_cluster)
        .await
        .map_err(|e| anyhow::anyhow!("error getting Ray cluster: {}", describe(&e)))?;
    let groups = rc.spec.worker_group_specs.clone().unwrap_or_default();
    if groups.iter().any(|g| g.group_name == a.group) {
        bail!(
            "worker group {} already exists in Ray cluster {ns}/{}",
            a.group,
            a.ray_cluster
        );
    }
    let group = worker_group_spec(&a);
    crate::update::cluster(&kube, &a.ray_cluster, |rc| {
        let spec = &mut rc.data["spec"];
        match spec["workerGroupSpecs"].as_array_mut() {
            Some(groups) => groups.push(group),
            None => spec["workerGroupSpecs"] = json!([group]),
        }
        Ok(())
    })
    .await
    .map_err(|e| anyhow::anyhow!("error updating Ray cluster with new worker group: {e:#}"))?;
    println!(
        "Updated Ray cluster {ns}/{} with new worker group",
        a.ray_cluster
    );
    Ok(())
}
