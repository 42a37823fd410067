//! Updating a RayCluster as KubeRay's plugin does: read it, change it, write
//! the whole object back (a conflict if it changed in between). The object
//! is handled as raw JSON so that no field is lost on the way.

use anyhow::Result;
use kube::api::{Api, ApiResource, DynamicObject, PostParams};
use kuberay_api::RayCluster;

use crate::connect::{Kube, describe};

pub fn api(kube: &Kube) -> Api<DynamicObject> {
    Api::namespaced_with(
        kube.client.clone(),
        &kube.namespace,
        &ApiResource::erase::<RayCluster>(&()),
    )
}

/// Applies `change` to the cluster `name` and writes it back.
pub async fn cluster(
    kube: &Kube,
    name: &str,
    change: impl FnOnce(&mut DynamicObject) -> Result<()>,
) -> Result<DynamicObject> {
    let api = api(kube);
    let mut rc = api
        .get(name)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))?;
    change(&mut rc)?;
    let pp = PostParams {
        field_manager: Some(crate::create::FIELD_MANAGER.into()),
        ..Default::default()
    };
    api.replace(name, &pp, &rc)
        .await
        .map_err(|e| anyhow::anyhow!("{}", describe(&e)))
}
