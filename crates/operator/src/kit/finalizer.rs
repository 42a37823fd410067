//! Adding and removing one finalizer, for controllers with an external side
//! effect to undo before their object goes. Both patches carry the object's
//! resourceVersion, so a concurrent change makes them fail and the
//! reconcile retry on the fresh object instead of overwriting another
//! controller's finalizers.
//!
//! kube-runtime's `finalizer` helper is not used: it adds the finalizer
//! before any reconcile, so objects another controller manages
//! (`managedBy`) or that are invalid would get one too.

use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};

use super::Object;

pub fn has<K: Resource>(obj: &K, finalizer: &str) -> bool {
    obj.finalizers().iter().any(|f| f == finalizer)
}

/// Adds `finalizer` to `obj`.
pub async fn add<K>(client: &Client, obj: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Object,
{
    let mut finalizers = obj.finalizers().to_vec();
    finalizers.push(finalizer.into());
    patch(client, obj, finalizers).await
}

/// Removes `finalizer` from `obj`; an object already gone is fine.
pub async fn remove<K>(client: &Client, obj: &K, finalizer: &str) -> Result<(), kube::Error>
where
    K: Object,
{
    let finalizers: Vec<String> = obj
        .finalizers()
        .iter()
        .filter(|f| *f != finalizer)
        .cloned()
        .collect();
    match patch(client, obj, finalizers).await {
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        other => other,
    }
}

async fn patch<K>(client: &Client, obj: &K, finalizers: Vec<String>) -> Result<(), kube::Error>
where
    K: Object,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let body = serde_json::json!({"metadata": {
        "finalizers": finalizers,
        "resourceVersion": obj.resource_version(),
    }});
    api.patch(
        &obj.name_any(),
        &PatchParams::default(),
        &Patch::Merge(&body),
    )
    .await?;
    Ok(())
}
