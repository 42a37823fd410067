//! The `--file` of `create cluster`: KubeRay's cluster configuration format
//! (kebab-case keys), read over KubeRay's defaults and checked as KubeRay
//! checks it. The same type carries what the flags say.

use std::collections::BTreeMap;

use anyhow::{Context as _, Result, bail};
use serde::{Deserialize, Deserializer};

use crate::generation::{DEFAULT_GROUP, RAY_VERSION, default_image};
use crate::validation::{validate_quantity, validate_tpu};

/// A cluster as the plugin's flags or `--file` describe it (the file's
/// keys are kebab-case, as KubeRay's).
#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ClusterConfig {
    #[serde(default, deserialize_with = "scalar")]
    pub namespace: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub labels: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ray_version: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub image: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub service_account: Option<String>,
    #[serde(default)]
    pub head: Option<Head>,
    #[serde(default)]
    pub gke: Option<Gke>,
    #[serde(default)]
    pub autoscaler: Option<Autoscaler>,
    #[serde(default)]
    pub worker_groups: Option<Vec<WorkerGroup>>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Head {
    #[serde(default, deserialize_with = "scalar")]
    pub cpu: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub gpu: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub memory: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ephemeral_storage: Option<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub ray_start_params: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub node_selectors: BTreeMap<String, String>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct WorkerGroup {
    #[serde(default, deserialize_with = "scalar")]
    pub name: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub cpu: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub gpu: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub tpu: Option<String>,
    #[serde(default)]
    pub num_of_hosts: Option<i32>,
    #[serde(default, deserialize_with = "scalar")]
    pub memory: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ephemeral_storage: Option<String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub ray_start_params: BTreeMap<String, String>,
    #[serde(default, deserialize_with = "scalar_map")]
    pub node_selectors: BTreeMap<String, String>,
    #[serde(default)]
    pub replicas: i32,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Autoscaler {
    #[serde(default)]
    pub version: Option<AutoscalerVersion>,
}

#[derive(Deserialize, Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum AutoscalerVersion {
    V1,
    V2,
}

impl AutoscalerVersion {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::V1 => "v1",
            Self::V2 => "v2",
        }
    }
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Gke {
    #[serde(default)]
    pub gcsfuse: Option<GcsFuse>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GcsFuse {
    #[serde(default, deserialize_with = "scalar")]
    pub mount_options: Option<String>,
    #[serde(default)]
    pub disable_metrics: Option<bool>,
    #[serde(default)]
    pub gcsfuse_metadata_prefetch_on_mount: Option<bool>,
    #[serde(default)]
    pub skip_csi_bucket_access_check: Option<bool>,
    #[serde(default)]
    pub resources: Option<GcsFuseResources>,
    #[serde(default, deserialize_with = "scalar")]
    pub bucket_name: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub mount_path: Option<String>,
}

#[derive(Deserialize, Debug, Clone, Default, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct GcsFuseResources {
    #[serde(default, deserialize_with = "scalar")]
    pub cpu: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub memory: Option<String>,
    #[serde(default, deserialize_with = "scalar")]
    pub ephemeral_storage: Option<String>,
}

/// YAML scalars of any type as text (`cpu: 3` is `"3"`), as KubeRay's YAML
/// decoder reads them into its string fields.
fn scalar_text(v: serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::Null => None,
        serde_yaml::Value::String(s) => Some(s),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        other => Some(
            serde_yaml::to_string(&other)
                .unwrap_or_default()
                .trim()
                .to_string(),
        ),
    }
}

fn scalar<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(scalar_text(serde_yaml::Value::deserialize(d)?))
}

fn scalar_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, String>, D::Error> {
    let raw: Option<BTreeMap<String, serde_yaml::Value>> = Option::deserialize(d)?;
    Ok(raw
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, scalar_text(v).unwrap_or_default()))
        .collect())
}

impl ClusterConfig {
    /// What a `--file` starts from before its keys apply: KubeRay's
    /// defaults (a 2-CPU, 4Gi head; one `default-group` worker of the same size).
    fn with_defaults() -> Self {
        Self {
            ray_version: Some(RAY_VERSION.into()),
            image: Some(default_image()),
            head: Some(Head {
                cpu: Some("2".into()),
                memory: Some("4Gi".into()),
                ..Default::default()
            }),
            worker_groups: Some(vec![WorkerGroup {
                name: Some(DEFAULT_GROUP.into()),
                replicas: 1,
                cpu: Some("2".into()),
                memory: Some("4Gi".into()),
                ..Default::default()
            }]),
            ..Default::default()
        }
    }

    /// Reads a `--file`: its keys over KubeRay's defaults. As in KubeRay,
    /// `head` keys merge with the default head, while `worker-groups`
    /// replaces the default group.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        if !path.exists() {
            bail!("config file {} does not exist", path.display());
        }
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read config file {}", path.display()))?;
        let file: ClusterConfig = serde_yaml::from_str(&text).context("failed to parse YAML")?;
        let mut config = Self::with_defaults();
        config.merge(file);
        Ok(config)
    }

    fn merge(&mut self, file: ClusterConfig) {
        let keep = |mine: &mut Option<String>, theirs: Option<String>| {
            if theirs.is_some() {
                *mine = theirs;
            }
        };
        keep(&mut self.namespace, file.namespace);
        keep(&mut self.name, file.name);
        keep(&mut self.ray_version, file.ray_version);
        keep(&mut self.image, file.image);
        keep(&mut self.service_account, file.service_account);
        self.labels.extend(file.labels);
        self.annotations.extend(file.annotations);
        if let Some(h) = file.head {
            let head = self.head.get_or_insert_with(Default::default);
            keep(&mut head.cpu, h.cpu);
            keep(&mut head.gpu, h.gpu);
            keep(&mut head.memory, h.memory);
            keep(&mut head.ephemeral_storage, h.ephemeral_storage);
            head.ray_start_params.extend(h.ray_start_params);
            head.node_selectors.extend(h.node_selectors);
        }
        if file.gke.is_some() {
            self.gke = file.gke;
        }
        if file.autoscaler.is_some() {
            self.autoscaler = file.autoscaler;
        }
        if file.worker_groups.is_some() {
            self.worker_groups = file.worker_groups;
        }
    }

    /// KubeRay's checks of a `--file`: every quantity parses and is not
    /// negative, TPU groups name their node selectors, gcsfuse has its bucket
    /// and mount path.
    pub fn validate(&self) -> Result<()> {
        if let Some(h) = &self.head {
            for (name, v) in [
                ("cpu", &h.cpu),
                ("gpu", &h.gpu),
                ("memory", &h.memory),
                ("ephemeral-storage", &h.ephemeral_storage),
            ] {
                if let Some(v) = v {
                    validate_quantity(v, name)?;
                }
            }
        }
        for (i, g) in self.worker_groups.iter().flatten().enumerate() {
            for (name, v) in [
                ("cpu", &g.cpu),
                ("gpu", &g.gpu),
                ("tpu", &g.tpu),
                ("memory", &g.memory),
                ("ephemeral-storage", &g.ephemeral_storage),
            ] {
                if let Some(v) = v {
                    validate_quantity(v, &format!("{name} (worker group {i})"))?;
                }
            }
            validate_tpu(g.tpu.as_deref(), g.num_of_hosts, &g.node_selectors)?;
        }
        if let Some(f) = self.gke.as_ref().and_then(|g| g.gcsfuse.as_ref()) {
            if f.bucket_name.as_deref().unwrap_or("").is_empty() {
                bail!(".gcsfuse.bucket-name is required");
            }
            if f.mount_path.as_deref().unwrap_or("").is_empty() {
                bail!(".gcsfuse.mount-path is required");
            }
            if let Some(r) = &f.resources {
                for (name, v) in [
                    ("cpu", &r.cpu),
                    ("memory", &r.memory),
                    ("ephemeral-storage", &r.ephemeral_storage),
                ] {
                    if let Some(v) = v {
                        validate_quantity(v, &format!("gcsfuse.resources.{name}"))?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_file_merges_the_head_but_replaces_the_worker_groups() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(
            &path,
            "head:\n  cpu: 3\nworker-groups:\n- cpu: 1\n- replicas: 2\n",
        )
        .unwrap();
        let c = ClusterConfig::from_file(&path).unwrap();
        let head = c.head.as_ref().unwrap();
        assert_eq!(head.cpu.as_deref(), Some("3"));
        assert_eq!(head.memory.as_deref(), Some("4Gi"));
        let spec = c.cluster_spec();
        let groups = spec["workerGroupSpecs"].as_array().unwrap();
        assert_eq!(groups[0]["groupName"], "default-group");
        assert_eq!(groups[1]["groupName"], "default-group-1");
        assert_eq!(
            groups[0]["template"]["spec"]["containers"][0]["resources"],
            json!({"requests": {"cpu": "1"}, "limits": {}})
        );
        assert_eq!(
            groups[1]["template"]["spec"]["containers"][0]["resources"],
            json!({"requests": {}, "limits": {}})
        );
        assert_eq!(groups[1]["replicas"], 2);
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "foo: bar\n").unwrap();
        let e = ClusterConfig::from_file(&path).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field `foo`"), "{e:#}");
    }

    #[test]
    fn kuberays_complete_sample_builds_gcsfuse_volumes_and_annotations() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, SAMPLE_COMPLETE).unwrap();
        let c = ClusterConfig::from_file(&path).unwrap();
        c.validate().unwrap();
        let rc = c.ray_cluster();
        assert_eq!(rc["metadata"]["name"], "sample-create-cluster-complete");
        let head = &rc["spec"]["headGroupSpec"]["template"];
        assert_eq!(
            head["metadata"]["annotations"]["gke-gcsfuse/memory-limit"],
            "256Mi"
        );
        assert_eq!(
            head["spec"]["volumes"][0]["csi"]["volumeAttributes"],
            json!({
            "bucketName": "my-bucket", "mountOptions": "implicit-dirs,uid=1000,gid=100",
            "disableMetrics": "true", "gcsfuseMetadataPrefetchOnMount": "false", "skipCSIBucketAccessCheck": "false"})
        );
        assert_eq!(
            head["spec"]["serviceAccountName"],
            "my-service-account@my-project.iam.gserviceaccount.com"
        );
        assert_eq!(
            rc["spec"]["headGroupSpec"]["rayStartParams"]["metrics-export-port"],
            "8082"
        );
        let gpu = &rc["spec"]["workerGroupSpecs"][1];
        assert_eq!(gpu["groupName"], "gpu-workers");
        assert_eq!(
            gpu["template"]["spec"]["containers"][0]["resources"]["limits"],
            json!({"memory": "6Gi", "ephemeral-storage": "13Gi", "nvidia.com/gpu": "1"})
        );
        assert_eq!(
            gpu["template"]["spec"]["containers"][0]["volumeMounts"][0]["mountPath"],
            "/mnt/cluster_storage"
        );
        assert_eq!(rc["spec"]["autoscalerOptions"]["version"], "v2");
    }

    /// KubeRay's `config/samples/create-cluster.complete.yaml`.
    const SAMPLE_COMPLETE: &str = r#"
namespace: my-namespace
name: sample-create-cluster-complete
labels: {foo: bar}
annotations: {dead: beef}
ray-version: 2.52.0
image: rayproject/ray:2.52.0
service-account: my-service-account@my-project.iam.gserviceaccount.com
head:
  cpu: 3
  memory: 5Gi
  gpu: 0
  ephemeral-storage: 8Gi
  ray-start-params: {metrics-export-port: 8082}
  node-selectors: {foo: bar, baz: qux}
worker-groups:
  - name: cpu-workers
    replicas: 1
    cpu: 2
    memory: 4Gi
    gpu: 0
    ephemeral-storage: 12Gi
    ray-start-params: {metrics-export-port: 8081}
    node-selectors: {hi: there}
  - name: gpu-workers
    replicas: 1
    cpu: 3
    memory: 6Gi
    gpu: 1
    ephemeral-storage: 13Gi
    ray-start-params: {metrics-export-port: 8081}
autoscaler: {version: v2}
gke:
  gcsfuse:
    bucket-name: my-bucket
    mount-path: /mnt/cluster_storage
    mount-options: "implicit-dirs,uid=1000,gid=100"
    resources: {cpu: 250m, memory: 256Mi, ephemeral-storage: 5Gi}
    disable-metrics: true
    gcsfuse-metadata-prefetch-on-mount: false
    skip-csi-bucket-access-check: false
"#;
}
