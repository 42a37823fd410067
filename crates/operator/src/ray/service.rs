//! The services and ingress of a RayCluster: the head service (KubeRay's
//! port names, headless unless asked otherwise), the serve service, the
//! headless service of multi-host groups, and the dashboard ingress.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Service, ServicePort, ServiceSpec};
use k8s_openapi::api::networking::v1::{
    HTTPIngressPath, HTTPIngressRuleValue, Ingress, IngressBackend, IngressRule,
    IngressServiceBackend, IngressSpec, ServiceBackendPort,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kuberay_api::names::*;
use kuberay_api::{RayCluster, RayClusterSpec};

use crate::runtime::config::Config;

fn cluster_name(c: &RayCluster) -> &str {
    c.metadata.name.as_deref().unwrap_or_default()
}

/// The labels that select the head pod (and label the head service).
pub fn head_selector(cluster: &RayCluster) -> BTreeMap<String, String> {
    let name = cluster_name(cluster);
    let app = cluster
        .spec
        .head_group_spec
        .template
        .metadata
        .as_ref()
        .and_then(|m| m.labels.as_ref())
        .and_then(|l| l.get(APP_NAME_LABEL))
        .cloned()
        .unwrap_or_else(|| APP_NAME.into());
    BTreeMap::from([
        (CLUSTER_LABEL.to_string(), name.to_string()),
        (NODE_TYPE_LABEL.to_string(), HEAD.to_string()),
        (IDENTIFIER_LABEL.to_string(), identifier(name, HEAD)),
        (APP_NAME_LABEL.to_string(), app),
        (CREATED_BY_LABEL.to_string(), CREATED_BY.to_string()),
    ])
}

fn head_container_ports(cluster: &RayCluster) -> Vec<(String, i32)> {
    let t = cluster.spec.head_group_spec.template.spec.as_ref();
    t.and_then(|s| s.containers.first())
        .and_then(|c| c.ports.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            (
                p.name
                    .unwrap_or_else(|| format!("{}-port", p.container_port)),
                p.container_port,
            )
        })
        .collect()
}

/// The head service's ports: the Ray container's, plus each default whose
/// name and number are both still free; sorted by name.
pub fn head_ports(cluster: &RayCluster) -> Vec<ServicePort> {
    let mut ports = head_container_ports(cluster);
    for (name, number) in [
        CLIENT_PORT,
        GCS_PORT,
        DASHBOARD_PORT,
        METRICS_PORT,
        SERVE_PORT,
    ] {
        if !ports.iter().any(|(n, p)| n == name || *p == number) {
            ports.push((name.to_string(), number));
        }
    }
    ports.sort();
    ports
        .into_iter()
        .map(|(name, port)| ServicePort {
            name: Some(name),
            port,
            app_protocol: Some("tcp".into()),
            ..Default::default()
        })
        .collect()
}

/// The head service, merged into the user's `headService` when there is one.
pub fn head_service(cluster: &RayCluster, cfg: &Config) -> Service {
    let head = &cluster.spec.head_group_spec;
    let user = head.head_service.clone().unwrap_or_default();
    let selector = head_selector(cluster);
    let mut labels = user
        .metadata
        .as_ref()
        .and_then(|m| m.labels.clone())
        .unwrap_or_default();
    labels.extend(selector.clone());
    let mut annotations = user
        .metadata
        .as_ref()
        .and_then(|m| m.annotations.clone())
        .unwrap_or_default();
    annotations.extend(
        cluster
            .spec
            .head_service_annotations
            .clone()
            .unwrap_or_default(),
    );
    let name = head_service_name(
        cluster_name(cluster),
        user.metadata.as_ref().and_then(|m| m.name.as_deref()),
    );
    let mut spec = user.spec.unwrap_or_default();
    spec.selector = Some(selector);
    // Generated ports win by name; the user's other ports stay, after them.
    let generated = head_ports(cluster);
    let mut ports = generated.clone();
    for p in spec.ports.take().into_iter().flatten() {
        if p.name
            .as_ref()
            .is_none_or(|n| !generated.iter().any(|g| g.name.as_ref() == Some(n)))
        {
            ports.push(p);
        }
    }
    spec.ports = Some(ports);
    if spec.type_.is_none() {
        spec.type_ = head.service_type.clone().filter(|t| !t.is_empty());
    }
    let cluster_ip_type = spec.type_.as_deref().is_none_or(|t| t == "ClusterIP");
    if !cfg.head_cluster_ip_service && cluster_ip_type && spec.cluster_ip.is_none() {
        // Headless: clients reach the head pod directly, and the address
        // is published before the pod is ready so workers can wait on it.
        spec.cluster_ip = Some("None".into());
        spec.publish_not_ready_addresses = Some(true);
    }
    Service {
        metadata: ObjectMeta {
            name: Some(name),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        spec: Some(spec),
        status: None,
    }
}

/// Whether the cluster asks for a serve service.
pub fn wants_serve_service(cluster: &RayCluster) -> bool {
    cluster
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(ENABLE_SERVE_SERVICE_ANNOTATION))
        .is_some_and(|v| v == "true")
}

/// `<cluster>-serve-svc` on the head container's `serve` port (or 8000).
pub fn serve_service(cluster: &RayCluster) -> Service {
    let name = cluster_name(cluster);
    let port = serve_port(cluster);
    Service {
        metadata: ObjectMeta {
            name: Some(serve_service_name(name)),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([
                (ORIGINATED_FROM_CR_NAME_LABEL.to_string(), name.to_string()),
                (
                    ORIGINATED_FROM_CRD_LABEL.to_string(),
                    "RayCluster".to_string(),
                ),
                (SERVE_LABEL.to_string(), format!("{name}-serve")),
            ])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            selector: Some(BTreeMap::from([(
                CLUSTER_LABEL.to_string(),
                name.to_string(),
            )])),
            ports: Some(vec![ServicePort {
                name: Some(SERVE_PORT.0.into()),
                port,
                ..Default::default()
            }]),
            ..Default::default()
        }),
        status: None,
    }
}

/// The serve ports of the head container: those named `serve` or
/// `serve-<protocol>`; a container without any port gets `serve` on 8000,
/// as KubeRay's defaults do. Empty when the container has ports but none
/// for Serve.
pub fn serve_ports(cluster: &RayCluster) -> Vec<ServicePort> {
    let ports = head_container_ports(cluster);
    if ports.is_empty() {
        return vec![ServicePort {
            name: Some(SERVE_PORT.0.into()),
            port: SERVE_PORT.1,
            ..Default::default()
        }];
    }
    let mut serve: Vec<ServicePort> = ports
        .into_iter()
        .filter(|(n, _)| n == SERVE_PORT.0 || n.starts_with("serve-"))
        .map(|(name, port)| ServicePort {
            name: Some(name),
            port,
            ..Default::default()
        })
        .collect();
    serve.sort_by(|a, b| a.name.cmp(&b.name));
    serve
}

/// The head container's `serve` port, where Serve's proxy answers.
pub fn serve_port(cluster: &RayCluster) -> i32 {
    head_container_ports(cluster)
        .into_iter()
        .find(|(n, _)| n == SERVE_PORT.0)
        .map_or(SERVE_PORT.1, |(_, p)| p)
}

/// Whether any group is multi-host and so needs the headless service.
pub fn wants_headless_service(cluster: &RayCluster) -> bool {
    cluster
        .spec
        .worker_group_specs
        .iter()
        .flatten()
        .any(|g| g.num_of_hosts.unwrap_or(1) > 1)
}

/// `<cluster>-headless`: DNS records for every worker, ready or not, so the
/// hosts of a multi-host replica find each other.
pub fn headless_service(cluster: &RayCluster) -> Service {
    let name = cluster_name(cluster);
    Service {
        metadata: ObjectMeta {
            name: Some(headless_service_name(name)),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([(
                HEADLESS_SERVICE_LABEL.to_string(),
                name.to_string(),
            )])),
            ..Default::default()
        },
        spec: Some(ServiceSpec {
            cluster_ip: Some("None".into()),
            type_: Some("ClusterIP".into()),
            publish_not_ready_addresses: Some(true),
            selector: Some(BTreeMap::from([
                (CLUSTER_LABEL.to_string(), name.to_string()),
                (NODE_TYPE_LABEL.to_string(), WORKER.to_string()),
            ])),
            ..Default::default()
        }),
        status: None,
    }
}

const INGRESS_CLASS_ANNOTATION: &str = "kubernetes.io/ingress.class";

/// The dashboard ingress (`headGroupSpec.enableIngress`).
pub fn ingress(cluster: &RayCluster, cfg: &Config) -> Ingress {
    let name = cluster_name(cluster);
    let options = cluster
        .spec
        .head_group_spec
        .ingress_options
        .clone()
        .unwrap_or_default();
    let mut annotations = cluster.metadata.annotations.clone().unwrap_or_default();
    let class = annotations.remove(INGRESS_CLASS_ANNOTATION);
    let dashboard = head_container_ports(cluster)
        .into_iter()
        .find(|(n, _)| n == DASHBOARD_PORT.0)
        .map_or(DASHBOARD_PORT.1, |(_, p)| p);
    // Without options, KubeRay's historical rule: /<cluster>/(.*), for a
    // rewriting ingress controller.
    let (path, path_type) = match cluster.spec.head_group_spec.ingress_options.as_ref() {
        None => (format!("/{name}/(.*)"), "Exact".to_string()),
        Some(o) => (
            o.path.clone().unwrap_or_else(|| "/".into()),
            o.path_type
                .as_ref()
                .map_or_else(|| "Prefix".into(), |t| t.to_string()),
        ),
    };
    let service = head_service(cluster, cfg).metadata.name.unwrap_or_default();
    Ingress {
        metadata: ObjectMeta {
            name: Some(ingress_name(name)),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([
                (CLUSTER_LABEL.to_string(), name.to_string()),
                (IDENTIFIER_LABEL.to_string(), identifier(name, HEAD)),
                (APP_NAME_LABEL.to_string(), APP_NAME.to_string()),
                (CREATED_BY_LABEL.to_string(), CREATED_BY.to_string()),
            ])),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        spec: Some(IngressSpec {
            ingress_class_name: class,
            rules: Some(vec![IngressRule {
                host: options.host.clone(),
                http: Some(HTTPIngressRuleValue {
                    paths: vec![HTTPIngressPath {
                        path: Some(path),
                        path_type,
                        backend: IngressBackend {
                            service: Some(IngressServiceBackend {
                                name: service,
                                port: Some(ServiceBackendPort {
                                    number: Some(dashboard),
                                    ..Default::default()
                                }),
                            }),
                            ..Default::default()
                        },
                    }],
                }),
            }]),
            tls: options.tls.clone(),
            ..Default::default()
        }),
        status: None,
    }
}

/// The dashboard address KubeRay reports: `<head-svc>.<ns>.svc.<domain>:<port>`.
pub fn dashboard_url(c: &RayCluster, domain: &str) -> String {
    let override_name = c
        .spec
        .head_group_spec
        .head_service
        .as_ref()
        .and_then(|s| s.metadata.as_ref())
        .and_then(|m| m.name.as_deref());
    let svc = head_service_name(cluster_name(c), override_name);
    let port = dashboard_port(&c.spec);
    format!(
        "{}:{port}",
        head_service_fqdn(
            &svc,
            c.metadata.namespace.as_deref().unwrap_or_default(),
            domain
        )
    )
}

/// The head container's `dashboard` port (8265 by default).
pub fn dashboard_port(cluster: &RayClusterSpec) -> i32 {
    cluster
        .head_group_spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.containers.first())
        .and_then(|c| c.ports.as_ref())
        .and_then(|ps| {
            ps.iter()
                .find(|p| p.name.as_deref() == Some(DASHBOARD_PORT.0))
        })
        .map_or(DASHBOARD_PORT.1, |p| p.container_port)
}
