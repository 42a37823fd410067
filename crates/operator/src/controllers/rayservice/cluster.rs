//! The RayClusters of a RayService: built from `rayClusterConfig` with
//! KubeRay's labels and annotations, and compared with a running cluster to
//! decide between leaving it, updating it in place and preparing a new one.
//!
//! The decision compares the specs themselves, not a stored hash: fields
//! that nobody set are absent from both sides, so a later version of this
//! operator (new fields, another serialiser) or a cluster made by KubeRay's
//! Go operator compares equal as long as the user's spec did not change,
//! and no upgrade brings an unwanted new cluster. The hash annotation is
//! still written, for tools that read it.

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kuberay_api::names::{
    KUBERAY_VERSION_ANNOTATION, ORIGINATED_FROM_CR_NAME_LABEL, ORIGINATED_FROM_CRD_LABEL,
    random_suffix,
};
use kuberay_api::rayservice::RayServiceUpgradeType;
use kuberay_api::{RayCluster, RayClusterSpec, RayService};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::kit::applier::owner_reference;
use crate::runtime::config::KUBERAY_VERSION;

/// KubeRay's annotation: a hash of the spec without replica counts.
pub const HASH_ANNOTATION: &str = "ray.io/hash-without-replicas-and-workers-to-delete";
/// KubeRay's annotation: how many worker groups the cluster was made with.
pub const NUM_WORKER_GROUPS_ANNOTATION: &str = "ray.io/num-worker-groups";
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// A new cluster name, `<service>-<5 characters>` as KubeRay names them.
pub fn new_cluster_name(service: &str) -> String {
    format!("{service}-{}", random_suffix())
}

/// The RayCluster `name` of `svc`: its spec, the service's labels and
/// annotations, KubeRay's origin labels, hash, worker-group count and
/// version annotations, and a controller reference.
pub fn ray_cluster(svc: &RayService, name: &str) -> RayCluster {
    let spec = svc.spec.ray_cluster_config.clone();
    let mut labels = svc.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        ORIGINATED_FROM_CR_NAME_LABEL.into(),
        svc.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(ORIGINATED_FROM_CRD_LABEL.into(), "RayService".into());
    let mut annotations: BTreeMap<String, String> =
        svc.metadata.annotations.clone().unwrap_or_default();
    annotations.remove(LAST_APPLIED);
    annotations.insert(HASH_ANNOTATION.into(), spec_hash(&spec));
    annotations.insert(
        NUM_WORKER_GROUPS_ANNOTATION.into(),
        spec.worker_group_specs
            .as_ref()
            .map_or(0, Vec::len)
            .to_string(),
    );
    annotations.insert(KUBERAY_VERSION_ANNOTATION.into(), KUBERAY_VERSION.into());
    RayCluster {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: svc.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: Some(annotations),
            owner_references: Some(vec![owner_reference(svc)]),
            ..Default::default()
        },
        spec,
        status: None,
    }
}

/// What a spec change asks of a running cluster.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Plan {
    /// Nothing that matters changed.
    Same,
    /// Worker groups added at the end, or replica counts changed without
    /// the autoscaler: the cluster is updated where it stands.
    InPlace,
    /// Anything else: a new cluster (a zero-downtime upgrade).
    NewCluster,
}

/// How `goal` (the RayService's `rayClusterConfig`) relates to `running`.
pub fn plan(goal: &RayClusterSpec, running: &RayClusterSpec) -> Plan {
    let have = shape(running, false);
    if shape(goal, false) == have {
        let autoscaled = running.enable_in_tree_autoscaling == Some(true);
        if !autoscaled && shape(goal, true) != shape(running, true) {
            return Plan::InPlace;
        }
        return Plan::Same;
    }
    let groups = running.worker_group_specs.as_ref().map_or(0, Vec::len);
    let goal_groups = goal.worker_group_specs.as_ref().map_or(0, Vec::len);
    if goal_groups > groups {
        let mut prefix = goal.clone();
        if let Some(w) = prefix.worker_group_specs.as_mut() {
            w.truncate(groups);
        }
        if shape(&prefix, false) == have {
            return Plan::InPlace;
        }
    }
    Plan::NewCluster
}

/// Whether `cluster` must be replaced to match the spec, and what to say
/// when that is needed but zero-downtime upgrades are off
/// (`upgradeStrategy.type: None`, or no type and `ENABLE_ZERO_DOWNTIME`
/// false: `zero_downtime`).
pub fn needs_new_cluster(
    svc: &RayService,
    cluster: &RayCluster,
    zero_downtime: bool,
) -> (bool, Option<String>) {
    if plan(&svc.spec.ray_cluster_config, &cluster.spec) != Plan::NewCluster {
        return (false, None);
    }
    let strategy = svc
        .spec
        .upgrade_strategy
        .as_ref()
        .and_then(|s| s.type_.as_ref());
    let off = match strategy {
        Some(RayServiceUpgradeType::None) => Some("upgradeStrategy.type is None"),
        Some(_) => None,
        None if !zero_downtime => Some("the operator runs with ENABLE_ZERO_DOWNTIME=false"),
        None => None,
    };
    match off {
        None => (true, None),
        Some(why) => (
            false,
            Some(format!(
                "rayClusterConfig changed in a way that needs a new RayCluster, but zero-downtime upgrades are off ({why}): the RayCluster {} is kept as it is",
                cluster.metadata.name.as_deref().unwrap_or_default()
            )),
        ),
    }
}

/// The spec as the upgrade decision sees it: without what the autoscaler,
/// Kueue or the RayService's own suspend change on a live cluster
/// (replicas, `workersToDelete`, tolerations, scheduling gates, suspend),
/// without `upgradeStrategy`, and with unset or empty values dropped.
fn shape(spec: &RayClusterSpec, keep_replicas: bool) -> Value {
    let mut s = spec.clone();
    s.suspend = None;
    s.upgrade_strategy = None;
    if let Some(t) = s.head_group_spec.template.spec.as_mut() {
        t.tolerations = None;
        t.scheduling_gates = None;
    }
    for g in s.worker_group_specs.iter_mut().flatten() {
        if !keep_replicas {
            g.replicas = None;
            g.min_replicas = None;
            g.max_replicas = None;
        }
        if let Some(st) = g.scale_strategy.as_mut() {
            st.workers_to_delete = None;
        }
        if let Some(t) = g.template.spec.as_mut() {
            t.tolerations = None;
            t.scheduling_gates = None;
        }
    }
    canonical(serde_json::to_value(&s).expect("serialisable"))
}

/// Drops nulls, empty objects and empty lists, recursively; numbers compare
/// as numbers.
fn canonical(v: Value) -> Value {
    match v {
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, v)| (k, canonical(v)))
                .filter(|(_, v)| !is_empty(v))
                .collect(),
        ),
        Value::Array(a) => Value::Array(a.into_iter().map(canonical).collect()),
        Value::Number(n) => n
            .as_f64()
            .and_then(serde_json::Number::from_f64)
            .map_or(Value::Number(n), Value::Number),
        other => other,
    }
}

fn is_empty(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// The hash annotation: SHA-256 of the canonical spec without replicas,
/// base32hex (KubeRay's alphabet) and cut to KubeRay's 32 characters.
pub fn spec_hash(spec: &RayClusterSpec) -> String {
    const ALPHABET: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUV";
    let digest = Sha256::digest(shape(spec, false).to_string().as_bytes());
    let mut out = String::new();
    let (mut acc, mut bits) = (0u32, 0);
    for byte in digest.iter().take(20) {
        acc = (acc << 8) | u32::from(*byte);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> RayClusterSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    const BASE: &str = r#"
rayVersion: "2.52.0"
headGroupSpec:
  rayStartParams: {}
  template: {spec: {containers: [{name: ray-head, image: "rayproject/ray:2.52.0"}]}}
workerGroupSpecs:
- groupName: small
  replicas: 1
  minReplicas: 1
  maxReplicas: 5
  rayStartParams: {}
  template: {spec: {containers: [{name: ray-worker, image: "rayproject/ray:2.52.0"}]}}
"#;

    fn edit(f: impl FnOnce(&mut RayClusterSpec)) -> RayClusterSpec {
        let mut s = spec(BASE);
        f(&mut s);
        s
    }

    #[test]
    fn a_new_image_needs_a_new_cluster() {
        let goal = edit(|s| {
            s.head_group_spec.template.spec.as_mut().unwrap().containers[0].image =
                Some("rayproject/ray:2.53.0".into())
        });
        assert_eq!(plan(&goal, &spec(BASE)), Plan::NewCluster);
        assert_ne!(spec_hash(&goal), spec_hash(&spec(BASE)));
    }

    #[test]
    fn replicas_change_in_place_unless_the_autoscaler_owns_them() {
        let goal = edit(|s| s.worker_group_specs.as_mut().unwrap()[0].replicas = Some(3));
        assert_eq!(plan(&goal, &spec(BASE)), Plan::InPlace);
        let running = edit(|s| s.enable_in_tree_autoscaling = Some(true));
        let goal = edit(|s| {
            s.enable_in_tree_autoscaling = Some(true);
            s.worker_group_specs.as_mut().unwrap()[0].replicas = Some(3);
        });
        assert_eq!(plan(&goal, &running), Plan::Same);
    }

    #[test]
    fn a_worker_group_added_at_the_end_is_added_in_place() {
        let goal = edit(|s| {
            let mut g = s.worker_group_specs.as_ref().unwrap()[0].clone();
            g.group_name = "large".into();
            s.worker_group_specs.as_mut().unwrap().push(g);
        });
        assert_eq!(plan(&goal, &spec(BASE)), Plan::InPlace);
        let removed = edit(|s| s.worker_group_specs = None);
        assert_eq!(plan(&removed, &spec(BASE)), Plan::NewCluster);
    }

    #[test]
    fn unset_and_empty_fields_and_what_others_change_do_not_count() {
        let running = edit(|s| {
            s.suspend = Some(false);
            s.head_group_spec.ray_start_params = Some(Default::default());
            s.head_group_spec
                .template
                .spec
                .as_mut()
                .unwrap()
                .tolerations = Some(vec![]);
            s.worker_group_specs.as_mut().unwrap()[0].scale_strategy = Some(Default::default());
        });
        assert_eq!(plan(&spec(BASE), &running), Plan::Same);
        assert_eq!(spec_hash(&spec(BASE)), spec_hash(&running));
        assert_eq!(spec_hash(&spec(BASE)).len(), 32);
    }

    #[test]
    fn the_cluster_carries_kuberays_labels_annotations_and_owner() {
        let svc: RayService = serde_yaml::from_str(&format!(
            "apiVersion: ray.io/v1\nkind: RayService\nmetadata: {{name: web, namespace: ns, uid: u-1, labels: {{team: ml}}, annotations: {{note: x}}}}\nspec:\n  rayClusterConfig:\n{}",
            BASE.lines().map(|l| format!("    {l}\n")).collect::<String>()
        ))
        .unwrap();
        let name = new_cluster_name("web");
        assert!(name.starts_with("web-") && name.len() == 9, "{name}");
        let c = ray_cluster(&svc, &name);
        let labels = c.metadata.labels.as_ref().unwrap();
        assert_eq!(labels["ray.io/originated-from-crd"], "RayService");
        assert_eq!(labels["ray.io/originated-from-cr-name"], "web");
        assert_eq!(labels["team"], "ml");
        let ann = c.metadata.annotations.as_ref().unwrap();
        assert_eq!(ann["ray.io/num-worker-groups"], "1");
        assert_eq!(ann["note"], "x");
        assert_eq!(
            ann[HASH_ANNOTATION],
            spec_hash(&svc.spec.ray_cluster_config)
        );
        let owner = &c.metadata.owner_references.as_ref().unwrap()[0];
        assert_eq!(
            (owner.kind.as_str(), owner.uid.as_str()),
            ("RayService", "u-1")
        );
    }

    #[test]
    fn a_new_cluster_only_when_zero_downtime_upgrades_are_on() {
        let yaml = |strategy: &str| {
            format!(
                "apiVersion: ray.io/v1\nkind: RayService\nmetadata: {{name: web}}\nspec:\n{strategy}  rayClusterConfig:\n{}",
                BASE.lines()
                    .map(|l| format!("    {l}\n"))
                    .collect::<String>()
            )
        };
        let svc: RayService = serde_yaml::from_str(&yaml("")).unwrap();
        let mut running = ray_cluster(&svc, "web-abcde");
        running.spec.ray_version = Some("2.51.0".into());
        assert_eq!(needs_new_cluster(&svc, &running, true), (true, None));
        let (new, why) = needs_new_cluster(&svc, &running, false);
        assert!(!new && why.unwrap().contains("ENABLE_ZERO_DOWNTIME=false"));
        let none: RayService =
            serde_yaml::from_str(&yaml("  upgradeStrategy: {type: None}\n")).unwrap();
        let (new, why) = needs_new_cluster(&none, &running, true);
        assert!(!new && why.unwrap().contains("upgradeStrategy.type is None"));
        let explicit: RayService =
            serde_yaml::from_str(&yaml("  upgradeStrategy: {type: NewCluster}\n")).unwrap();
        assert_eq!(needs_new_cluster(&explicit, &running, false), (true, None));
        let same = ray_cluster(&svc, "web-abcde");
        assert_eq!(needs_new_cluster(&svc, &same, true), (false, None));
    }
}
