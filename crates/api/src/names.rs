//! Names, label keys and annotation keys that KubeRay's users and tools
//! (the Ray autoscaler, `kubectl ray`, Kueue, dashboards) rely on. Part of
//! the API contract, so they live here, next to the types.

/// `ray.io/cluster`: the RayCluster a pod or service belongs to.
pub const CLUSTER_LABEL: &str = "ray.io/cluster";
/// `ray.io/node-type`: `head`, `worker` or `redis-cleanup`.
pub const NODE_TYPE_LABEL: &str = "ray.io/node-type";
/// `ray.io/group`: `headgroup` or the worker group's name.
pub const GROUP_LABEL: &str = "ray.io/group";
/// `ray.io/identifier`: `<cluster>-head` or `<cluster>-worker`.
pub const IDENTIFIER_LABEL: &str = "ray.io/identifier";
/// `ray.io/is-ray-node`: `yes` on every Ray pod.
pub const IS_RAY_NODE_LABEL: &str = "ray.io/is-ray-node";
pub const APP_NAME_LABEL: &str = "app.kubernetes.io/name";
pub const CREATED_BY_LABEL: &str = "app.kubernetes.io/created-by";
/// Value of `app.kubernetes.io/name`.
pub const APP_NAME: &str = "kuberay";
/// Value of `app.kubernetes.io/created-by`.
pub const CREATED_BY: &str = "kuberay-operator";
/// The head group's value of [`GROUP_LABEL`].
pub const HEAD_GROUP: &str = "headgroup";

/// Index of a worker replica within its group (multi-host indexing).
pub const REPLICA_INDEX_LABEL: &str = "ray.io/worker-group-replica-index";
/// Name shared by the pods of one multi-host replica.
pub const REPLICA_NAME_LABEL: &str = "ray.io/worker-group-replica-name";
/// Index of a pod within its multi-host replica.
pub const HOST_INDEX_LABEL: &str = "ray.io/replica-host-index";
/// `true` on pods that serve Ray Serve traffic (RayService).
pub const SERVE_LABEL: &str = "ray.io/serve";
/// Name and kind of the object that created a RayCluster or service.
pub const ORIGINATED_FROM_CR_NAME_LABEL: &str = "ray.io/originated-from-cr-name";
pub const ORIGINATED_FROM_CRD_LABEL: &str = "ray.io/originated-from-crd";
/// On each RayJob a RayCronJob creates: the RayCronJob's name.
pub const CRONJOB_NAME_LABEL: &str = "ray.io/cronjob-name";
/// On each RayJob a RayCronJob creates: the tick it runs for (RFC 3339, UTC).
pub const CRONJOB_SCHEDULED_TIMESTAMP_ANNOTATION: &str = "ray.io/cronjob-scheduled-timestamp";
/// On the headless service of multi-host groups.
pub const HEADLESS_SERVICE_LABEL: &str = "ray.io/headless-worker-svc";

/// Pod annotation: whether GCS fault tolerance is on (head only).
pub const FT_ENABLED_ANNOTATION: &str = "ray.io/ft-enabled";
/// Leave the container command alone; only export the generated `ray start`.
pub const OVERWRITE_CONTAINER_CMD_ANNOTATION: &str = "ray.io/overwrite-container-cmd";
/// Cluster annotation asking for the serve service.
pub const ENABLE_SERVE_SERVICE_ANNOTATION: &str = "ray.io/enable-serve-service";
pub const EXTERNAL_STORAGE_NAMESPACE_ANNOTATION: &str = "ray.io/external-storage-namespace";
/// Cluster annotation: seconds after the deletion request when the Redis
/// clean-up finalizer is removed even if the clean-up has not finished.
pub const GCS_FT_DELETION_TIMEOUT_ANNOTATION: &str = "ray.io/gcs-ft-deletion-timeout";
/// Held by a RayCluster with Redis-backed GCS fault tolerance until its
/// keys are deleted from Redis (or the clean-up gives up).
pub const GCS_FT_REDIS_CLEANUP_FINALIZER: &str = "ray.io/gcs-ft-redis-cleanup-finalizer";
/// The head's volume for the embedded (rocksdb) GCS store, and where it is
/// mounted.
pub const GCS_STORAGE_VOLUME: &str = "gcs-storage";
pub const GCS_STORAGE_MOUNT_PATH: &str = "/data/gcs";
/// Head pod annotation: hash of the pod-shaping spec, for `Recreate` upgrades.
pub const UPGRADE_HASH_ANNOTATION: &str = "ray.io/upgrade-strategy-recreate-hash";
/// Head pod annotation: the operator version that created it.
pub const KUBERAY_VERSION_ANNOTATION: &str = "ray.io/kuberay-version";
/// Cluster annotation: do not recreate a head that went away after the
/// cluster was provisioned (RayJob sidecar mode).
pub const DISABLE_PROVISIONED_HEAD_RESTART_ANNOTATION: &str =
    "ray.io/disable-provisioned-head-restart";

/// Node types, the values of [`NODE_TYPE_LABEL`].
pub const HEAD: &str = "head";
pub const WORKER: &str = "worker";
pub const REDIS_CLEANUP: &str = "redis-cleanup";

/// Ports and their names on the head service.
pub const CLIENT_PORT: (&str, i32) = ("client", 10001);
pub const GCS_PORT: (&str, i32) = ("gcs-server", 6379);
pub const DASHBOARD_PORT: (&str, i32) = ("dashboard", 8265);
pub const METRICS_PORT: (&str, i32) = ("metrics", 8080);
pub const SERVE_PORT: (&str, i32) = ("serve", 8000);
pub const DASHBOARD_AGENT_PORT: i32 = 52365;

/// `<cluster>-head-svc`, or the name the user gave `headGroupSpec.headService`.
pub fn head_service_name(cluster: &str, override_name: Option<&str>) -> String {
    match override_name.filter(|n| !n.is_empty()) {
        Some(n) => n.to_string(),
        None => format!("{cluster}-head-svc"),
    }
}

/// `<cluster>-serve-svc`.
pub fn serve_service_name(cluster: &str) -> String {
    format!("{cluster}-serve-svc")
}

/// `<cluster>-headless`: peer discovery of multi-host workers.
pub fn headless_service_name(cluster: &str) -> String {
    format!("{cluster}-headless")
}

/// The claim behind the embedded GCS store: the user's, else `<cluster>-gcs-pvc`.
pub fn gcs_storage_claim_name(cluster: &str, claim: Option<&str>) -> String {
    match claim.filter(|c| !c.is_empty()) {
        Some(c) => c.to_string(),
        None => format!("{cluster}-gcs-pvc"),
    }
}

/// `<cluster>-redis-cleanup`, kept a valid label value as KubeRay trims it.
pub fn redis_cleanup_job_name(cluster: &str) -> String {
    check_label(&format!("{cluster}-{REDIS_CLEANUP}"))
}

/// `<cluster>-head-ingress`.
pub fn ingress_name(cluster: &str) -> String {
    format!("{cluster}-head-ingress")
}

/// Fully qualified DNS name of the head service.
pub fn head_service_fqdn(service: &str, namespace: &str, domain: &str) -> String {
    format!("{service}.{namespace}.svc.{domain}")
}

/// Keeps the last `max` characters and makes the first one a letter, as
/// KubeRay does for names built from user input (service accounts, roles).
pub fn check_name(s: &str, max: usize) -> String {
    let start = s.len().saturating_sub(max);
    let mut out: String = s[start..].to_string();
    if out.starts_with(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation()) {
        out.replace_range(..1, "r");
    }
    out
}

/// A label value built from names: at most 63 characters (the last ones),
/// not starting with punctuation.
pub fn check_label(s: &str) -> String {
    let start = s.len().saturating_sub(63);
    let mut out = s[start..].to_string();
    if out.starts_with(|c: char| c.is_ascii_punctuation()) {
        out.replace_range(..1, "r");
    }
    out
}

/// `generateName` prefix of pods: the first 50 characters of `prefix`, then
/// `-<node type>-`, lower-cased; the API server appends five characters.
pub fn pod_generate_name(prefix: &str, node_type: &str) -> String {
    let cut: String = prefix.chars().take(50).collect();
    format!("{cut}-{node_type}-").to_lowercase()
}

/// The value of [`IDENTIFIER_LABEL`].
pub fn identifier(cluster: &str, node_type: &str) -> String {
    check_label(&format!("{cluster}-{node_type}"))
}

/// Five characters as KubeRay's random suffixes use (no vowels, no
/// look-alikes): for multi-host replica names and RayJob cluster names.
pub fn random_suffix() -> String {
    use std::hash::{BuildHasher, Hasher};
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_nanos(),
    );
    let mut n = h.finish();
    (0..5)
        .map(|_| {
            let c = ALPHABET[(n % ALPHABET.len() as u64) as usize] as char;
            n /= ALPHABET.len() as u64;
            c
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_names_follow_kuberay() {
        assert_eq!(head_service_name("rc", None), "rc-head-svc");
        assert_eq!(head_service_name("rc", Some("custom")), "custom");
        assert_eq!(serve_service_name("rc"), "rc-serve-svc");
        assert_eq!(pod_generate_name("My-Cluster", "head"), "my-cluster-head-");
        let long = "x".repeat(60);
        assert_eq!(
            pod_generate_name(&long, "worker").len(),
            50 + "-worker-".len()
        );
        assert_eq!(check_name("1abc", 50), "rabc");
        assert_eq!(check_name(&format!("{}tail", "a".repeat(60)), 50).len(), 50);
        assert!(check_name(&format!("{}tail", "a".repeat(60)), 50).ends_with("tail"));
        assert_eq!(identifier("rc", HEAD), "rc-head");
    }
}
