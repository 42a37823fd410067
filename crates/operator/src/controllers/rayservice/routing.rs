//! The incremental upgrade's objects on the API server: whether the Gateway
//! API is installed at all, the Gateway and HTTPRoute read fresh each
//! reconcile (they are not watched, as in KubeRay, so a cluster without the
//! Gateway API CRDs starts the operator as any other), created when missing
//! and patched back when what the operator manages drifted, and each
//! cluster's own serve service (the route's backends).

use k8s_openapi::api::core::v1::Service;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kuberay_api::{RayCluster, RayService};
use serde::Serialize;

use super::gateway::{self, Gateway, HTTPRoute};
use super::reconcile::Error;
use super::{Context, services};
use crate::kit::applier::{self, Outcome};
use crate::kit::runner::Reason;

/// The Gateway and HTTPRoute of a RayService as they are now.
#[derive(Default)]
pub struct Routes {
    pub gateway: Option<Gateway>,
    pub route: Option<HTTPRoute>,
}

impl Routes {
    /// KubeRay's precondition for moving capacity: the Gateway and the
    /// route are ready; otherwise why not.
    pub fn ready(&self) -> Result<(), &'static str> {
        let g = self
            .gateway
            .as_ref()
            .filter(|g| gateway::gateway_ready(g))
            .ok_or("the Gateway is not ready (Accepted and Programmed) yet")?;
        self.route
            .as_ref()
            .filter(|r| gateway::route_ready(g, r))
            .map(|_| ())
            .ok_or("the HTTPRoute is not ready (Accepted and ResolvedRefs) yet")
    }

    /// What capacity that leaves a cluster waits for while the Gateway may
    /// still route by an older version of the route: its controller
    /// reported on an older generation than the route has.
    pub fn route_lag(&self) -> Option<String> {
        let (g, r) = (self.gateway.as_ref()?, self.route.as_ref()?);
        let seen = gateway::route_lag(g, r)?;
        Some(format!(
            "for the Gateway's controller to process the HTTPRoute's generation {} (it reported on {seen})",
            r.metadata.generation.unwrap_or_default()
        ))
    }
}

/// Whether the API server serves `gateway.networking.k8s.io/v1` Gateways
/// and HTTPRoutes (a discovery request, which needs no RBAC rule).
pub async fn gateway_api_installed(ctx: &Context) -> Result<bool, Error> {
    let gv = format!("{}/{}", gateway::GROUP, gateway::VERSION);
    match ctx.client.list_api_group_resources(&gv).await {
        Ok(list) => {
            let has = |n: &str| list.resources.iter().any(|r| r.name == n);
            Ok(has("gateways") && has("httproutes"))
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(false),
        Err(source) => Err(Error::GatewayApi(source)),
    }
}

async fn get_opt<K>(api: &Api<K>, name: &str) -> Result<Option<K>, Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    api.get_opt(name).await.map_err(Error::GatewayApi)
}

pub async fn read(svc: &RayService, ctx: &Context) -> Result<Routes, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let gateways: Api<Gateway> = Api::namespaced(ctx.client.clone(), &ns);
    let routes: Api<HTTPRoute> = Api::namespaced(ctx.client.clone(), &ns);
    Ok(Routes {
        gateway: get_opt(&gateways, &gateway::gateway_name(svc)).await?,
        route: get_opt(&routes, &gateway::route_name(svc)).await?,
    })
}

/// What to write to make `have` into `want`, for events and errors.
enum Write {
    Create,
    Update,
}

/// Creates `want` if `have` is `None`, patches its spec if `matches` says
/// it drifted; reports each with KubeRay's event reasons.
async fn ensure<K>(
    svc: &RayService,
    have: Option<&K>,
    want: &K,
    spec: &impl Serialize,
    matches: impl Fn(&K) -> bool,
    ctx: &Context,
) -> Result<(), Error>
where
    K: kube::Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let kind = K::kind(&()).to_string();
    let ns = svc.namespace().unwrap_or_default();
    let name = want.name_any();
    let write = match have {
        None => Write::Create,
        Some(h) if !matches(h) => Write::Update,
        Some(_) => return Ok(()),
    };
    let api: Api<K> = Api::namespaced(ctx.client.clone(), &ns);
    let result = match write {
        Write::Create => api.create(&PostParams::default(), want).await.map(|_| ()),
        Write::Update => {
            let patch = serde_json::json!({ "spec": spec });
            api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map(|_| ())
        }
    };
    let (done, verb) = match write {
        Write::Create => ("Created", "create"),
        Write::Update => ("Updated", "update"),
    };
    match result {
        Ok(()) => {
            ctx.events
                .normal(
                    svc,
                    &format!("{done}{kind}"),
                    if matches!(write, Write::Create) {
                        "Create"
                    } else {
                        "Update"
                    },
                    format!(
                        "{done} the {kind} {ns}/{name} for RayService {ns}/{}",
                        svc.name_any()
                    ),
                )
                .await;
            Ok(())
        }
        // Made by an earlier reconcile whose GET raced it.
        Err(kube::Error::Api(s)) if s.code == 409 && matches!(write, Write::Create) => Ok(()),
        Err(source) => {
            let err = Error::Routing {
                kind: kind.clone(),
                name: name.clone(),
                create: matches!(write, Write::Create),
                source,
            };
            ctx.events
                .warning(
                    svc,
                    err.reason(),
                    if matches!(write, Write::Create) {
                        "Create"
                    } else {
                        "Update"
                    },
                    format!("Failed to {verb} the {kind} {ns}/{name}: {err}"),
                )
                .await;
            Err(err)
        }
    }
}

/// `<service>-gateway` of the class in `clusterUpgradeOptions`.
pub async fn ensure_gateway(
    svc: &RayService,
    class: &str,
    routes: &Routes,
    ctx: &Context,
) -> Result<(), Error> {
    let want = gateway::gateway(svc, class);
    ensure(
        svc,
        routes.gateway.as_ref(),
        &want,
        &want.spec,
        |h: &Gateway| gateway::gateway_matches(&h.spec, &want.spec),
        ctx,
    )
    .await
}

/// `<service>-httproute` as `want`; returns the route as it now is.
pub async fn ensure_route(
    svc: &RayService,
    want: HTTPRoute,
    routes: &Routes,
    ctx: &Context,
) -> Result<HTTPRoute, Error> {
    ensure(
        svc,
        routes.route.as_ref(),
        &want,
        &want.spec,
        |h: &HTTPRoute| gateway::route_matches(&h.spec, &want.spec),
        ctx,
    )
    .await?;
    Ok(want)
}

/// `<cluster>-serve-svc`, owned by the cluster so that it goes with it.
pub async fn ensure_cluster_serve_service(
    svc: &RayService,
    cluster: &RayCluster,
    ctx: &Context,
) -> Result<(), Error> {
    if cluster.uid().is_none() {
        // Not read back from the API server yet: no owner reference to give.
        return Ok(());
    }
    let Some(desired) = services::cluster_serve(svc, cluster) else {
        return Ok(());
    };
    let name = desired.name_any();
    match applier::ensure::<Service>(&ctx.client, &ctx.services, &desired).await {
        Ok(Outcome::Created) => {
            let ns = svc.namespace().unwrap_or_default();
            ctx.events
                .normal(
                    svc,
                    "CreatedService",
                    "Create",
                    format!("Created the service {ns}/{name}"),
                )
                .await;
            Ok(())
        }
        Ok(_) => Ok(()),
        Err(source) => Err(Error::Service { name, source }),
    }
}

/// Deletes the Gateway and HTTPRoute of `svc` (suspend); `true` while one
/// of them still existed. A missing Gateway API counts as deleted.
pub async fn delete_routes(svc: &RayService, ctx: &Context, why: &str) -> Result<bool, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let gateways: Api<Gateway> = Api::namespaced(ctx.client.clone(), &ns);
    let routes: Api<HTTPRoute> = Api::namespaced(ctx.client.clone(), &ns);
    let mut left = false;
    for (kind, name, result) in [
        (
            "HTTPRoute",
            gateway::route_name(svc),
            routes
                .delete(&gateway::route_name(svc), &DeleteParams::background())
                .await
                .map(|_| ()),
        ),
        (
            "Gateway",
            gateway::gateway_name(svc),
            gateways
                .delete(&gateway::gateway_name(svc), &DeleteParams::background())
                .await
                .map(|_| ()),
        ),
    ] {
        match result {
            Ok(()) => {
                left = true;
                ctx.events
                    .normal(
                        svc,
                        &format!("Deleted{kind}"),
                        "Delete",
                        format!("Deleted the {kind} {ns}/{name} {why}"),
                    )
                    .await;
            }
            Err(kube::Error::Api(s)) if s.code == 404 => {}
            Err(source) => {
                let reason = format!("FailedToDelete{kind}");
                let err = Error::GatewayApi(source);
                ctx.events
                    .warning(
                        svc,
                        &reason,
                        "Delete",
                        format!("Failed to delete the {kind} {ns}/{name} {why}: {err}"),
                    )
                    .await;
                return Err(err);
            }
        }
    }
    Ok(left)
}
