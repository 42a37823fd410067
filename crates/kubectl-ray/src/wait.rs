//! Waiting on a RayCluster through a watch, with a deadline.

use std::time::Duration;

use anyhow::{Result, bail};
use kube::api::Api;
use kube::runtime::wait::await_condition;
use kuberay_api::RayCluster;
use kuberay_api::raycluster::ClusterState;
use kuberay_operator::ray::conditions;

use crate::connect::Kube;

/// Provisioned: the condition is True, or the state is `ready`.
pub fn is_provisioned(rc: &RayCluster) -> bool {
    let Some(s) = &rc.status else { return false };
    s.state == Some(ClusterState::Ready)
        || s.conditions
            .iter()
            .flatten()
            .any(|c| c.type_ == conditions::PROVISIONED && c.status == "True")
}

/// Waits until the cluster is provisioned, or fails after `timeout`.
pub async fn cluster_provisioned(
    kube: &Kube,
    ns: &str,
    name: &str,
    timeout: Duration,
) -> Result<()> {
    let api: Api<RayCluster> = Api::namespaced(kube.client.clone(), ns);
    let cond = await_condition(api, name, |rc: Option<&RayCluster>| {
        rc.is_some_and(is_provisioned)
    });
    match tokio::time::timeout(timeout, cond).await {
        Ok(Ok(_)) => Ok(()),
        Ok(Err(e)) => bail!("failed to watch Ray cluster {name} in namespace {ns}: {e}"),
        Err(_) => {
            bail!("timed out waiting for Ray cluster {name} in namespace {ns} to be provisioned")
        }
    }
}
