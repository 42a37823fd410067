//! The objects `create cluster` and `job submit` build from a
//! [`ClusterConfig`], field for field as KubeRay's plugin builds them (its
//! apply configurations).
//!
//! Objects are plain JSON because they are sent as server-side apply
//! patches: only the fields set here are owned by the plugin's field manager.

use std::collections::BTreeMap;

use serde_json::{Map, Value, json};

use crate::config::{ClusterConfig, GcsFuse};

/// Ray version and image KubeRay v1.7's plugin defaults to.
pub const RAY_VERSION: &str = "2.52.0";
pub const DEFAULT_IMAGE_REPO: &str = "rayproject/ray";
pub const NVIDIA_GPU: &str = "nvidia.com/gpu";
pub const GOOGLE_TPU: &str = "google.com/tpu";
pub const DEFAULT_GROUP: &str = "default-group";
const GCSFUSE_VOLUME: &str = "cluster-storage";
const GCSFUSE_DRIVER: &str = "gcsfuse.csi.storage.gke.io";

pub fn default_image() -> String {
    format!("{DEFAULT_IMAGE_REPO}:{RAY_VERSION}")
}

impl ClusterConfig {
    /// The RayCluster, as KubeRay's plugin applies it.
    pub fn ray_cluster(&self) -> Value {
        let mut metadata = Map::new();
        metadata.insert("name".into(), json!(self.name.clone().unwrap_or_default()));
        metadata.insert(
            "namespace".into(),
            json!(self.namespace.clone().unwrap_or_default()),
        );
        if !self.labels.is_empty() {
            metadata.insert("labels".into(), json!(self.labels));
        }
        if !self.annotations.is_empty() {
            metadata.insert("annotations".into(), json!(self.annotations));
        }
        json!({
            "apiVersion": "ray.io/v1",
            "kind": "RayCluster",
            "metadata": metadata,
            "spec": self.cluster_spec(),
        })
    }

    /// The `rayClusterSpec` / `spec` of the generated objects.
    pub fn cluster_spec(&self) -> Value {
        let image = self.image.clone().unwrap_or_default();
        let head = self.head.clone().unwrap_or_default();
        let head_container = json!({
            "name": "ray-head",
            "image": image,
            "resources": {
                "requests": resources(&[
                    ("cpu", &head.cpu), ("memory", &head.memory),
                    ("ephemeral-storage", &head.ephemeral_storage), (NVIDIA_GPU, &head.gpu),
                ]),
                "limits": resources(&[
                    ("memory", &head.memory), ("ephemeral-storage", &head.ephemeral_storage),
                    (NVIDIA_GPU, &head.gpu),
                ]),
            },
            "ports": [
                {"containerPort": 6379, "name": "gcs-server"},
                {"containerPort": 8265, "name": "dashboard"},
                {"containerPort": 10001, "name": "client"},
            ],
        });
        let mut head_group = json!({"template": {"spec": {"containers": [head_container]}}});
        put_map(&mut head_group, "rayStartParams", &head.ray_start_params);
        put_map(
            &mut head_group["template"]["spec"],
            "nodeSelector",
            &head.node_selectors,
        );
        let service_account = self.service_account.clone().filter(|s| !s.is_empty());
        if let Some(sa) = &service_account {
            head_group["template"]["spec"]["serviceAccountName"] = json!(sa);
        }

        let groups: Vec<Value> = self
            .worker_groups
            .iter()
            .flatten()
            .enumerate()
            .map(|(i, g)| {
                let name = match g.name.as_deref().filter(|n| !n.is_empty()) {
                    Some(n) => n.to_string(),
                    None if i == 0 => DEFAULT_GROUP.to_string(),
                    None => format!("{DEFAULT_GROUP}-{i}"),
                };
                let container = json!({
                    "name": "ray-worker",
                    "image": image,
                    "resources": {
                        "requests": resources(&[
                            ("cpu", &g.cpu), ("memory", &g.memory),
                            ("ephemeral-storage", &g.ephemeral_storage),
                            (NVIDIA_GPU, &g.gpu), (GOOGLE_TPU, &g.tpu),
                        ]),
                        "limits": resources(&[
                            ("memory", &g.memory), ("ephemeral-storage", &g.ephemeral_storage),
                            (NVIDIA_GPU, &g.gpu), (GOOGLE_TPU, &g.tpu),
                        ]),
                    },
                });
                let mut group = json!({
                    "groupName": name,
                    "replicas": g.replicas,
                    "template": {"spec": {"containers": [container]}},
                });
                put_map(&mut group, "rayStartParams", &g.ray_start_params);
                put_map(
                    &mut group["template"]["spec"],
                    "nodeSelector",
                    &g.node_selectors,
                );
                if let Some(n) = g.num_of_hosts {
                    group["numOfHosts"] = json!(n);
                }
                if let Some(sa) = &service_account {
                    group["template"]["spec"]["serviceAccountName"] = json!(sa);
                }
                group
            })
            .collect();

        let mut spec = json!({
            "rayVersion": self.ray_version.clone().unwrap_or_default(),
            "headGroupSpec": head_group,
            "workerGroupSpecs": groups,
        });
        if let Some(v) = self.autoscaler.as_ref().and_then(|a| a.version) {
            spec["enableInTreeAutoscaling"] = json!(true);
            spec["autoscalerOptions"] = json!({"version": v.as_str()});
        }
        if let Some(f) = self.gke.as_ref().and_then(|g| g.gcsfuse.as_ref()) {
            add_gcsfuse(&mut spec, f);
        }
        spec
    }
}

/// A resource list of the quantities that are set and not zero (sent even
/// when empty, as KubeRay's apply configuration sends it).
fn resources(entries: &[(&str, &Option<String>)]) -> Value {
    let mut m = Map::new();
    for (name, v) in entries {
        let Some(v) = v.as_deref().filter(|v| !v.is_empty()) else {
            continue;
        };
        if kuberay_operator::ray::quantity::parse(v).is_some_and(|x| x != 0.0) {
            m.insert((*name).to_string(), json!(v));
        }
    }
    Value::Object(m)
}

/// Sets a map field only when it has entries (an empty map is not sent).
fn put_map(obj: &mut Value, key: &str, map: &BTreeMap<String, String>) {
    if !map.is_empty() {
        obj[key] = json!(map);
    }
}

fn add_gcsfuse(spec: &mut Value, f: &GcsFuse) {
    let mut attributes = Map::new();
    attributes.insert(
        "bucketName".into(),
        json!(f.bucket_name.clone().unwrap_or_default()),
    );
    if let Some(o) = f.mount_options.as_deref().filter(|o| !o.is_empty()) {
        attributes.insert("mountOptions".into(), json!(o));
    }
    for (key, v) in [
        ("disableMetrics", f.disable_metrics),
        (
            "gcsfuseMetadataPrefetchOnMount",
            f.gcsfuse_metadata_prefetch_on_mount,
        ),
        ("skipCSIBucketAccessCheck", f.skip_csi_bucket_access_check),
    ] {
        if let Some(b) = v {
            attributes.insert(key.into(), json!(b.to_string()));
        }
    }
    let volume = json!({"name": GCSFUSE_VOLUME, "csi": {"driver": GCSFUSE_DRIVER, "volumeAttributes": attributes}});
    let mount =
        json!({"name": GCSFUSE_VOLUME, "mountPath": f.mount_path.clone().unwrap_or_default()});
    let mut annotations = Map::new();
    if let Some(r) = &f.resources {
        let set = |a: &mut Map<String, Value>, keys: &[&str], v: &Option<String>| {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                for k in keys {
                    a.insert((*k).to_string(), json!(v));
                }
            }
        };
        set(&mut annotations, &["gke-gcsfuse/cpu-request"], &r.cpu);
        set(
            &mut annotations,
            &["gke-gcsfuse/memory-limit", "gke-gcsfuse/memory-request"],
            &r.memory,
        );
        set(
            &mut annotations,
            &[
                "gke-gcsfuse/ephemeral-storage-limit",
                "gke-gcsfuse/ephemeral-storage-request",
            ],
            &r.ephemeral_storage,
        );
    }
    let add = |t: &mut Value| {
        push(&mut t["spec"]["volumes"], volume.clone());
        push(
            &mut t["spec"]["containers"][0]["volumeMounts"],
            mount.clone(),
        );
        // KubeRay sets the annotations map even when it is empty.
        t["metadata"]["annotations"] = Value::Object(annotations.clone());
    };
    add(&mut spec["headGroupSpec"]["template"]);
    if let Some(groups) = spec["workerGroupSpecs"].as_array_mut() {
        for g in groups {
            add(&mut g["template"]);
        }
    }
}

fn push(list: &mut Value, v: Value) {
    if !list.is_array() {
        *list = json!([]);
    }
    list.as_array_mut().expect("an array").push(v);
}

/// The RayJob `job submit` applies when no `-f` is given: InteractiveMode,
/// the entrypoint (ignored by the operator, kept for KubeRay 1.2's sake),
/// the cluster, and the submission id as `jobId`.
pub struct RayJobObject<'a> {
    pub name: &'a str,
    pub namespace: &'a str,
    pub entrypoint: &'a str,
    pub submission_id: &'a str,
    pub ttl_seconds_after_finished: i32,
    pub shutdown_after_job_finishes: bool,
    pub cluster: ClusterConfig,
}

impl RayJobObject<'_> {
    pub fn ray_job(&self) -> Value {
        json!({
            "apiVersion": "ray.io/v1",
            "kind": "RayJob",
            "metadata": {"name": self.name, "namespace": self.namespace},
            "spec": {
                "submissionMode": "InteractiveMode",
                "entrypoint": self.entrypoint,
                "ttlSecondsAfterFinished": self.ttl_seconds_after_finished,
                "shutdownAfterJobFinishes": self.shutdown_after_job_finishes,
                "jobId": self.submission_id,
                "rayClusterSpec": self.cluster.cluster_spec(),
            },
        })
    }
}

/// YAML as KubeRay prints a generated object (keys sorted).
pub fn to_yaml(v: &Value) -> String {
    serde_yaml::to_string(v).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Autoscaler, AutoscalerVersion, Head, WorkerGroup};

    fn yaml(s: &str) -> Value {
        serde_yaml::from_str(s).unwrap()
    }

    /// KubeRay's `TestConvertRayClusterApplyConfigToYaml`.
    #[test]
    fn a_cluster_from_flags_matches_kuberays_generation_test() {
        let config = ClusterConfig {
            name: Some("test-ray-cluster".into()),
            namespace: Some("default".into()),
            labels: BTreeMap::from([
                ("purple".into(), "finch".into()),
                ("red-tailed".into(), "hawk".into()),
            ]),
            annotations: BTreeMap::from([
                ("american".into(), "goldfinch".into()),
                ("piping".into(), "plover".into()),
            ]),
            autoscaler: Some(Autoscaler {
                version: Some(AutoscalerVersion::V1),
            }),
            ray_version: Some(RAY_VERSION.into()),
            image: Some(default_image()),
            head: Some(Head {
                cpu: Some("1".into()),
                memory: Some("5Gi".into()),
                gpu: Some("1".into()),
                ray_start_params: BTreeMap::from([("num-cpus".into(), "0".into())]),
                ..Default::default()
            }),
            worker_groups: Some(vec![WorkerGroup {
                replicas: 3,
                num_of_hosts: Some(2),
                cpu: Some("2".into()),
                memory: Some("10Gi".into()),
                gpu: Some("0".into()),
                tpu: Some("0".into()),
                ..Default::default()
            }]),
            ..Default::default()
        };
        let expected = yaml(
            r#"
apiVersion: ray.io/v1
kind: RayCluster
metadata:
  annotations: {american: goldfinch, piping: plover}
  labels: {purple: finch, red-tailed: hawk}
  name: test-ray-cluster
  namespace: default
spec:
  enableInTreeAutoscaling: true
  autoscalerOptions: {version: v1}
  headGroupSpec:
    rayStartParams: {num-cpus: "0"}
    template:
      spec:
        containers:
        - image: rayproject/ray:2.52.0
          name: ray-head
          ports:
          - {containerPort: 6379, name: gcs-server}
          - {containerPort: 8265, name: dashboard}
          - {containerPort: 10001, name: client}
          resources:
            limits: {memory: 5Gi, nvidia.com/gpu: "1"}
            requests: {cpu: "1", memory: 5Gi, nvidia.com/gpu: "1"}
  rayVersion: 2.52.0
  workerGroupSpecs:
  - groupName: default-group
    replicas: 3
    numOfHosts: 2
    template:
      spec:
        containers:
        - image: rayproject/ray:2.52.0
          name: ray-worker
          resources:
            limits: {memory: 10Gi}
            requests: {cpu: "2", memory: 10Gi}
"#,
        );
        let mut config = config;
        config.worker_groups.as_mut().unwrap()[0].name = None;
        assert_eq!(config.ray_cluster(), expected);
    }
}
