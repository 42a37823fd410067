//! The volume of the embedded GCS store (`gcsFaultToleranceOptions.backend:
//! rocksdb`, behind the GCSFaultToleranceEmbeddedStorage gate): the claim
//! `<cluster>-gcs-pvc`, created once and never rewritten (a bound claim's
//! class and modes cannot change, most classes cannot shrink), owned by the
//! cluster so it goes with it, or, with `deletionPolicy: Retain`, left
//! unowned so a cluster of the same name (or `claimName`) finds its state
//! again. A claim named by `storage.claimName` is the user's: never touched.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    PersistentVolumeClaim, PersistentVolumeClaimSpec, VolumeResourceRequirements,
};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::ResourceExt;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kuberay_api::RayCluster;
use kuberay_api::names::CLUSTER_LABEL;

use super::Context;
use super::reconcile::Error;
use crate::kit::applier::{self, api_message};
use crate::ray::{gcs_ft, quantity};

/// KubeRay's size when the spec gives none.
const DEFAULT_SIZE: &str = "1Gi";
const EVENT_FAILED: &str = "FailedToCreatePVC";

/// The operator's claim as KubeRay makes it: one writer by default (RocksDB
/// takes a lock), labelled with the cluster so a retained claim is found by
/// the next cluster of that name. Without an owner: the caller decides.
pub fn claim(cluster: &RayCluster) -> PersistentVolumeClaim {
    let storage = gcs_ft::storage(cluster).cloned().unwrap_or_default();
    let access_modes = storage
        .access_modes
        .filter(|m| !m.is_empty())
        .unwrap_or_else(|| vec!["ReadWriteOnce".into()]);
    let size = storage
        .size
        .unwrap_or_else(|| Quantity(DEFAULT_SIZE.into()));
    PersistentVolumeClaim {
        metadata: ObjectMeta {
            name: Some(gcs_ft::storage_claim(cluster)),
            namespace: cluster.namespace(),
            labels: Some(BTreeMap::from([(
                CLUSTER_LABEL.to_string(),
                cluster.name_any(),
            )])),
            ..Default::default()
        },
        spec: Some(PersistentVolumeClaimSpec {
            access_modes: Some(access_modes),
            storage_class_name: storage.storage_class_name,
            resources: Some(VolumeResourceRequirements {
                requests: Some(BTreeMap::from([("storage".to_string(), size)])),
                limits: None,
            }),
            ..Default::default()
        }),
        status: None,
    }
}

/// What of `want` the existing claim does not have, for the user to act on
/// (the claim is not rewritten). An unset class asks for the default, which
/// the API server fills in, so it is no difference.
pub fn drift(want: &PersistentVolumeClaim, have: &PersistentVolumeClaim) -> Option<String> {
    let (w, h) = (
        want.spec.clone().unwrap_or_default(),
        have.spec.clone().unwrap_or_default(),
    );
    let size = |s: &PersistentVolumeClaimSpec| {
        s.resources
            .as_ref()
            .and_then(|r| r.requests.as_ref())
            .and_then(|r| r.get("storage"))
            .map(|q| q.0.clone())
            .unwrap_or_default()
    };
    let mut diffs = Vec::new();
    let (ws, hs) = (size(&w), size(&h));
    if quantity::parse(&ws) != quantity::parse(&hs) {
        diffs.push(format!("requested size {ws} != current {hs}"));
    }
    if w.storage_class_name.is_some() && w.storage_class_name != h.storage_class_name {
        diffs.push(format!(
            "storageClassName {} != current {}",
            w.storage_class_name.unwrap_or_default(),
            h.storage_class_name.as_deref().unwrap_or("<default>")
        ));
    }
    let sorted = |m: Option<Vec<String>>| {
        let mut m = m.unwrap_or_default();
        m.sort();
        m
    };
    let (wm, hm) = (sorted(w.access_modes), sorted(h.access_modes));
    if wm != hm {
        diffs.push(format!("accessModes {wm:?} != current {hm:?}"));
    }
    (!diffs.is_empty()).then(|| diffs.join("; "))
}

/// Makes the operator's claim exist, owned or not as the deletion policy
/// says. Runs before the pods, which mount it.
pub(super) async fn reconcile(cluster: &RayCluster, ctx: &Context) -> Result<(), Error> {
    if !gcs_ft::uses_volume(cluster) || gcs_ft::user_claim(cluster) {
        return Ok(());
    }
    let ns = cluster.namespace().unwrap_or_default();
    let want = claim(cluster);
    let name = want.name_any();
    let api: Api<PersistentVolumeClaim> = Api::namespaced(ctx.client.clone(), &ns);
    let owner = applier::owner_reference(cluster);
    let Some(have) = ctx.claims.get(&ns, &name) else {
        let mut new = want;
        if !gcs_ft::retain_storage(cluster) {
            new.metadata.owner_references = Some(vec![owner]);
        }
        return match api.create(&PostParams::default(), &new).await {
            Ok(_) => {
                let note = format!("Created GCS storage PVC {ns}/{name}");
                ctx.events
                    .normal(cluster, "CreatedPVC", "Create", note)
                    .await;
                Ok(())
            }
            // Made by an earlier pass the cache has not seen yet.
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(()),
            Err(e) => {
                let note = format!(
                    "Failed to create GCS storage PVC {ns}/{name}, {}",
                    api_message(&e)
                );
                ctx.events
                    .warning(cluster, EVENT_FAILED, "Create", note)
                    .await;
                Err(Error::Storage(e))
            }
        };
    };
    if let Some(d) = drift(&want, &have) {
        let note = format!(
            "GCS storage PVC {ns}/{name} already exists and cannot be reconfigured in place ({d}); delete the PVC to recreate it with the new settings"
        );
        ctx.events
            .warning(cluster, EVENT_FAILED, "Update", note)
            .await;
    }
    // The policy may change on a claim that exists: follow it.
    let uid = cluster.uid();
    let refs = have.metadata.owner_references.clone().unwrap_or_default();
    let ours = |r: &k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference| {
        Some(&r.uid) == uid.as_ref() && r.controller == Some(true)
    };
    let owned = refs.iter().any(ours);
    let retain = gcs_ft::retain_storage(cluster);
    let wanted_refs = match (retain, owned) {
        (true, true) => refs.into_iter().filter(|r| !ours(r)).collect::<Vec<_>>(),
        // A claim another controller owns is left to it.
        (false, false) if !refs.iter().any(|r| r.controller == Some(true)) => {
            refs.into_iter().chain([owner]).collect()
        }
        _ => return Ok(()),
    };
    // The resourceVersion makes a concurrent change fail instead of losing it.
    let patch = serde_json::json!({"metadata": {
        "ownerReferences": wanted_refs,
        "resourceVersion": have.resource_version(),
    }});
    api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .map_err(Error::Storage)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn cluster(storage: serde_json::Value) -> RayCluster {
        serde_json::from_value(json!({"apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": "c", "namespace": "n"},
            "spec": {"gcsFaultToleranceOptions": {"backend": "rocksdb", "storage": storage},
                "headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head"}]}}}}}))
        .unwrap()
    }

    #[test]
    fn the_claim_has_kuberays_name_labels_and_defaults() {
        let c = claim(&cluster(json!({})));
        assert_eq!(c.name_any(), "c-gcs-pvc");
        assert_eq!(c.namespace().as_deref(), Some("n"));
        assert_eq!(c.labels()["ray.io/cluster"], "c");
        let spec = c.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), vec!["ReadWriteOnce"]);
        assert_eq!(spec.storage_class_name, None);
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "1Gi"
        );
    }

    #[test]
    fn the_spec_sets_size_class_and_modes() {
        let c = claim(&cluster(json!({"size": "5Gi", "storageClassName": "fast",
            "accessModes": ["ReadWriteMany"]})));
        let spec = c.spec.unwrap();
        assert_eq!(spec.access_modes.unwrap(), vec!["ReadWriteMany"]);
        assert_eq!(spec.storage_class_name.as_deref(), Some("fast"));
        assert_eq!(
            spec.resources.unwrap().requests.unwrap()["storage"].0,
            "5Gi"
        );
    }

    #[test]
    fn drift_names_what_cannot_change_in_place() {
        let want = claim(&cluster(json!({"size": "1024Mi"})));
        let mut have = claim(&cluster(json!({})));
        // Equal quantities written differently, and a default class the
        // API server filled in, are no drift.
        have.spec.as_mut().unwrap().storage_class_name = Some("standard".into());
        assert_eq!(drift(&want, &have), None);
        let want = claim(&cluster(json!({"size": "2Gi", "storageClassName": "fast",
            "accessModes": ["ReadWriteMany"]})));
        let d = drift(&want, &have).unwrap();
        assert!(d.contains("requested size 2Gi != current 1Gi"), "{d}");
        assert!(
            d.contains("storageClassName fast != current standard"),
            "{d}"
        );
        assert!(d.contains("accessModes"), "{d}");
    }
}
