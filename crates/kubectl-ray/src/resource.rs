//! `NAME` or `TYPE/NAME` arguments (`raycluster/x`, `rayjob/x`,
//! `rayservice/x`), and finding the RayCluster and head service behind each.

use anyhow::{Result, anyhow, bail};
use kube::api::Api;
use kuberay_api::{RayCluster, RayJob, RayService};

use crate::connect::{Kube, describe};

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    RayCluster,
    RayJob,
    RayService,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::RayCluster => "raycluster",
            Kind::RayJob => "rayjob",
            Kind::RayService => "rayservice",
        }
    }
}

/// Parses `NAME` (a RayCluster) or `TYPE/NAME`. KubeRay's `delete` and `log`
/// accept the type in any case, `session` only in lower case.
pub fn parse(arg: &str, any_case: bool) -> Result<(Kind, String)> {
    let parts: Vec<&str> = arg.split('/').collect();
    match parts.as_slice() {
        [name] => Ok((Kind::RayCluster, (*name).to_string())),
        [kind, name] if !name.is_empty() => {
            let kind_text = if any_case {
                kind.to_lowercase()
            } else {
                (*kind).to_string()
            };
            let kind = match kind_text.as_str() {
                "raycluster" => Kind::RayCluster,
                "rayjob" => Kind::RayJob,
                "rayservice" => Kind::RayService,
                _ => bail!("unsupported resource type: {kind}"),
            };
            Ok((kind, (*name).to_string()))
        }
        _ => bail!("invalid resource type/name: {arg}"),
    }
}

/// The RayCluster behind a resource, its head service name (from the
/// status, as KubeRay's plugin reads it) and the cluster's name.
pub struct Target {
    pub cluster: String,
    pub head_service: String,
}

pub async fn target(kube: &Kube, kind: Kind, name: &str) -> Result<Target> {
    let ns = &kube.namespace;
    let c = kube.client.clone();
    let not_found = |what: &str, e: kube::Error| {
        anyhow!(
            "unable to find {what} {name} in namespace {ns}: {}",
            describe(&e)
        )
    };
    let (cluster, status) = match kind {
        Kind::RayCluster => {
            let rc = Api::<RayCluster>::namespaced(c, ns)
                .get(name)
                .await
                .map_err(|e| not_found("RayCluster", e))?;
            (name.to_string(), rc.status)
        }
        Kind::RayJob => {
            let job = Api::<RayJob>::namespaced(c, ns)
                .get(name)
                .await
                .map_err(|e| not_found("RayJob", e))?;
            let s = job.status.unwrap_or_default();
            (s.ray_cluster_name.unwrap_or_default(), s.ray_cluster_status)
        }
        Kind::RayService => {
            let svc = Api::<RayService>::namespaced(c, ns)
                .get(name)
                .await
                .map_err(|e| not_found("RayService", e))?;
            let active = svc.status.and_then(|s| s.active_service_status);
            let cluster = active
                .as_ref()
                .and_then(|a| a.ray_cluster_name.clone())
                .unwrap_or_default();
            (cluster, active.and_then(|a| a.ray_cluster_status))
        }
    };
    let head_service = status
        .and_then(|s| s.head)
        .and_then(|h| h.service_name)
        .unwrap_or_default();
    Ok(Target {
        cluster,
        head_service,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_types_parse_as_kuberay() {
        assert_eq!(parse("rc", false).unwrap(), (Kind::RayCluster, "rc".into()));
        assert_eq!(parse("RayJob/j", true).unwrap(), (Kind::RayJob, "j".into()));
        assert_eq!(
            parse("RayJob/j", false).unwrap_err().to_string(),
            "unsupported resource type: RayJob"
        );
        assert_eq!(
            parse("rayjob/", true).unwrap_err().to_string(),
            "invalid resource type/name: rayjob/"
        );
        assert_eq!(
            parse("a/b/c", true).unwrap_err().to_string(),
            "invalid resource type/name: a/b/c"
        );
        assert_eq!(parse("rayservice/s", true).unwrap().0, Kind::RayService);
    }
}
