//! Head and worker pods, built from the group's pod template the way KubeRay
//! builds them: labels, annotations, the `ray start` command, injected
//! environment, ports, probes, `/dev/shm`, the GCS wait init container and
//! the autoscaler sidecar. Pure: a validated cluster in, a Pod out.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{ContainerPort, Pod, PodTemplateSpec};
use kuberay_api::features::RAY_MULTI_HOST_INDEXING;
use kuberay_api::names::*;
use kuberay_api::raycluster::AutoscalerVersion;
use kuberay_api::{RayCluster, RayClusterSpec};

pub mod command;
mod env;
mod probes;
mod volumes;
mod wait_gcs;

use crate::ray::{autoscaler, gcs_ft};

use crate::runtime::config::{Config, KUBERAY_VERSION};
use command::Node;
pub(crate) use env::{auth_env, push_env, push_env_if_absent, push_field_env};
use env::{head_ft, token_auth_pod};
use probes::add_probes;
use volumes::{add_ray_logs_volume, add_shared_memory};
use wait_gcs::wait_gcs_container;

/// Which kind of object asked for the cluster (from `ray.io/originated-from-crd`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Creator {
    RayCluster,
    RayJob,
    RayService,
}

impl Creator {
    pub fn of(cluster: &RayCluster) -> Self {
        match cluster
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(ORIGINATED_FROM_CRD_LABEL))
            .map(String::as_str)
        {
            Some("RayJob") => Self::RayJob,
            Some("RayService") => Self::RayService,
            _ => Self::RayCluster,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Self::RayCluster => "RayCluster",
            Self::RayJob => "RayJob",
            Self::RayService => "RayService",
        }
    }
}

/// Everything pod building needs besides the group.
pub struct PodContext<'a> {
    pub cluster: &'a RayCluster,
    pub cfg: &'a Config,
    /// Hash of the pod-shaping spec (head pods carry it for `Recreate`).
    pub spec_hash: &'a str,
}

impl PodContext<'_> {
    fn name(&self) -> &str {
        self.cluster.metadata.name.as_deref().unwrap_or_default()
    }
    fn namespace(&self) -> &str {
        self.cluster
            .metadata
            .namespace
            .as_deref()
            .unwrap_or("default")
    }
    fn spec(&self) -> &RayClusterSpec {
        &self.cluster.spec
    }
    fn head_service(&self) -> String {
        let h = self.spec().head_group_spec.head_service.as_ref();
        head_service_name(
            self.name(),
            h.and_then(|s| s.metadata.as_ref())
                .and_then(|m| m.name.as_deref()),
        )
    }
    fn fqdn(&self) -> String {
        head_service_fqdn(
            &self.head_service(),
            self.namespace(),
            &self.cfg.cluster_domain,
        )
    }
    fn cluster_annotation(&self, key: &str) -> Option<&str> {
        self.cluster
            .metadata
            .annotations
            .as_ref()?
            .get(key)
            .map(String::as_str)
    }
}

/// A worker's place in its group.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkerSlot {
    pub group: usize,
    /// `ray.io/worker-group-replica-index` (multi-host indexing).
    pub replica_index: Option<i32>,
    /// `ray.io/worker-group-replica-name`, for multi-host replicas.
    pub replica_name: Option<String>,
    /// `ray.io/replica-host-index`, for multi-host replicas.
    pub host_index: Option<i32>,
}

/// The head pod.
pub fn head_pod(ctx: &PodContext) -> Pod {
    let spec = ctx.spec();
    let head = &spec.head_group_spec;
    let mut t = head.template.clone();
    let name = ctx.name();
    let meta = &mut t.metadata.get_or_insert_with(Default::default);
    if ctx.cfg.deterministic_head_pod_name {
        meta.name =
            Some(format!("{}-{HEAD}", name.chars().take(50).collect::<String>()).to_lowercase());
    } else {
        meta.name = None;
        meta.generate_name = Some(pod_generate_name(name, HEAD));
    }
    let labels = pod_labels(ctx, &t, HEAD, HEAD_GROUP, head.labels.as_ref());
    let mut annotations = t
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let ft = gcs_ft::enabled(ctx.cluster);
    annotations.insert(FT_ENABLED_ANNOTATION.into(), ft.to_string());
    if gcs_ft::uses_redis(ctx.cluster) {
        annotations.insert(
            EXTERNAL_STORAGE_NAMESPACE_ANNOTATION.into(),
            gcs_ft::storage_namespace(ctx.cluster),
        );
    }
    annotations.insert(UPGRADE_HASH_ANNOTATION.into(), ctx.spec_hash.to_string());
    annotations.insert(KUBERAY_VERSION_ANNOTATION.into(), KUBERAY_VERSION.into());
    let mut pod = finish_metadata(ctx, t, labels, annotations);
    let pod_spec = pod.spec.get_or_insert_with(Default::default);
    let autoscaling = spec.enable_in_tree_autoscaling == Some(true);
    if autoscaling {
        let v2 = is_autoscaler_v2(spec);
        if v2 {
            pod_spec.restart_policy = Some("Never".into());
        }
        if let Some(version) = spec
            .autoscaler_options
            .as_ref()
            .and_then(|o| o.version.as_ref())
        {
            let value = (*version == AutoscalerVersion::V2).to_string();
            push_env(
                &mut pod_spec.containers[0],
                "RAY_enable_autoscaler_v2",
                &value,
            );
        }
        pod_spec.service_account_name = Some(check_name(
            &autoscaler::service_account_name(ctx.cluster),
            50,
        ));
        pod_spec
            .containers
            .push(autoscaler::container(ctx.cluster, ctx.cfg));
        add_ray_logs_volume(pod_spec);
    }
    if ft {
        head_ft(ctx, pod_spec);
    }
    let node = Node::Head;
    let params = command::params(
        spec,
        &node,
        head.ray_start_params.as_ref(),
        head.resources.as_ref(),
        head.labels.as_ref(),
        &pod_spec.containers[0],
    );
    build_ray_container(ctx, &mut pod, &node, &params, HEAD);
    pod
}

/// A worker pod of group `slot.group`.
pub fn worker_pod(ctx: &PodContext, slot: &WorkerSlot) -> Pod {
    let spec = ctx.spec();
    let group = &spec.worker_group_specs.as_ref().expect("validated")[slot.group];
    let mut t = group.template.clone();
    let meta = &mut t.metadata.get_or_insert_with(Default::default);
    meta.name = None;
    meta.generate_name = Some(pod_generate_name(
        &format!("{}-{}", ctx.name(), group.group_name),
        WORKER,
    ));
    let mut labels = pod_labels(ctx, &t, WORKER, &group.group_name, group.labels.as_ref());
    if ctx.cfg.gates.enabled(RAY_MULTI_HOST_INDEXING) {
        if let Some(i) = slot.replica_index {
            labels.insert(REPLICA_INDEX_LABEL.into(), i.to_string());
        }
        if let (Some(n), Some(h)) = (&slot.replica_name, slot.host_index) {
            labels.insert(REPLICA_NAME_LABEL.into(), n.clone());
            labels.insert(HOST_INDEX_LABEL.into(), h.to_string());
        }
    }
    let annotations = t
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    let mut pod = finish_metadata(ctx, t, labels, annotations);
    let fqdn = ctx.fqdn();
    let port = command::head_port(spec);
    let pod_spec = pod.spec.get_or_insert_with(Default::default);
    if spec.enable_in_tree_autoscaling == Some(true) && is_autoscaler_v2(spec) {
        pod_spec.restart_policy = Some("Never".into());
    }
    // The init container copies the user's environment, before injection.
    if ctx.cfg.init_container_injection {
        let wait = wait_gcs_container(&pod_spec.containers[0], &fqdn, &port, ctx.cfg.login_shell);
        pod_spec
            .init_containers
            .get_or_insert_with(Vec::new)
            .push(wait);
    }
    // Workers wait for a restarted head's GCS for 10 minutes instead of
    // Ray's 60 s, which a head pod rescheduled elsewhere often needs.
    if gcs_ft::enabled(ctx.cluster) {
        push_env_if_absent(
            &mut pod_spec.containers[0],
            "RAY_gcs_rpc_server_reconnect_timeout_s",
            "600",
        );
    }
    let address = format!("{fqdn}:{port}");
    let node = Node::Worker {
        head_address: &address,
    };
    let params = command::params(
        spec,
        &node,
        group.ray_start_params.as_ref(),
        group.resources.as_ref(),
        group.labels.as_ref(),
        &pod_spec.containers[0],
    );
    build_ray_container(ctx, &mut pod, &node, &params, WORKER);
    pod
}

/// KubeRay's labels, with the user's (template labels, then the group's
/// `labels`) on top, except the three keys the operator selects pods by.
fn pod_labels(
    ctx: &PodContext,
    t: &PodTemplateSpec,
    node_type: &str,
    group: &str,
    group_labels: Option<&BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let name = ctx.name();
    let mut labels = BTreeMap::from([
        (IS_RAY_NODE_LABEL.to_string(), "yes".to_string()),
        (IDENTIFIER_LABEL.to_string(), identifier(name, node_type)),
        (APP_NAME_LABEL.to_string(), APP_NAME.to_string()),
        (CREATED_BY_LABEL.to_string(), CREATED_BY.to_string()),
    ]);
    let user = t
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    for (k, v) in user
        .into_iter()
        .chain(group_labels.cloned().unwrap_or_default())
    {
        labels.insert(k, v);
    }
    labels.insert(CLUSTER_LABEL.into(), name.into());
    labels.insert(NODE_TYPE_LABEL.into(), node_type.into());
    labels.insert(GROUP_LABEL.into(), group.into());
    if Creator::of(ctx.cluster) == Creator::RayService {
        labels.insert(SERVE_LABEL.into(), (node_type == WORKER).to_string());
    }
    labels
}

fn finish_metadata(
    ctx: &PodContext,
    t: PodTemplateSpec,
    mut labels: BTreeMap<String, String>,
    mut annotations: BTreeMap<String, String>,
) -> Pod {
    for (k, v) in &ctx.cfg.default_pod_labels {
        labels.entry(k.clone()).or_insert_with(|| v.clone());
    }
    for (k, v) in &ctx.cfg.default_pod_annotations {
        annotations.entry(k.clone()).or_insert_with(|| v.clone());
    }
    if ctx
        .cluster_annotation(OVERWRITE_CONTAINER_CMD_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
    {
        annotations.insert(OVERWRITE_CONTAINER_CMD_ANNOTATION.into(), "true".into());
    }
    let mut meta = t.metadata.unwrap_or_default();
    meta.namespace = Some(ctx.namespace().to_string());
    meta.labels = Some(labels);
    meta.annotations = (!annotations.is_empty()).then_some(annotations);
    Pod {
        metadata: meta,
        spec: t.spec,
        status: None,
    }
}

/// What every Ray container gets: the command, environment, metrics port,
/// probes and shared memory.
fn build_ray_container(
    ctx: &PodContext,
    pod: &mut Pod,
    node: &Node,
    params: &BTreeMap<String, String>,
    node_type: &str,
) {
    let spec = ctx.spec();
    let fqdn = ctx.fqdn();
    let port = command::head_port(spec);
    let overwrite = pod
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(OVERWRITE_CONTAINER_CMD_ANNOTATION))
        .is_some_and(|v| v.eq_ignore_ascii_case("true"));
    let ray_start = command::ray_start_line(node, params);
    let creator = Creator::of(ctx.cluster);
    let is_head = node_type == HEAD;
    let pod_spec = pod.spec.get_or_insert_with(Default::default);
    let sidecars = if is_head {
        &ctx.cfg.head_sidecars
    } else {
        &ctx.cfg.worker_sidecars
    };
    pod_spec.containers.extend(sidecars.iter().cloned());
    let c = &mut pod_spec.containers[0];
    for e in &ctx.cfg.default_envs {
        if !c.env.iter().flatten().any(|x| x.name == e.name) {
            c.env.get_or_insert_with(Vec::new).push(e.clone());
        }
    }
    command::wrap_container_command(c, &ray_start, overwrite, ctx.cfg.login_shell);
    if !c
        .ports
        .iter()
        .flatten()
        .any(|p| p.name.as_deref() == Some(METRICS_PORT.0))
    {
        c.ports.get_or_insert_with(Vec::new).push(ContainerPort {
            name: Some(METRICS_PORT.0.into()),
            container_port: METRICS_PORT.1,
            ..Default::default()
        });
    }
    auth_env(spec, ctx.name(), c);
    if !is_head {
        push_env(c, "FQ_RAY_IP", &fqdn);
        push_env(c, "RAY_IP", &ctx.head_service());
    }
    push_field_env(
        c,
        "RAY_CLUSTER_NAME",
        &format!("metadata.labels['{CLUSTER_LABEL}']"),
    );
    push_field_env(c, "RAY_CLUSTER_NAMESPACE", "metadata.namespace");
    push_field_env(c, "RAY_CLOUD_INSTANCE_ID", "metadata.name");
    push_field_env(
        c,
        "RAY_NODE_TYPE_NAME",
        &format!("metadata.labels['{GROUP_LABEL}']"),
    );
    push_env(c, "KUBERAY_GEN_RAY_START_CMD", &ray_start);
    push_env_if_absent(c, "RAY_PORT", &port);
    if creator == Creator::RayService {
        // Fail fast on a dead node so Serve reroutes requests quickly.
        push_env_if_absent(c, "RAY_timeout_ms_task_wait_for_death_info", "0");
        push_env_if_absent(c, "RAY_gcs_server_request_timeout_seconds", "5");
        push_env_if_absent(c, "RAY_SERVE_KV_TIMEOUT_S", "5");
    }
    let ip = if is_head {
        "127.0.0.1".to_string()
    } else {
        fqdn.clone()
    };
    push_env_if_absent(c, "RAY_ADDRESS", &format!("{ip}:{port}"));
    push_env_if_absent(c, "RAY_USAGE_STATS_KUBERAY_IN_USE", "1");
    if is_head {
        let tags = format!(
            "kuberay_version={KUBERAY_VERSION};kuberay_crd={}",
            creator.as_str()
        );
        push_env(c, "RAY_USAGE_STATS_EXTRA_TAGS", &tags);
    }
    push_env_if_absent(c, "RAY_DASHBOARD_ENABLE_K8S_DISK_USAGE", "1");
    if ctx.cfg.probes_injection {
        // A head's proxy is checked by the RayService controller instead (its
        // `ray.io/serve` label): Serve starts only once the head is ready.
        add_probes(
            spec,
            c,
            params,
            is_head,
            creator == Creator::RayService && !is_head,
        );
    }
    if !params.contains_key("plasma-directory") {
        add_shared_memory(pod_spec);
    }
    // Every init container learns where the head is.
    for ic in pod_spec.init_containers.iter_mut().flatten() {
        push_env(ic, "FQ_RAY_IP", &fqdn);
        push_env(ic, "RAY_IP", &ctx.head_service());
    }
    token_auth_pod(spec, ctx.name(), pod_spec);
}

pub(crate) fn is_autoscaler_v2(spec: &RayClusterSpec) -> bool {
    spec.autoscaler_options
        .as_ref()
        .and_then(|o| o.version.as_ref())
        == Some(&AutoscalerVersion::V2)
}
