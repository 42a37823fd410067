//! A host-path volume provisioner for the real nodes: the default
//! StorageClass, whose claims get a directory of the control plane's own and
//! a `hostPath` PersistentVolume pre-bound to them. Every real node runs on
//! this machine, so one directory serves whichever node the pod lands on.
//!
//! It is test infrastructure, like Rancher's local-path provisioner on kind:
//! enough for the embedded GCS store's `<cluster>-gcs-pvc` to be bound and
//! mounted for real. It runs on a thread of the process that started the
//! control plane and polls once a second (a handful of claims at most; a
//! watch would buy nothing but reconnect logic). Released volumes with the
//! `Delete` policy lose their directory and their object.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::{
    HostPathVolumeSource, ObjectReference, PersistentVolume, PersistentVolumeClaim,
    PersistentVolumeSpec,
};
use k8s_openapi::api::storage::v1::StorageClass;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, ObjectMeta, Patch, PatchParams, PostParams};

use crate::Error;

/// The class every claim without one gets (the API server's
/// DefaultStorageClass admission fills it in).
pub const STORAGE_CLASS: &str = "local-hostpath";
/// The provisioner the class names and the annotation on each volume.
pub const PROVISIONER: &str = "kuberay-rs.local/hostpath";
const PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
const POLL: Duration = Duration::from_secs(1);

/// The running provisioner; dropping it stops the thread.
pub struct HostPathProvisioner {
    stop: Arc<AtomicBool>,
}

impl Drop for HostPathProvisioner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// The default StorageClass: immediate binding (every node sees the same
/// directories, so there is no node to wait for) and deletion of released
/// volumes, as most clusters' default classes do.
pub fn storage_class() -> StorageClass {
    StorageClass {
        metadata: ObjectMeta {
            name: Some(STORAGE_CLASS.into()),
            annotations: Some(BTreeMap::from([(
                "storageclass.kubernetes.io/is-default-class".to_string(),
                "true".to_string(),
            )])),
            ..Default::default()
        },
        provisioner: PROVISIONER.into(),
        reclaim_policy: Some("Delete".into()),
        volume_binding_mode: Some("Immediate".into()),
        ..Default::default()
    }
}

impl HostPathProvisioner {
    /// Creates the StorageClass (blocking, through `client`'s runtime) and
    /// starts serving claims of it from `root`, logging to `log`.
    pub fn start(kubeconfig: &Path, root: PathBuf, log: PathBuf) -> Result<Self, Error> {
        std::fs::create_dir_all(&root).map_err(|e| Error::io(&root, e))?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io(Path::new("tokio runtime"), e))?;
        let client = rt.block_on(crate::client_from_kubeconfig(kubeconfig))?;
        let classes: Api<StorageClass> = Api::all(client.clone());
        rt.block_on(classes.patch(
            STORAGE_CLASS,
            &PatchParams::apply("kuberay-testenv").force(),
            &Patch::Apply(&storage_class()),
        ))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        std::thread::Builder::new()
            .name("hostpath-provisioner".into())
            .spawn(move || {
                rt.block_on(async {
                    while !flag.load(Ordering::Relaxed) {
                        if let Err(e) = pass(&client, &root).await {
                            note(&log, &format!("{e}"));
                        }
                        tokio::time::sleep(POLL).await;
                    }
                })
            })
            .map_err(|e| Error::io(Path::new("hostpath-provisioner thread"), e))?;
        Ok(Self { stop })
    }
}

fn note(log: &Path, line: &str) {
    use std::io::Write;
    if let Ok(mut f) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
    {
        let _ = writeln!(f, "{line}");
    }
}

/// One look at the claims and volumes: provision what waits, delete what
/// was released.
async fn pass(client: &kube::Client, root: &Path) -> Result<(), Error> {
    let claims: Api<PersistentVolumeClaim> = Api::all(client.clone());
    let volumes: Api<PersistentVolume> = Api::all(client.clone());
    for claim in claims.list(&ListParams::default()).await? {
        if let Some(pv) = wanted_volume(&claim, root) {
            let dir = host_dir(&pv);
            std::fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
            // Ray runs as uid 1000 in the pods; the directory is theirs to fill.
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777))
                .map_err(|e| Error::io(&dir, e))?;
            match volumes.create(&PostParams::default(), &pv).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 409 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    for pv in volumes.list(&ListParams::default()).await? {
        if released_for_deletion(&pv) {
            let dir = host_dir(&pv);
            let _ = std::fs::remove_dir_all(&dir);
            match volumes
                .delete(&pv.name_any(), &DeleteParams::default())
                .await
            {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e.into()),
            }
        }
    }
    Ok(())
}

/// The volume a pending claim of our class should get: named after the
/// claim's UID (unique, stable across passes, so a retry finds the one it
/// made), the claim's size and modes, pre-bound through `claimRef`.
pub fn wanted_volume(claim: &PersistentVolumeClaim, root: &Path) -> Option<PersistentVolume> {
    let spec = claim.spec.as_ref()?;
    let ours = spec.storage_class_name.as_deref() == Some(STORAGE_CLASS);
    let unbound = spec.volume_name.as_deref().unwrap_or_default().is_empty();
    let pending = claim
        .status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .is_none_or(|p| p == "Pending");
    if !(ours && unbound && pending) || claim.metadata.deletion_timestamp.is_some() {
        return None;
    }
    let uid = claim.uid()?;
    let name = format!("pvc-{uid}");
    let capacity = spec
        .resources
        .as_ref()
        .and_then(|r| r.requests.as_ref())
        .and_then(|r| r.get("storage"))
        .cloned()?;
    Some(PersistentVolume {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            annotations: Some(BTreeMap::from([(
                PROVISIONED_BY.to_string(),
                PROVISIONER.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeSpec {
            capacity: Some(BTreeMap::from([("storage".to_string(), capacity)])),
            access_modes: spec.access_modes.clone(),
            persistent_volume_reclaim_policy: Some("Delete".into()),
            storage_class_name: Some(STORAGE_CLASS.into()),
            volume_mode: spec.volume_mode.clone(),
            host_path: Some(HostPathVolumeSource {
                path: root.join(&name).display().to_string(),
                type_: Some("Directory".into()),
            }),
            claim_ref: Some(ObjectReference {
                api_version: Some("v1".into()),
                kind: Some("PersistentVolumeClaim".into()),
                namespace: claim.namespace(),
                name: Some(claim.name_any()),
                uid: Some(uid),
                ..Default::default()
            }),
            ..Default::default()
        }),
        status: None,
    })
}

/// A volume of ours whose claim is gone and whose policy says delete.
pub fn released_for_deletion(pv: &PersistentVolume) -> bool {
    let ours = pv
        .annotations()
        .get(PROVISIONED_BY)
        .is_some_and(|p| p == PROVISIONER);
    let delete = pv
        .spec
        .as_ref()
        .and_then(|s| s.persistent_volume_reclaim_policy.as_deref())
        == Some("Delete");
    let released = pv.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Released");
    ours && delete && released && pv.metadata.deletion_timestamp.is_none()
}

fn host_dir(pv: &PersistentVolume) -> PathBuf {
    PathBuf::from(
        pv.spec
            .as_ref()
            .and_then(|s| s.host_path.as_ref())
            .map(|h| h.path.clone())
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claim(v: serde_json::Value) -> PersistentVolumeClaim {
        let mut base = json!({
            "metadata": {"name": "c-gcs-pvc", "namespace": "ns", "uid": "u1"},
            "spec": {"storageClassName": STORAGE_CLASS, "accessModes": ["ReadWriteOnce"],
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"},
        });
        merge(&mut base, v);
        serde_json::from_value(base).unwrap()
    }

    fn merge(a: &mut serde_json::Value, b: serde_json::Value) {
        match (a, b) {
            (serde_json::Value::Object(a), serde_json::Value::Object(b)) => {
                for (k, v) in b {
                    merge(a.entry(k).or_insert(serde_json::Value::Null), v);
                }
            }
            (a, b) => *a = b,
        }
    }

    #[test]
    fn a_pending_claim_of_the_class_gets_a_prebound_volume_under_the_root() {
        let pv = wanted_volume(&claim(json!({})), Path::new("/r")).unwrap();
        assert_eq!(pv.name_any(), "pvc-u1");
        let spec = pv.spec.unwrap();
        assert_eq!(spec.host_path.unwrap().path, "/r/pvc-u1");
        let r = spec.claim_ref.unwrap();
        assert_eq!(
            (r.namespace.as_deref(), r.name.as_deref(), r.uid.as_deref()),
            (Some("ns"), Some("c-gcs-pvc"), Some("u1"))
        );
        assert_eq!(spec.capacity.unwrap()["storage"].0, "1Gi");
    }

    #[test]
    fn other_classes_bound_or_deleted_claims_are_left_alone() {
        for c in [
            json!({"spec": {"storageClassName": "ssd"}}),
            json!({"spec": {"volumeName": "pv-1"}}),
            json!({"status": {"phase": "Bound"}}),
            json!({"metadata": {"deletionTimestamp": "2026-01-01T00:00:00Z"}}),
        ] {
            assert!(
                wanted_volume(&claim(c.clone()), Path::new("/r")).is_none(),
                "{c}"
            );
        }
    }

    #[test]
    fn only_our_released_volumes_with_the_delete_policy_go() {
        let pv = |ann: &str, policy: &str, phase: &str| -> PersistentVolume {
            serde_json::from_value(json!({
                "metadata": {"name": "p", "annotations": {PROVISIONED_BY: ann}},
                "spec": {"persistentVolumeReclaimPolicy": policy},
                "status": {"phase": phase},
            }))
            .unwrap()
        };
        assert!(released_for_deletion(&pv(
            PROVISIONER,
            "Delete",
            "Released"
        )));
        assert!(!released_for_deletion(&pv("other", "Delete", "Released")));
        assert!(!released_for_deletion(&pv(
            PROVISIONER,
            "Retain",
            "Released"
        )));
        assert!(!released_for_deletion(&pv(PROVISIONER, "Delete", "Bound")));
    }
}
