//! GCS fault tolerance as every part of the operator must read it alike:
//! whether it is on, which backend keeps the GCS state (an external Redis
//! or the embedded RocksDB store on a volume), where that state lives, and
//! how long a deleted cluster may wait for its Redis keys to be removed.

use std::time::Duration;

use kube::ResourceExt;
use kuberay_api::names::{
    EXTERNAL_STORAGE_NAMESPACE_ANNOTATION, FT_ENABLED_ANNOTATION,
    GCS_FT_DELETION_TIMEOUT_ANNOTATION, gcs_storage_claim_name,
};
use kuberay_api::raycluster::{GcsBackend, GcsStorage, GcsStorageDeletionPolicy};
use kuberay_api::{RayCluster, RayClusterSpec};

/// How long a deleted cluster keeps its Redis clean-up finalizer when the
/// annotation does not say: KubeRay's default.
pub const DEFAULT_DELETION_TIMEOUT: Duration = Duration::from_secs(300);

/// Where the head finds Redis (`RAY_REDIS_ADDRESS`).
pub const REDIS_ADDRESS_ENV: &str = "RAY_REDIS_ADDRESS";

fn annotation<'a>(cluster: &'a RayCluster, key: &str) -> Option<&'a str> {
    cluster
        .metadata
        .annotations
        .as_ref()?
        .get(key)
        .map(String::as_str)
}

/// On through `gcsFaultToleranceOptions` or the older `ray.io/ft-enabled`.
pub fn enabled(cluster: &RayCluster) -> bool {
    cluster.spec.gcs_fault_tolerance_options.is_some()
        || annotation(cluster, FT_ENABLED_ANNOTATION)
            .is_some_and(|v| v.eq_ignore_ascii_case("true"))
}

/// The embedded RocksDB backend (Redis when unset, for older manifests).
pub fn embedded(spec: &RayClusterSpec) -> bool {
    spec.gcs_fault_tolerance_options
        .as_ref()
        .and_then(|o| o.backend.as_ref())
        .is_some_and(|b| *b == GcsBackend::Rocksdb)
}

/// GCS fault tolerance on, with its state in Redis: the clusters whose keys
/// need cleaning up after them.
pub fn uses_redis(cluster: &RayCluster) -> bool {
    enabled(cluster) && !embedded(&cluster.spec)
}

/// GCS fault tolerance on, with its state on a volume.
pub fn uses_volume(cluster: &RayCluster) -> bool {
    enabled(cluster) && embedded(&cluster.spec)
}

/// The key namespace in Redis: the options' name, else the annotation's,
/// else the cluster's UID (so two clusters never share keys).
pub fn storage_namespace(cluster: &RayCluster) -> String {
    let from_options = cluster
        .spec
        .gcs_fault_tolerance_options
        .as_ref()
        .and_then(|o| o.external_storage_namespace.clone())
        .filter(|n| !n.is_empty());
    from_options
        .or_else(|| annotation(cluster, EXTERNAL_STORAGE_NAMESPACE_ANNOTATION).map(String::from))
        .unwrap_or_else(|| cluster.metadata.uid.clone().unwrap_or_default())
}

/// The Redis address, from the options or (older form) the head's env.
pub fn redis_address(cluster: &RayCluster) -> Option<String> {
    let spec = &cluster.spec;
    if let Some(a) = spec
        .gcs_fault_tolerance_options
        .as_ref()
        .and_then(|o| o.redis_address.clone())
    {
        return Some(a);
    }
    let head = spec
        .head_group_spec
        .template
        .spec
        .as_ref()?
        .containers
        .first()?;
    head.env
        .iter()
        .flatten()
        .find(|e| e.name == REDIS_ADDRESS_ENV)?
        .value
        .clone()
}

/// The embedded store's volume settings, if any.
pub fn storage(cluster: &RayCluster) -> Option<&GcsStorage> {
    cluster
        .spec
        .gcs_fault_tolerance_options
        .as_ref()?
        .storage
        .as_ref()
}

/// The claim the user named in `storage.claimName`, if any.
fn claim_name(cluster: &RayCluster) -> Option<&str> {
    storage(cluster)?
        .claim_name
        .as_deref()
        .filter(|c| !c.is_empty())
}

/// The claim the embedded store lives on.
pub fn storage_claim(cluster: &RayCluster) -> String {
    gcs_storage_claim_name(&cluster.name_any(), claim_name(cluster))
}

/// Whether the user brought the claim (the operator then never touches it).
pub fn user_claim(cluster: &RayCluster) -> bool {
    claim_name(cluster).is_some()
}

/// `deletionPolicy: Retain`: the operator's claim outlives the cluster.
pub fn retain_storage(cluster: &RayCluster) -> bool {
    storage(cluster).and_then(|s| s.deletion_policy.as_ref())
        == Some(&GcsStorageDeletionPolicy::Retain)
}

/// How long after the deletion request the clean-up may hold the cluster:
/// the annotation's seconds, or KubeRay's default when it is absent or not
/// a positive number (validation reports such a value while the cluster
/// lives; a cluster being deleted is not validated, and must still go).
pub fn deletion_timeout(cluster: &RayCluster) -> Duration {
    annotation(cluster, GCS_FT_DELETION_TIMEOUT_ANNOTATION)
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|s| *s > 0)
        .map_or(DEFAULT_DELETION_TIMEOUT, Duration::from_secs)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(v: serde_json::Value) -> RayCluster {
        let mut base = json!({"apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": "c", "uid": "u-1"},
            "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head"}]}}}}});
        json_patch(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    fn json_patch(base: &mut serde_json::Value, v: serde_json::Value) {
        match (base, v) {
            (serde_json::Value::Object(b), serde_json::Value::Object(p)) => {
                for (k, v) in p {
                    json_patch(b.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (b, v) => *b = v,
        }
    }

    #[test]
    fn the_options_or_the_annotation_turn_it_on_and_choose_where_state_lives() {
        let off = cluster(json!({}));
        assert!(!enabled(&off) && !uses_redis(&off));
        let old = cluster(
            json!({"metadata": {"annotations": {"ray.io/ft-enabled": "TRUE",
            "ray.io/external-storage-namespace": "ns-a"}}}),
        );
        assert!(uses_redis(&old));
        assert_eq!(storage_namespace(&old), "ns-a");
        let redis =
            cluster(json!({"spec": {"gcsFaultToleranceOptions": {"redisAddress": "r:6379"}}}));
        assert!(uses_redis(&redis) && !uses_volume(&redis));
        assert_eq!(storage_namespace(&redis), "u-1");
        assert_eq!(redis_address(&redis).as_deref(), Some("r:6379"));
        let rocks = cluster(json!({"spec": {"gcsFaultToleranceOptions": {"backend": "rocksdb"}}}));
        assert!(uses_volume(&rocks) && !uses_redis(&rocks));
        assert_eq!(storage_claim(&rocks), "c-gcs-pvc");
        assert!(!user_claim(&rocks) && !retain_storage(&rocks));
        let own = cluster(
            json!({"spec": {"gcsFaultToleranceOptions": {"backend": "rocksdb",
            "storage": {"claimName": "mine", "deletionPolicy": "Retain"}}}}),
        );
        assert_eq!(storage_claim(&own), "mine");
        assert!(user_claim(&own) && retain_storage(&own));
    }

    #[test]
    fn the_deletion_timeout_falls_back_to_kuberays_default() {
        let with = |v: &str| {
            cluster(json!({"metadata": {"annotations": {"ray.io/gcs-ft-deletion-timeout": v}}}))
        };
        assert_eq!(deletion_timeout(&with("30")), Duration::from_secs(30));
        assert_eq!(deletion_timeout(&with("0")), DEFAULT_DELETION_TIMEOUT);
        assert_eq!(deletion_timeout(&with("soon")), DEFAULT_DELETION_TIMEOUT);
        assert_eq!(
            deletion_timeout(&cluster(json!({}))),
            DEFAULT_DELETION_TIMEOUT
        );
    }

    #[test]
    fn the_old_form_reads_the_address_from_the_head_env() {
        let c = cluster(
            json!({"metadata": {"annotations": {"ray.io/ft-enabled": "true"}},
            "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head",
            "env": [{"name": "RAY_REDIS_ADDRESS", "value": "redis:6379"}]}]}}}}}),
        );
        assert_eq!(redis_address(&c).as_deref(), Some("redis:6379"));
    }
}
