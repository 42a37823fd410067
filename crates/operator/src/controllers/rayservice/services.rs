//! The two services a RayService keeps pointed at the cluster that serves:
//! `<service>-head-svc` (the head service of that cluster, under the
//! RayService's name) and `<service>-serve-svc` (the Serve proxies of that
//! cluster whose `ray.io/serve` label is `true`), or the user's
//! `serveService` merged with what the operator must set.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kuberay_api::names::{
    CLUSTER_LABEL, HEAD, IDENTIFIER_LABEL, NODE_TYPE_LABEL, ORIGINATED_FROM_CR_NAME_LABEL,
    ORIGINATED_FROM_CRD_LABEL, SERVE_LABEL, head_service_name, identifier, serve_service_name,
};
use kuberay_api::{RayCluster, RayService};

use crate::kit::applier::owner_reference;
use crate::ray::service::{head_service, serve_ports};
use crate::runtime::config::Config;

fn origin(svc: &RayService) -> BTreeMap<String, String> {
    BTreeMap::from([
        (ORIGINATED_FROM_CR_NAME_LABEL.to_string(), svc.name_any()),
        (
            ORIGINATED_FROM_CRD_LABEL.to_string(),
            "RayService".to_string(),
        ),
    ])
}

/// `<service>-head-svc`, selecting the head pod of `cluster`.
pub fn head(svc: &RayService, cluster: &RayCluster, cfg: &Config) -> Service {
    let mut s = head_service(cluster, cfg);
    let name = svc.name_any();
    let mut labels = origin(svc);
    labels.insert(NODE_TYPE_LABEL.into(), HEAD.into());
    labels.insert(IDENTIFIER_LABEL.into(), identifier(&name, HEAD));
    s.metadata.name = Some(head_service_name(&name, None));
    s.metadata.namespace = svc.namespace();
    s.metadata.labels = Some(labels);
    s.metadata.owner_references = Some(vec![owner_reference(svc)]);
    s
}

/// The serve service's name: the user's `serveService` name or
/// `<service>-serve-svc`.
pub fn serve_name(svc: &RayService) -> String {
    svc.spec
        .serve_service
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .and_then(|m| m.name.clone())
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| serve_service_name(&svc.name_any()))
}

/// The serve service of `svc` selecting the ready proxies of `cluster`, or
/// `None` when there is no port to serve on (refused by [`super::status`]
/// before it comes to this).
pub fn serve(svc: &RayService, cluster: &RayCluster) -> Option<Service> {
    let name = svc.name_any();
    let mut ports = serve_ports(cluster);
    let user = svc.spec.serve_service.clone().unwrap_or_default();
    let mut spec = user.spec.unwrap_or_default();
    // The user's definition of a detected port wins (appProtocol for gRPC).
    let user_ports = spec.ports.take().unwrap_or_default();
    if ports.is_empty() {
        ports = user_ports
            .iter()
            .filter(|p| {
                p.name
                    .as_deref()
                    .is_some_and(|n| n == "serve" || n.starts_with("serve-"))
            })
            .cloned()
            .collect();
    } else {
        for p in &mut ports {
            if let Some(u) = user_ports.iter().find(|u| u.name == p.name) {
                *p = u.clone();
            }
        }
    }
    if ports.is_empty() {
        return None;
    }
    spec.ports = Some(ports);
    spec.selector = Some(BTreeMap::from([
        (CLUSTER_LABEL.to_string(), cluster.name_any()),
        (SERVE_LABEL.to_string(), "true".to_string()),
    ]));
    if spec.type_.as_deref().is_none_or(str::is_empty) {
        spec.type_ = svc
            .spec
            .ray_cluster_config
            .head_group_spec
            .service_type
            .clone()
            .filter(|t| !t.is_empty());
    }
    let meta = user.metadata.unwrap_or_default();
    let mut labels = meta.labels.clone().unwrap_or_default();
    labels.extend(origin(svc));
    labels.insert(SERVE_LABEL.into(), format!("{name}-serve"));
    Some(Service {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(serve_name(svc)),
            namespace: svc.namespace(),
            labels: Some(labels),
            annotations: meta.annotations.filter(|a| !a.is_empty()),
            owner_references: Some(vec![owner_reference(svc)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// KubeRay's per-cluster serve service of an incremental upgrade,
/// `<cluster>-serve-svc`: the ready proxies of `cluster`, labelled and
/// owned as that cluster's (so it goes with it); `serveService` is not
/// used, as in KubeRay. `None` without a serve port.
pub fn cluster_serve(svc: &RayService, cluster: &RayCluster) -> Option<Service> {
    let cname = cluster.name_any();
    let ports = serve_ports(cluster);
    if ports.is_empty() {
        return None;
    }
    let labels = BTreeMap::from([
        (ORIGINATED_FROM_CR_NAME_LABEL.to_string(), cname.clone()),
        (
            ORIGINATED_FROM_CRD_LABEL.to_string(),
            "RayService".to_string(),
        ),
        (SERVE_LABEL.to_string(), format!("{cname}-serve")),
    ]);
    let spec = k8s_openapi::api::core::v1::ServiceSpec {
        ports: Some(ports),
        selector: Some(BTreeMap::from([
            (CLUSTER_LABEL.to_string(), cname.clone()),
            (SERVE_LABEL.to_string(), "true".to_string()),
        ])),
        type_: svc
            .spec
            .ray_cluster_config
            .head_group_spec
            .service_type
            .clone()
            .filter(|t| !t.is_empty()),
        ..Default::default()
    };
    Some(Service {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(serve_service_name(&cname)),
            namespace: svc.namespace(),
            labels: Some(labels),
            owner_references: Some(vec![owner_reference(cluster)]),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    })
}

/// The RayService a per-cluster serve service belongs to: its owner
/// cluster is `<service>-<5 characters>`.
pub fn service_of_cluster_serve(s: &Service) -> Option<String> {
    if s.labels()
        .get(ORIGINATED_FROM_CRD_LABEL)
        .map(String::as_str)
        != Some("RayService")
    {
        return None;
    }
    let cluster = crate::kit::cache::controller_owner(&s.metadata, "RayCluster")?;
    let cut = cluster.len().checked_sub(6)?;
    (cluster.as_bytes().get(cut) == Some(&b'-')).then(|| cluster[..cut].to_string())
}

/// The cluster a service of the RayService selects now.
pub fn selected_cluster(s: &Service) -> Option<String> {
    s.spec
        .as_ref()?
        .selector
        .as_ref()?
        .get(CLUSTER_LABEL)
        .cloned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(extra: &str) -> RayService {
        serde_yaml::from_str(&format!(
            r#"
apiVersion: ray.io/v1
kind: RayService
metadata: {{name: web, namespace: ns, uid: u-1}}
spec:
{extra}
  rayClusterConfig:
    headGroupSpec:
      rayStartParams: {{}}
      template:
        spec:
          containers:
          - name: ray-head
            image: rayproject/ray:2.52.0
            ports: [{{name: dashboard, containerPort: 8265}}, {{name: serve, containerPort: 8000}}, {{name: serve-grpc, containerPort: 9000}}]
"#
        ))
        .unwrap()
    }

    fn cluster_of(svc: &RayService) -> RayCluster {
        super::super::cluster::ray_cluster(svc, "web-abcde")
    }

    #[test]
    fn the_serve_service_selects_ready_proxies_of_the_serving_cluster() {
        let svc = service("");
        let s = serve(&svc, &cluster_of(&svc)).unwrap();
        assert_eq!(s.name_any(), "web-serve-svc");
        let spec = s.spec.unwrap();
        let sel = spec.selector.unwrap();
        assert_eq!(sel["ray.io/cluster"], "web-abcde");
        assert_eq!(sel["ray.io/serve"], "true");
        let names: Vec<_> = spec
            .ports
            .unwrap()
            .into_iter()
            .map(|p| p.name.unwrap())
            .collect();
        assert_eq!(names, ["serve", "serve-grpc"]);
        assert_eq!(s.metadata.labels.unwrap()["ray.io/serve"], "web-serve");
    }

    #[test]
    fn a_custom_serve_service_keeps_its_name_and_port_definitions() {
        let svc = service(
            "  serveService:\n    metadata: {name: custom, labels: {team: ml}}\n    spec:\n      type: NodePort\n      selector: {ignored: x}\n      ports: [{name: serve-grpc, port: 9000, appProtocol: kubernetes.io/h2c}]\n",
        );
        let s = serve(&svc, &cluster_of(&svc)).unwrap();
        assert_eq!(s.name_any(), "custom");
        assert_eq!(s.metadata.labels.as_ref().unwrap()["team"], "ml");
        let spec = s.spec.unwrap();
        assert_eq!(spec.type_.as_deref(), Some("NodePort"));
        assert!(!spec.selector.unwrap().contains_key("ignored"));
        let grpc = spec
            .ports
            .unwrap()
            .into_iter()
            .find(|p| p.port == 9000)
            .unwrap();
        assert_eq!(grpc.app_protocol.as_deref(), Some("kubernetes.io/h2c"));
    }

    #[test]
    fn the_per_cluster_serve_service_is_the_clusters_own() {
        let svc = service("  serveService:\n    metadata: {name: custom}\n");
        let mut c = cluster_of(&svc);
        c.metadata.uid = Some("c-1".into());
        let s = cluster_serve(&svc, &c).unwrap();
        assert_eq!(s.name_any(), "web-abcde-serve-svc");
        assert_eq!(s.labels()["ray.io/originated-from-cr-name"], "web-abcde");
        assert_eq!(s.labels()["ray.io/originated-from-crd"], "RayService");
        assert_eq!(s.labels()["ray.io/serve"], "web-abcde-serve");
        assert_eq!(s.owner_references()[0].kind, "RayCluster");
        assert_eq!(s.owner_references()[0].uid, "c-1");
        assert_eq!(selected_cluster(&s).as_deref(), Some("web-abcde"));
        assert_eq!(service_of_cluster_serve(&s).as_deref(), Some("web"));
    }

    #[test]
    fn the_head_service_has_the_services_name_and_the_clusters_selector() {
        let svc = service("");
        let h = head(&svc, &cluster_of(&svc), &Config::default());
        assert_eq!(h.name_any(), "web-head-svc");
        assert_eq!(h.labels()["ray.io/originated-from-crd"], "RayService");
        assert_eq!(h.labels()["ray.io/identifier"], "web-head");
        assert_eq!(selected_cluster(&h).as_deref(), Some("web-abcde"));
    }
}
