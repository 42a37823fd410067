//! The Gateway API objects of an incremental upgrade, the pure part: the few
//! `gateway.networking.k8s.io/v1` types the RayService controller reads and
//! writes (the `gateway-api` crate is built on kube 4 and k8s-openapi 0.28,
//! not the versions this workspace uses), KubeRay's `<service>-gateway` and
//! `<service>-httproute` built from the spec and the traffic weights, the
//! comparisons that decide whether they need a write (only the fields the
//! operator manages: the API server and Gateway controllers default the
//! rest), and KubeRay's readiness tests on their status.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, ObjectMeta};
use kube::{CustomResource, ResourceExt};
use kuberay_api::{RayCluster, RayService};
use serde::{Deserialize, Serialize};
use serde_with::skip_serializing_none;

use crate::kit::applier::owner_reference;
use crate::kit::conditions;
use crate::ray::service::serve_port;

pub const GROUP: &str = "gateway.networking.k8s.io";
pub const VERSION: &str = "v1";
/// KubeRay's listener: HTTP on port 80, named `http`.
pub const LISTENER_NAME: &str = "http";
pub const LISTENER_PORT: i32 = 80;

/// A Gateway: listeners of a GatewayClass's implementation.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "Gateway",
    namespaced,
    status = "GatewayStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct GatewaySpec {
    pub gateway_class_name: String,
    #[serde(default)]
    pub listeners: Vec<Listener>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct Listener {
    pub name: String,
    pub protocol: String,
    pub port: i32,
    pub hostname: Option<String>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct GatewayStatus {
    pub conditions: Option<Vec<Condition>>,
}

/// An HTTPRoute: requests matched on a Gateway, sent to weighted backends.
#[skip_serializing_none]
#[derive(CustomResource, Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "gateway.networking.k8s.io",
    version = "v1",
    kind = "HTTPRoute",
    plural = "httproutes",
    namespaced,
    status = "HTTPRouteStatus",
    schema = "disabled"
)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteSpec {
    #[serde(default)]
    pub parent_refs: Vec<ParentReference>,
    pub hostnames: Option<Vec<String>>,
    #[serde(default)]
    pub rules: Vec<HTTPRouteRule>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct ParentReference {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub section_name: Option<String>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct HTTPRouteRule {
    pub matches: Option<Vec<HTTPRouteMatch>>,
    pub backend_refs: Option<Vec<HTTPBackendRef>>,
    /// Kept as the API server returns them: the operator sets none.
    pub filters: Option<Vec<serde_json::Value>>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HTTPRouteMatch {
    pub path: Option<HTTPPathMatch>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HTTPPathMatch {
    #[serde(rename = "type")]
    pub type_: Option<String>,
    pub value: Option<String>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HTTPBackendRef {
    pub group: Option<String>,
    pub kind: Option<String>,
    pub name: String,
    pub namespace: Option<String>,
    pub port: Option<i32>,
    pub weight: Option<i32>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
pub struct HTTPRouteStatus {
    #[serde(default)]
    pub parents: Vec<RouteParentStatus>,
}

#[skip_serializing_none]
#[derive(Serialize, Deserialize, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct RouteParentStatus {
    pub parent_ref: ParentReference,
    pub controller_name: Option<String>,
    pub conditions: Option<Vec<Condition>>,
}

/// KubeRay's `<service>-gateway`.
pub fn gateway_name(svc: &RayService) -> String {
    format!("{}-gateway", svc.name_any())
}

/// KubeRay's `<service>-httproute`.
pub fn route_name(svc: &RayService) -> String {
    format!("{}-httproute", svc.name_any())
}

/// KubeRay's per-cluster serve service, `<cluster>-serve-svc`: the
/// HTTPRoute's backend for that cluster.
pub fn cluster_serve_service_name(cluster: &str) -> String {
    kuberay_api::names::serve_service_name(cluster)
}

/// The Gateway of `svc`: one HTTP listener on port 80 of the class named
/// in `clusterUpgradeOptions.gatewayClassName`, owned by the RayService.
pub fn gateway(svc: &RayService, class: &str) -> Gateway {
    let mut g = Gateway::new(
        &gateway_name(svc),
        GatewaySpec {
            gateway_class_name: class.to_string(),
            listeners: vec![Listener {
                name: LISTENER_NAME.into(),
                protocol: "HTTP".into(),
                port: LISTENER_PORT,
                hostname: None,
            }],
        },
    );
    g.metadata = owned_meta(svc, gateway_name(svc));
    g
}

fn owned_meta(svc: &RayService, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: svc.namespace(),
        owner_references: Some(vec![owner_reference(svc)]),
        ..Default::default()
    }
}

/// One backend of the route: a cluster's serve service, its serve port and
/// the percentage of requests it gets.
pub fn backend(svc: &RayService, cluster: &RayCluster, weight: i32) -> HTTPBackendRef {
    HTTPBackendRef {
        name: cluster_serve_service_name(&cluster.name_any()),
        namespace: svc.namespace(),
        port: Some(serve_port(cluster)),
        weight: Some(weight),
        ..Default::default()
    }
}

/// The HTTPRoute of `svc`: every path (`/` prefix) on its Gateway, split
/// between `backends` (the active cluster first).
pub fn route(svc: &RayService, backends: Vec<HTTPBackendRef>) -> HTTPRoute {
    let mut r = HTTPRoute::new(
        &route_name(svc),
        HTTPRouteSpec {
            parent_refs: vec![ParentReference {
                name: gateway_name(svc),
                namespace: svc.namespace(),
                ..Default::default()
            }],
            hostnames: None,
            rules: vec![HTTPRouteRule {
                matches: Some(vec![HTTPRouteMatch {
                    path: Some(HTTPPathMatch {
                        type_: Some("PathPrefix".into()),
                        value: Some("/".into()),
                    }),
                }]),
                backend_refs: Some(backends),
                filters: None,
            }],
        },
    );
    r.metadata = owned_meta(svc, route_name(svc));
    r
}

/// Whether `have` already has what the operator sets on a Gateway: the
/// class and each listener's name, protocol and port.
pub fn gateway_matches(have: &GatewaySpec, want: &GatewaySpec) -> bool {
    have.gateway_class_name == want.gateway_class_name
        && have.listeners.len() == want.listeners.len()
        && have
            .listeners
            .iter()
            .zip(&want.listeners)
            .all(|(h, w)| h.name == w.name && h.protocol == w.protocol && h.port == w.port)
}

/// Whether `have` already routes as `want`: parents, matches, filters and
/// each backend's name, namespace, port and weight (an unset weight is 1,
/// as the API server defaults it).
pub fn route_matches(have: &HTTPRouteSpec, want: &HTTPRouteSpec) -> bool {
    let hosts = |s: &HTTPRouteSpec| s.hostnames.clone().unwrap_or_default();
    let parents_match = have.parent_refs.len() == want.parent_refs.len()
        && have
            .parent_refs
            .iter()
            .zip(&want.parent_refs)
            .all(|(h, w)| h.name == w.name && h.namespace == w.namespace);
    hosts(have) == hosts(want)
        && parents_match
        && have.rules.len() == want.rules.len()
        && have.rules.iter().zip(&want.rules).all(|(h, w)| {
            let backends = |r: &HTTPRouteRule| r.backend_refs.clone().unwrap_or_default();
            let (hb, wb) = (backends(h), backends(w));
            h.matches == w.matches
                && h.filters.clone().unwrap_or_default() == w.filters.clone().unwrap_or_default()
                && hb.len() == wb.len()
                && hb.iter().zip(&wb).all(|(h, w)| {
                    h.name == w.name
                        && h.namespace == w.namespace
                        && h.port == w.port
                        && h.weight.unwrap_or(1) == w.weight.unwrap_or(1)
                })
        })
}

/// KubeRay's test of a usable Gateway: its controller has `Accepted` and
/// `Programmed` it.
pub fn gateway_ready(g: &Gateway) -> bool {
    let cs = g.status.as_ref().and_then(|s| s.conditions.as_ref());
    conditions::is_true(cs, "Accepted") && conditions::is_true(cs, "Programmed")
}

/// KubeRay's test of a usable route: the entry for its Gateway among the
/// route's parents has `Accepted` and `ResolvedRefs`.
pub fn route_ready(g: &Gateway, r: &HTTPRoute) -> bool {
    entries_for(g, r).any(|p| {
        conditions::is_true(p.conditions.as_ref(), "Accepted")
            && conditions::is_true(p.conditions.as_ref(), "ResolvedRefs")
    })
}

/// The generation of the route that `g`'s controller last reported on
/// (`observedGeneration` of `Accepted` in its entry), when that is older
/// than the route as it is now. A controller that leaves
/// `observedGeneration` out is taken at its word.
pub fn route_lag(g: &Gateway, r: &HTTPRoute) -> Option<i64> {
    let now = r.metadata.generation?;
    let seen = entries_for(g, r)
        .filter_map(|p| {
            p.conditions
                .iter()
                .flatten()
                .find(|c| c.type_ == "Accepted")?
                .observed_generation
        })
        .max()?;
    (seen < now).then_some(seen)
}

/// The route's status entries for the Gateway `g`.
fn entries_for<'a>(g: &Gateway, r: &'a HTTPRoute) -> impl Iterator<Item = &'a RouteParentStatus> {
    let gname = g.name_any();
    let gns = g.namespace();
    r.status.iter().flat_map(|s| &s.parents).filter(move |p| {
        p.parent_ref.name == gname
            && (p.parent_ref.namespace.is_none() || p.parent_ref.namespace == gns)
    })
}

/// The weights the route gives the clusters named `active` and `pending`
/// (-1 for one it does not name), as KubeRay reads them back into the
/// status: a backend counts for a cluster when its name contains the
/// cluster's.
pub fn weights(r: Option<&HTTPRoute>, active: Option<&str>, pending: Option<&str>) -> (i32, i32) {
    let mut out = (-1, -1);
    let Some(backends) = r
        .and_then(|r| r.spec.rules.first())
        .and_then(|rule| rule.backend_refs.as_ref())
    else {
        return out;
    };
    for b in backends {
        let w = b.weight.unwrap_or(0);
        if active.is_some_and(|a| b.name.contains(a)) {
            out.0 = w;
        }
        if pending.is_some_and(|p| b.name.contains(p)) {
            out.1 = w;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn service() -> RayService {
        serde_yaml::from_str(
            r#"
apiVersion: ray.io/v1
kind: RayService
metadata: {name: web, namespace: ns, uid: u-1}
spec:
  upgradeStrategy:
    type: NewClusterWithIncrementalUpgrade
    clusterUpgradeOptions: {gatewayClassName: istio, stepSizePercent: 10, intervalSeconds: 30, maxSurgePercent: 20}
  rayClusterConfig:
    headGroupSpec:
      rayStartParams: {}
      template:
        spec:
          containers:
          - name: ray-head
            image: rayproject/ray:2.52.0
            ports: [{name: serve, containerPort: 8100}]
"#,
        )
        .unwrap()
    }

    fn cluster(name: &str) -> RayCluster {
        super::super::cluster::ray_cluster(&service(), name)
    }

    #[test]
    fn the_gateway_has_kuberays_name_listener_class_and_owner() {
        let svc = service();
        let v = serde_json::to_value(gateway(&svc, "istio")).unwrap();
        assert_eq!(v["apiVersion"], "gateway.networking.k8s.io/v1");
        assert_eq!(v["kind"], "Gateway");
        assert_eq!(v["metadata"]["name"], "web-gateway");
        assert_eq!(v["metadata"]["namespace"], "ns");
        assert_eq!(v["metadata"]["ownerReferences"][0]["kind"], "RayService");
        assert_eq!(v["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(
            v["spec"],
            json!({"gatewayClassName": "istio", "listeners": [{"name": "http", "protocol": "HTTP", "port": 80}]})
        );
    }

    #[test]
    fn the_route_sends_every_path_to_the_clusters_serve_services_by_weight() {
        let svc = service();
        let (a, p) = (cluster("web-aaaaa"), cluster("web-bbbbb"));
        let r = route(&svc, vec![backend(&svc, &a, 70), backend(&svc, &p, 30)]);
        let v = serde_json::to_value(&r).unwrap();
        assert_eq!(v["kind"], "HTTPRoute");
        assert_eq!(v["metadata"]["name"], "web-httproute");
        assert_eq!(
            v["spec"]["parentRefs"],
            json!([{"name": "web-gateway", "namespace": "ns"}])
        );
        assert_eq!(
            v["spec"]["rules"][0]["matches"],
            json!([{"path": {"type": "PathPrefix", "value": "/"}}])
        );
        assert_eq!(
            v["spec"]["rules"][0]["backendRefs"],
            json!([
                {"name": "web-aaaaa-serve-svc", "namespace": "ns", "port": 8100, "weight": 70},
                {"name": "web-bbbbb-serve-svc", "namespace": "ns", "port": 8100, "weight": 30}
            ])
        );
        assert_eq!(
            weights(Some(&r), Some("web-aaaaa"), Some("web-bbbbb")),
            (70, 30)
        );
        assert_eq!(weights(Some(&r), Some("web-aaaaa"), None), (70, -1));
        assert_eq!(weights(None, Some("web-aaaaa"), None), (-1, -1));
    }

    #[test]
    fn what_the_api_server_defaults_is_no_difference_but_a_weight_is() {
        let svc = service();
        let a = cluster("web-aaaaa");
        let want = route(&svc, vec![backend(&svc, &a, 100)]);
        // As stored: group and kind defaulted on refs.
        let mut stored: serde_json::Value = serde_json::to_value(&want).unwrap();
        stored["spec"]["parentRefs"][0]["group"] = json!("gateway.networking.k8s.io");
        stored["spec"]["parentRefs"][0]["kind"] = json!("Gateway");
        stored["spec"]["rules"][0]["backendRefs"][0]["group"] = json!("");
        stored["spec"]["rules"][0]["backendRefs"][0]["kind"] = json!("Service");
        let have: HTTPRoute = serde_json::from_value(stored).unwrap();
        assert!(route_matches(&have.spec, &want.spec));
        let moved = route(&svc, vec![backend(&svc, &a, 90)]);
        assert!(!route_matches(&have.spec, &moved.spec));

        let g = gateway(&svc, "istio");
        let mut stored = serde_json::to_value(&g).unwrap();
        stored["spec"]["listeners"][0]["allowedRoutes"] = json!({"namespaces": {"from": "Same"}});
        let have: Gateway = serde_json::from_value(stored).unwrap();
        assert!(gateway_matches(&have.spec, &g.spec));
        assert!(!gateway_matches(&have.spec, &gateway(&svc, "envoy").spec));
    }

    #[test]
    fn readiness_needs_the_gateway_programmed_and_the_route_accepted_with_refs_resolved() {
        let svc = service();
        let cond = |t: &str| json!({"type": t, "status": "True", "reason": t, "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"});
        let mut g: Gateway = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "web-gateway", "namespace": "ns"},
            "spec": {"gatewayClassName": "istio", "listeners": []},
            "status": {"conditions": [cond("Accepted")]}
        }))
        .unwrap();
        assert!(!gateway_ready(&g));
        g.status
            .as_mut()
            .unwrap()
            .conditions
            .as_mut()
            .unwrap()
            .push(serde_json::from_value(cond("Programmed")).unwrap());
        assert!(gateway_ready(&g));
        let mut r = route(&svc, vec![]);
        assert!(!route_ready(&g, &r));
        r.status = Some(
            serde_json::from_value(json!({"parents": [{
                "parentRef": {"name": "web-gateway", "namespace": "ns"}, "controllerName": "x/y",
                "conditions": [cond("Accepted"), cond("ResolvedRefs")]}]}))
            .unwrap(),
        );
        assert!(route_ready(&g, &r));
        r.status.as_mut().unwrap().parents[0].parent_ref.name = "other".into();
        assert!(!route_ready(&g, &r));
    }

    #[test]
    fn a_route_lags_while_its_gateway_reported_on_an_older_generation() {
        let svc = service();
        let g: Gateway = serde_json::from_value(json!({
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
            "metadata": {"name": "web-gateway", "namespace": "ns"},
            "spec": {"gatewayClassName": "istio", "listeners": []}
        }))
        .unwrap();
        let accepted = |gw: &str, generation: Option<i64>| {
            let mut c = json!({"type": "Accepted", "status": "True", "reason": "Accepted",
                "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"});
            if let Some(n) = generation {
                c["observedGeneration"] = json!(n);
            }
            json!({"parentRef": {"name": gw, "namespace": "ns"}, "controllerName": "x/y", "conditions": [c]})
        };
        let mut r = route(&svc, vec![]);
        r.metadata.generation = Some(3);
        let with = |parents: Value| -> HTTPRoute {
            let mut r = r.clone();
            r.status = Some(serde_json::from_value(json!({ "parents": parents })).unwrap());
            r
        };
        assert_eq!(
            route_lag(&g, &with(json!([accepted("web-gateway", Some(2))]))),
            Some(2)
        );
        assert_eq!(
            route_lag(&g, &with(json!([accepted("web-gateway", Some(3))]))),
            None
        );
        // Without observedGeneration, or only another Gateway's entry
        // lagging: nothing to wait for.
        assert_eq!(
            route_lag(&g, &with(json!([accepted("web-gateway", None)]))),
            None
        );
        assert_eq!(
            route_lag(&g, &with(json!([accepted("other", Some(1))]))),
            None
        );
        assert_eq!(route_lag(&g, &r), None, "no status at all");
    }
}
