//! One reconcile of one RayService, in KubeRay's order: read tolerantly,
//! skip what another controller manages, finish a deletion, validate,
//! add the finalizer, follow suspend, clean up clusters no longer wanted,
//! create or update the active and pending clusters, set the head pods'
//! `ray.io/serve` label, submit Serve config to the cluster being prepared
//! (never to the live one during an upgrade), point the services at the
//! cluster ready to serve, promote it, decide whether a new cluster is
//! needed, and write the status only when it changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kube::ResourceExt;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kuberay_api::names::{CLUSTER_LABEL, SERVE_LABEL};
use kuberay_api::rayservice::{AppStatus, RayServiceStatus};
use kuberay_api::schema::MANAGED_BY_KUBERAY;
use kuberay_api::tolerant::Tolerant;
use kuberay_api::validation::validate_rayservice;
use kuberay_api::{RayCluster, RayService, RayServiceStatuses};

use super::cluster::{self, Plan};
use super::gateway::{self, HTTPRoute};
use super::incremental::{self, Rollback};
use super::routing::{self, Routes};
use super::status::{self, *};
use super::suspend::{self, Step};
use super::{Context, FINALIZER, Key, serve, services};
use crate::controllers::readable;
use crate::kit::applier::{self, ApplyError, Outcome, api_message};
use crate::kit::finalizer;
use crate::kit::runner::Reason;
use crate::ray::conditions::HEAD_POD_READY;
use crate::ray::dashboard;
use crate::ray::service::{dashboard_url, serve_port};

/// KubeRay's default `rayClusterDeletionDelaySeconds`.
const DEFAULT_DELETION_DELAY: Duration = Duration::from_secs(60);

/// Why a reconcile failed, one variant per step that can; the reason is
/// KubeRay's event reason.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("creating the RayCluster {name}: {}", api_message(.source))]
    CreateCluster { name: String, source: kube::Error },
    #[error("updating the RayCluster {name}: {}", api_message(.source))]
    UpdateCluster { name: String, source: kube::Error },
    #[error("deleting the RayCluster {name}: {}", api_message(.source))]
    DeleteCluster { name: String, source: kube::Error },
    #[error("service {name}: {source}")]
    Service { name: String, source: ApplyError },
    #[error("deleting the service {name}: {}", api_message(.source))]
    DeleteService { name: String, source: kube::Error },
    #[error("labelling the head pod {name}: {}", api_message(.source))]
    ServeLabel { name: String, source: kube::Error },
    #[error("{0}")]
    Serve(String),
    #[error("listing the EndpointSlices of {name}: {}", api_message(.source))]
    Endpoints { name: String, source: kube::Error },
    #[error("updating the finalizer: {}", api_message(.0))]
    Finalizer(kube::Error),
    #[error("updating the status: {}", api_message(.0))]
    Status(kube::Error),
    #[error("the Gateway API objects: {}", api_message(.0))]
    GatewayApi(kube::Error),
    #[error("writing the {kind} {name}: {}", api_message(.source))]
    Routing {
        kind: String,
        name: String,
        create: bool,
        source: kube::Error,
    },
    #[error("{0}")]
    TargetCapacity(String),
}

impl Reason for Error {
    fn reason(&self) -> &'static str {
        match self {
            Error::CreateCluster { .. } => "FailedToCreateRayCluster",
            Error::UpdateCluster { .. } => "FailedToUpdateRayCluster",
            Error::DeleteCluster { .. } => "FailedToDeleteRayCluster",
            Error::Service { .. } => "FailedToCreateService",
            Error::DeleteService { .. } => "FailedToDeleteService",
            Error::ServeLabel { .. } => "FailedToUpdateHeadPodServeLabel",
            Error::Serve(_) => "FailedToUpdateServeApplications",
            Error::Endpoints { .. } => "FailedToListEndpointSlices",
            Error::Finalizer(_) => "FailedToUpdateFinalizer",
            Error::Status(_) => "FailedToUpdateStatus",
            Error::GatewayApi(_) => "FailedToReadGatewayAPIObjects",
            Error::Routing { kind, create, .. } => match (kind.as_str(), create) {
                ("Gateway", true) => "FailedToCreateGateway",
                ("Gateway", false) => "FailedToUpdateGateway",
                (_, true) => "FailedToCreateHTTPRoute",
                (_, false) => "FailedToUpdateHTTPRoute",
            },
            Error::TargetCapacity(_) => "FailedToUpdateTargetCapacity",
        }
    }
}

pub async fn reconcile(obj: Arc<Tolerant<RayService>>, ctx: Arc<Context>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let note = |e: &str| format!("{ns}/{name}: cannot be read: {e}");
    let Some(svc) = readable(&obj, &ctx.events, "InvalidRayServiceSpec", note).await else {
        return Ok(Action::await_change());
    };
    if svc
        .spec
        .managed_by
        .as_deref()
        .is_some_and(|m| m != MANAGED_BY_KUBERAY)
    {
        return Ok(Action::await_change());
    }
    let key: Key = (ns.clone(), name.clone());
    if svc.metadata.deletion_timestamp.is_some() {
        return finish_deletion(svc, &ctx).await;
    }
    let old = svc.status.clone().unwrap_or_default();
    if ctx.written.stale(&key, &old) {
        return Ok(Action::requeue(Duration::from_millis(200)));
    }
    let now = Time(ctx.clock.now());
    let mut st = old.clone();
    if let Some(problems) = invalid(svc, &ctx) {
        st.observed_generation = svc.metadata.generation;
        status::set(&mut st, READY, false, VALIDATION_FAILED, &problems, &now);
        if write_status(svc, &old, st, &ctx).await? {
            let note = format!("{ns}/{name}: {problems}");
            ctx.events
                .warning(svc, "InvalidRayServiceSpec", "Validate", note)
                .await;
        }
        return Ok(Action::await_change());
    }
    if !finalizer::has(svc, FINALIZER) {
        finalizer::add(&ctx.client, svc, FINALIZER)
            .await
            .map_err(Error::Finalizer)?;
    }
    if let Step::Stop { again } = suspend::step(svc, &mut st, &ctx, &now).await? {
        write_status(svc, &old, st, &ctx).await?;
        return Ok(if again {
            Action::requeue(ctx.poll)
        } else {
            Action::await_change()
        });
    }
    let cleanup = clean_up_clusters(svc, &st, &ctx).await?;
    if status::timed_out(&st) {
        write_status(svc, &old, st, &ctx).await?;
        return Ok(cleanup.map_or_else(Action::await_change, Action::requeue));
    }
    let incremental = incremental::enabled(svc, &ctx.cfg.gates);
    if incremental && !routing::gateway_api_installed(&ctx).await? {
        return gateway_api_missing(svc, &old, st, &ctx, &now).await;
    }
    let mut pass = Pass::default();
    let result = converge(svc, &key, &mut st, &ctx, &mut pass).await;
    st.observed_generation = svc.metadata.generation;
    if let Some(message) = status::conclude(svc, &mut st, &pass.waiting.join("; "), &now) {
        ctx.events
            .warning(svc, "RayServiceInitializingTimeout", "Reconcile", message)
            .await;
    }
    if status::timed_out(&st) {
        // The clusters are no longer wanted: clean them up from now on.
        pass.settled = false;
    }
    let next_timeout = status::timeout_deadline(svc, &st);
    write_status(svc, &old, st, &ctx).await?;
    result?;
    if let Some(e) = pass.serve_error {
        return Err(e);
    }
    let mut wait = if pass.settled { ctx.poll * 5 } else { ctx.poll };
    for deadline in [cleanup, next_timeout.map(|t| until(t, &ctx))]
        .into_iter()
        .flatten()
    {
        wait = wait.min(deadline + Duration::from_millis(100));
    }
    Ok(Action::requeue(wait))
}

/// How often a RayService waiting for the Gateway API CRDs looks again.
const GATEWAY_API_RECHECK: Duration = Duration::from_secs(30);

/// An incremental upgrade on a cluster without the Gateway API: said in the
/// `Ready` condition and one Warning event, nothing created, looked at
/// again now and then (installing the CRDs changes no RayService).
async fn gateway_api_missing(
    svc: &RayService,
    old: &RayServiceStatuses,
    mut st: RayServiceStatuses,
    ctx: &Context,
    now: &Time,
) -> Result<Action, Error> {
    let msg = "spec.upgradeStrategy.type NewClusterWithIncrementalUpgrade needs the Gateway API \
               (gateway.networking.k8s.io/v1 Gateway and HTTPRoute), whose CRDs are not installed \
               in this cluster: install the Gateway API standard CRDs and a Gateway controller \
               for the gatewayClassName, or use upgradeStrategy.type NewCluster";
    let known = status::reason_of(old, READY) == Some(GATEWAY_API_MISSING);
    st.observed_generation = svc.metadata.generation;
    status::set(&mut st, READY, false, GATEWAY_API_MISSING, msg, now);
    st.service_status = Some(kuberay_api::rayservice::ServiceStatus::New);
    write_status(svc, old, st, ctx).await?;
    if !known {
        let ns = svc.namespace().unwrap_or_default();
        ctx.events
            .warning(
                svc,
                "FailedToCreateGateway",
                "Create",
                format!("{ns}/{}: {msg}", svc.name_any()),
            )
            .await;
    }
    Ok(Action::requeue(GATEWAY_API_RECHECK))
}

fn until(t: Timestamp, ctx: &Context) -> Duration {
    Duration::try_from(t.duration_since(ctx.clock.now())).unwrap_or_default()
}

/// Every problem of the spec, or `None`: the API's validation, then what
/// this operator refuses.
fn invalid(svc: &RayService, ctx: &Context) -> Option<String> {
    let mut problems = Vec::new();
    if let Err(e) = validate_rayservice(svc, &ctx.cfg.gates) {
        problems.push(e.to_string());
    }
    problems.extend(status::refusals(svc, &cluster::ray_cluster(svc, "probe")));
    (!problems.is_empty()).then(|| problems.join("; "))
}

/// What one reconcile learnt on its way.
#[derive(Default)]
struct Pass {
    /// What the service waits for, for the Ready message.
    waiting: Vec<String>,
    /// A failed Serve submission: reported after the status is written,
    /// so the reconcile backs off instead of retrying in a hot loop.
    serve_error: Option<Error>,
    /// Ready, no upgrade: the next look can wait longer.
    settled: bool,
}

/// The steps between the status read and the status write.
async fn converge(
    svc: &RayService,
    key: &Key,
    st: &mut RayServiceStatuses,
    ctx: &Context,
    pass: &mut Pass,
) -> Result<(), Error> {
    let ns = &key.0;
    let goal = &svc.spec.ray_cluster_config;
    let now = Time(ctx.clock.now());
    let active_name = status::active_name(st).map(String::from);
    let pending_name = status::pending_name(st).map(String::from);
    ctx.keep_submissions(
        key,
        &[
            active_name.as_deref().unwrap_or(""),
            pending_name.as_deref().unwrap_or(""),
        ],
    );
    let find = |n: &Option<String>| {
        n.as_deref()
            .and_then(|n| ctx.clusters.get(ns, n))
            .filter(|c| c.metadata.deletion_timestamp.is_none())
    };
    let active = find(&active_name);
    let mut pending = find(&pending_name);
    if let (Some(name), None) = (&pending_name, &pending) {
        pending = Some(Arc::new(create_cluster(svc, name, ctx).await?));
        pass.waiting
            .push(format!("RayCluster {name} was just created"));
    }
    let upgrading = pending.is_some();
    if let Some(a) = active.as_deref().filter(|_| !upgrading) {
        update_in_place(svc, a, "active", ctx).await?;
    }
    if let Some(p) = pending.as_deref() {
        update_in_place(svc, p, "pending", ctx).await?;
    }
    // The incremental upgrade reads its Gateway and route as they are, and
    // decides about a rollback before anything is served.
    let routes = if incremental::enabled(svc, &ctx.cfg.gates) {
        Some(routing::read(svc, ctx).await?)
    } else {
        None
    };
    if routes.is_some() && incremental::in_progress(st) {
        match (active.as_deref(), pending.as_deref()) {
            (Some(a), Some(p)) => rollback_state(svc, st, a, p, &now),
            // KubeRay warns on every pass; the event recorder folds the
            // repeats into one event with a count.
            (None, _) => {
                let gone = active_name.as_deref().unwrap_or("(none recorded)");
                let msg = format!(
                    "Active cluster not found, rollback cannot be initiated: RayCluster {gone} \
                     is gone or being deleted"
                );
                pass.waiting.push(format!(
                    "the active RayCluster {gone} of the upgrade is gone; no rollback is possible"
                ));
                ctx.events
                    .warning(svc, "RollbackImpossible", "Reconcile", msg)
                    .await;
            }
            (Some(_), None) => {}
        }
    }
    for c in [active.as_deref(), pending.as_deref()]
        .into_iter()
        .flatten()
    {
        label_head_pod(svc, c, ctx).await?;
    }
    let mut pending_ready = false;
    let mut active_ready = false;
    let mut pending_apps = None;
    let mut active_apps = None;
    if let Some(p) = pending.as_deref() {
        (pending_ready, pending_apps) = serve_on(svc, key, p, ctx, pass, st, routes.as_ref()).await;
    }
    if let Some(a) = active.as_deref() {
        let serve_active = match pending {
            None => !cluster::needs_new_cluster(svc, a, ctx.cfg.zero_downtime).0,
            // The live cluster keeps its part of the capacity moving.
            Some(_) => routes.is_some(),
        };
        if serve_active {
            (active_ready, active_apps) =
                serve_on(svc, key, a, ctx, pass, st, routes.as_ref()).await;
        }
    }
    let mut route = None;
    if let Some(routes) = routes.as_ref() {
        route = reconcile_routing(
            svc,
            st,
            active.as_deref(),
            pending.as_deref(),
            pending_ready,
            routes,
            ctx,
            pass,
        )
        .await?;
    }
    // During an incremental upgrade the head service stays on the live
    // cluster; traffic moves through the route instead.
    let incremental_upgrade = routes.is_some() && incremental::in_progress(st);
    let target = if pending_ready && !incremental_upgrade {
        pending.as_deref()
    } else if active_ready || pending_ready {
        active.as_deref()
    } else {
        None
    };
    let mut serving = ctx
        .services
        .get(ns, &services::serve_name(svc))
        .and_then(|s| services::selected_cluster(&s));
    if let Some(t) = target {
        apply_services(svc, t, routes.is_none(), ctx).await?;
        serving = Some(t.name_any());
    }
    let as_status = |c: Option<&Arc<RayCluster>>,
                     old: Option<&RayServiceStatus>,
                     apps: Option<BTreeMap<String, AppStatus>>| {
        c.map(|c| RayServiceStatus {
            application_statuses: apps.or_else(|| old.and_then(|o| o.application_statuses.clone())),
            ray_cluster_name: Some(c.name_any()),
            ray_cluster_status: c.status.clone(),
            ..old.cloned().unwrap_or_default()
        })
    };
    if active.is_some() || active_name.is_none() {
        st.active_service_status = Some(
            as_status(
                active.as_ref(),
                st.active_service_status.as_ref(),
                active_apps,
            )
            .unwrap_or_default(),
        );
    }
    if let Some(p) = pending.as_ref() {
        st.pending_service_status =
            as_status(Some(p), st.pending_service_status.as_ref(), pending_apps);
    }
    let promoted = if routes.is_some() {
        if target.is_some() {
            // The route's weights become the status's traffic.
            let weights = gateway::weights(
                route.as_ref(),
                active_name.as_deref(),
                pending_name.as_deref(),
            );
            incremental::record_traffic(st, weights, pending.is_some(), &now);
        }
        target.is_some()
            && if incremental::in_progress(st) {
                !incremental::rolling_back(st) && incremental::complete(st, pending.is_some())
            } else {
                active_name.is_none() && pending_name.is_some()
            }
    } else {
        // Promotion: the services now select the pending cluster.
        pending_name.is_some() && serving == pending_name
    };
    if promoted {
        tracing::info!(%ns, rayservice = %key.1, cluster = ?pending_name, "promoting the pending cluster to active");
        st.active_service_status = st.pending_service_status.take();
        st.pending_service_status = Some(RayServiceStatus::default());
    }
    let (active_now, mut pending_now) = if promoted {
        (pending.clone(), None)
    } else {
        (active.clone(), pending.clone())
    };
    if routes.is_some() && incremental::rolling_back(st) {
        let head_ready = pending_now.as_deref().is_some_and(|p| {
            p.status.as_ref().is_some_and(|s| {
                crate::kit::conditions::is_true(s.conditions.as_ref(), HEAD_POD_READY)
            })
        });
        if incremental::rollback_complete(st, head_ready) {
            tracing::info!(%ns, rayservice = %key.1, "rollback complete; dropping the pending cluster");
            st.pending_service_status = Some(RayServiceStatus::default());
            pending_now = None;
            if let Some(cs) = st.conditions.as_mut() {
                crate::kit::conditions::remove(cs, ROLLBACK_IN_PROGRESS);
            }
            status::set(
                st,
                UPGRADE_IN_PROGRESS,
                false,
                NO_PENDING_CLUSTER,
                "Rollback complete, active Ray cluster exists and no pending Ray cluster",
                &now,
            );
        }
    }
    let named_before = status::pending_name(st).map(String::from);
    prepare_or_cancel(
        svc,
        st,
        active_now.as_deref(),
        pending_now.as_deref(),
        routes.is_some(),
        ctx,
        pass,
    )
    .await;
    if routes.is_some()
        && let Some(p) = st.pending_service_status.as_mut()
        && p.ray_cluster_name.is_some()
        && p.ray_cluster_name != named_before
    {
        p.target_capacity = None;
        let start = incremental::initial_capacity(st);
        if let Some(p) = st.pending_service_status.as_mut() {
            p.target_capacity = start;
        }
    }
    let serve_names = serve_services(svc, active.as_deref(), pending.as_deref(), routes.is_some());
    let mut endpoints = 0;
    for service in &serve_names {
        endpoints += count_endpoints(ns, service, ctx).await?;
    }
    st.num_serve_endpoints = Some(endpoints);
    if endpoints == 0 {
        pass.waiting.push(format!(
            "no ready endpoint behind the service {}",
            serve_names.join(" or ")
        ));
    }
    if goal.worker_group_specs.is_none()
        && endpoints == 0
        && svc.spec.exclude_head_pod_from_serve_svc == Some(true)
    {
        pass.waiting.push(
            "the head pod is excluded from the serve service and there is no worker group".into(),
        );
    }
    pass.settled = endpoints > 0 && status::pending_name(st).is_none();
    Ok(())
}

/// The serve services whose ready pods are the service's endpoints: the
/// RayService's own, or in an incremental upgrade each cluster's.
fn serve_services(
    svc: &RayService,
    active: Option<&RayCluster>,
    pending: Option<&RayCluster>,
    incremental: bool,
) -> Vec<String> {
    if !incremental {
        return vec![services::serve_name(svc)];
    }
    let mut out = vec![active.map_or_else(
        || services::serve_name(svc),
        |a| gateway::cluster_serve_service_name(&a.name_any()),
    )];
    out.extend(pending.map(|p| gateway::cluster_serve_service_name(&p.name_any())));
    out
}

/// KubeRay's `reconcileRollbackState`: a spec that is no longer the
/// pending cluster's during an incremental upgrade rolls back to the
/// active cluster first; back at the pending one's, the upgrade resumes.
fn rollback_state(
    svc: &RayService,
    st: &mut RayServiceStatuses,
    active: &RayCluster,
    pending: &RayCluster,
    now: &Time,
) {
    let goal = &svc.spec.ray_cluster_config;
    let is_active = cluster::plan(goal, &active.spec) != Plan::NewCluster;
    let is_pending = cluster::plan(goal, &pending.spec) != Plan::NewCluster;
    match incremental::rollback_decision(is_active, is_pending, incremental::rolling_back(st)) {
        Rollback::Start(message) => {
            tracing::info!(rayservice = %svc.name_any(), "{message}");
            status::set(
                st,
                ROLLBACK_IN_PROGRESS,
                true,
                incremental::DESIRED_CLUSTER_SPEC_CHANGED,
                message,
                now,
            );
        }
        Rollback::Cancel => {
            tracing::info!(rayservice = %svc.name_any(), "the spec is the pending cluster's again; resuming the upgrade");
            if let Some(cs) = st.conditions.as_mut() {
                crate::kit::conditions::remove(cs, ROLLBACK_IN_PROGRESS);
            }
        }
        Rollback::Keep => {}
    }
}

/// The Gateway API side of an incremental upgrade: each cluster's serve
/// service, the Gateway, and the route with this step's weights (once
/// there is an active cluster to route to). Returns the route as desired.
#[allow(clippy::too_many_arguments)]
async fn reconcile_routing(
    svc: &RayService,
    st: &RayServiceStatuses,
    active: Option<&RayCluster>,
    pending: Option<&RayCluster>,
    pending_ready: bool,
    routes: &Routes,
    ctx: &Context,
    pass: &mut Pass,
) -> Result<Option<HTTPRoute>, Error> {
    let Some(opts) = incremental::options(svc) else {
        return Ok(None);
    };
    for c in [active, pending].into_iter().flatten() {
        routing::ensure_cluster_serve_service(svc, c, ctx).await?;
    }
    routing::ensure_gateway(svc, &opts.gateway_class_name, routes, ctx).await?;
    let Some(a) = active else {
        return Ok(None);
    };
    let (aw, pw) = incremental::weights(st, opts, pending_ready, ctx.clock.now());
    let mut backends = vec![gateway::backend(svc, a, aw)];
    if let Some(p) = pending {
        backends.push(gateway::backend(svc, p, pw));
        if let Err(why) = routes.ready() {
            pass.waiting
                .push(format!("the incremental upgrade waits: {why}"));
        }
    }
    let desired = gateway::route(svc, backends);
    Ok(Some(
        routing::ensure_route(svc, desired, routes, ctx).await?,
    ))
}

/// KubeRay's `shouldPrepareNewCluster`, plus a cancel: a pending cluster
/// is dropped when the spec went back to what the active one runs (in an
/// incremental upgrade a rollback does that instead, and no cluster is
/// prepared while it runs).
async fn prepare_or_cancel(
    svc: &RayService,
    st: &mut RayServiceStatuses,
    active: Option<&RayCluster>,
    pending: Option<&RayCluster>,
    incremental: bool,
    ctx: &Context,
    pass: &mut Pass,
) {
    if incremental && incremental::rolling_back(st) {
        return;
    }
    let fresh = || RayServiceStatus {
        ray_cluster_name: Some(cluster::new_cluster_name(&svc.name_any())),
        ..Default::default()
    };
    match (active, pending) {
        (None, None) => {
            if status::pending_name(st).is_none() {
                st.pending_service_status = Some(fresh());
            }
        }
        (Some(_), Some(_)) if incremental => {}
        (Some(a), Some(p)) => {
            let goal = &svc.spec.ray_cluster_config;
            if cluster::plan(goal, &a.spec) != Plan::NewCluster {
                tracing::info!(rayservice = %svc.name_any(), pending = %p.name_any(), "the spec is back to the active cluster's; dropping the pending cluster");
                st.pending_service_status = Some(RayServiceStatus::default());
            } else if cluster::plan(goal, &p.spec) == Plan::NewCluster {
                st.pending_service_status = Some(fresh());
            }
        }
        (Some(c), None) | (None, Some(c)) => {
            let (new, refused) = cluster::needs_new_cluster(svc, c, ctx.cfg.zero_downtime);
            if new && pending.is_none() {
                st.pending_service_status = Some(fresh());
            } else if new {
                // Only a pending cluster, and it is outdated: replace it.
                st.pending_service_status = Some(fresh());
            }
            if let Some(msg) = refused {
                pass.waiting.push(msg.clone());
                if let Some(cs) = st.conditions.as_ref()
                    && !cs.iter().any(|c| c.message == msg)
                {
                    ctx.events
                        .warning(svc, "ClusterSpecChangeNotApplied", "Reconcile", msg)
                        .await;
                }
            }
        }
    }
}

async fn create_cluster(svc: &RayService, name: &str, ctx: &Context) -> Result<RayCluster, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let desired = cluster::ray_cluster(svc, name);
    let api: Api<RayCluster> = Api::namespaced(ctx.client.clone(), &ns);
    match api.create(&PostParams::default(), &desired).await {
        Ok(c) => {
            ctx.events
                .normal(
                    svc,
                    "CreatedRayCluster",
                    "Create",
                    format!("Created the RayCluster {ns}/{name}"),
                )
                .await;
            Ok(c)
        }
        // Made by an earlier reconcile the cache does not show yet.
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(desired),
        Err(source) => {
            let err = Error::CreateCluster {
                name: name.into(),
                source,
            };
            ctx.events
                .warning(
                    svc,
                    err.reason(),
                    "Create",
                    format!("Failed to create the RayCluster {ns}/{name}: {err}"),
                )
                .await;
            Err(err)
        }
    }
}

/// Updates `c` to the spec where KubeRay does (worker groups added at the
/// end) and, without the autoscaler, replica counts; its `suspend` stays.
async fn update_in_place(
    svc: &RayService,
    c: &RayCluster,
    role: &str,
    ctx: &Context,
) -> Result<(), Error> {
    if cluster::plan(&svc.spec.ray_cluster_config, &c.spec) != Plan::InPlace {
        return Ok(());
    }
    let name = c.name_any();
    let ns = svc.namespace().unwrap_or_default();
    let goal = cluster::ray_cluster(svc, &name);
    let mut spec = serde_json::to_value(&goal.spec).expect("serialisable");
    spec["suspend"] = serde_json::json!(c.spec.suspend);
    let patch = serde_json::json!({
        "metadata": {"labels": goal.metadata.labels, "annotations": goal.metadata.annotations},
        "spec": spec,
    });
    let api: Api<RayCluster> = Api::namespaced(ctx.client.clone(), &ns);
    match api
        .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            ctx.events
                .normal(
                    svc,
                    "UpdatedRayCluster",
                    "Update",
                    format!("Updated the {role} RayCluster {ns}/{name}"),
                )
                .await;
            Ok(())
        }
        Err(source) => {
            let err = Error::UpdateCluster {
                name: name.clone(),
                source,
            };
            ctx.events
                .warning(
                    svc,
                    err.reason(),
                    "Update",
                    format!("Failed to update the {role} RayCluster {ns}/{name}: {err}"),
                )
                .await;
            Err(err)
        }
    }
}

/// Sets the head pod's `ray.io/serve` label from its proxy's health (or
/// `false` with `excludeHeadPodFromServeSvc`), so the serve service only
/// sends traffic to a head that can take it.
async fn label_head_pod(svc: &RayService, c: &RayCluster, ctx: &Context) -> Result<(), Error> {
    let ns = svc.namespace().unwrap_or_default();
    let cname = c.name_any();
    let Some(head) = head_pod(svc, &cname, ctx) else {
        return Ok(());
    };
    let running = head.status.as_ref().and_then(|s| s.phase.as_deref()) == Some("Running");
    let ip = head.status.as_ref().and_then(|s| s.pod_ip.clone());
    let healthy = match (
        svc.spec.exclude_head_pod_from_serve_svc == Some(true),
        running,
        ip,
    ) {
        (false, true, Some(ip)) => ctx
            .dashboards
            .serve_proxy(c, &ip, serve_port(c))
            .proxy_health()
            .await
            .is_ok(),
        _ => false,
    };
    let want = healthy.to_string();
    if head.labels().get(SERVE_LABEL) == Some(&want) {
        return Ok(());
    }
    let pname = head.name_any();
    let api: Api<Pod> = Api::namespaced(ctx.client.clone(), &ns);
    let patch = serde_json::json!({"metadata": {"labels": {SERVE_LABEL: want}}});
    match api
        .patch(&pname, &PatchParams::default(), &Patch::Merge(&patch))
        .await
    {
        Ok(_) => {
            ctx.events
                .normal(
                    svc,
                    "UpdatedHeadPodServeLabel",
                    "Update",
                    format!("Updated the serve label to {want:?} for the Head Pod {ns}/{pname}"),
                )
                .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => {
            let err = Error::ServeLabel {
                name: pname.clone(),
                source,
            };
            ctx.events
                .warning(svc, err.reason(), "Update", format!("Failed to update the serve label to {want:?} for the Head Pod {ns}/{pname}: {err}"))
                .await;
            Err(err)
        }
    }
}

fn head_pod(svc: &RayService, cluster: &str, ctx: &Context) -> Option<Arc<Pod>> {
    let ns = svc.namespace().unwrap_or_default();
    ctx.head_pods
        .owned_by(&ns, &svc.name_any())
        .into_iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .find(|p| p.labels().get(CLUSTER_LABEL).map(String::as_str) == Some(cluster))
}

/// Serve on one cluster: read the applications, submit the config when it
/// is due, and say whether every application runs. Anything in the way
/// goes to `pass.waiting`; a submission the dashboard refused also to
/// `pass.serve_error`.
async fn serve_on(
    svc: &RayService,
    key: &Key,
    c: &RayCluster,
    ctx: &Context,
    pass: &mut Pass,
    st: &mut RayServiceStatuses,
    routes: Option<&Routes>,
) -> (bool, Option<BTreeMap<String, AppStatus>>) {
    let ns = &key.0;
    let cname = c.name_any();
    let head_ready = c
        .status
        .as_ref()
        .is_some_and(|s| crate::kit::conditions::is_true(s.conditions.as_ref(), HEAD_POD_READY));
    if !head_ready {
        pass.waiting.push(format!(
            "RayCluster {cname}: {}",
            head_detail(svc, &cname, ctx)
        ));
        return (false, None);
    }
    let url = dashboard_url(c, &ctx.cfg.cluster_domain);
    let client = match dashboard::authenticated(ctx.dashboards.as_ref(), &ctx.client, c, &url).await
    {
        Ok(client) => client,
        Err(e) => {
            pass.waiting.push(format!("RayCluster {cname}: {e}"));
            return (false, None);
        }
    };
    let details = match client.serve_applications().await {
        Ok(d) => d,
        Err(e) => {
            pass.waiting.push(format!(
                "RayCluster {cname}: the dashboard is not answering yet ({e})"
            ));
            return (false, None);
        }
    };
    let config = svc.spec.serve_config_v2.clone().unwrap_or_default();
    let held = routes.is_some() && incremental::holds_config(st, &cname);
    if config.trim().is_empty() {
        pass.waiting
            .push("serveConfigV2 is empty: there is no Serve application to deploy".into());
    } else if held {
        // The side traffic leaves keeps what it runs.
    } else if let Some(why) = serve::submission_reason(
        ctx.submitted_config(key, &cname).as_deref(),
        &config,
        &details,
    ) {
        tracing::info!(%ns, rayservice = %key.1, cluster = %cname, reason = why, "submitting the Serve config");
        let mut body = serve::config_body(&config);
        if routes.is_some() {
            let capacity = incremental::submitted_capacity(st, &cname);
            body = body.map(|b| incremental::with_capacity(b, capacity));
        }
        let sent = match &body {
            Ok(b) => client
                .put_serve_applications(b)
                .await
                .map_err(|e| e.to_string()),
            Err(e) => Err(e.clone()),
        };
        match sent {
            Ok(()) => {
                ctx.record_submission(key, &cname, &config);
                ctx.events
                    .normal(
                        svc,
                        "UpdatedServeApplications",
                        "Update",
                        format!("Updated serve applications to the RayCluster {ns}/{cname}"),
                    )
                    .await;
            }
            Err(e) => {
                let msg = format!(
                    "Failed to update serve applications to the RayCluster {ns}/{cname}: {e}"
                );
                ctx.events
                    .warning(
                        svc,
                        "FailedToUpdateServeApplications",
                        "Update",
                        msg.clone(),
                    )
                    .await;
                pass.waiting.push(format!(
                    "RayCluster {cname}: the dashboard refused serveConfigV2: {e}"
                ));
                pass.serve_error = Some(Error::Serve(msg));
            }
        }
    }
    if let Some(routes) = routes
        && incremental::in_progress(st)
    {
        move_capacity(svc, key, c, &client, st, routes, ctx, pass).await;
    }
    let (ready, apps) = serve::applications(&details);
    if !ready {
        pass.waiting
            .push(format!("RayCluster {cname}: {}", serve::waiting_for(&apps)));
    }
    (ready, Some(apps))
}

/// One `target_capacity` step on `c` when KubeRay's state machine says it
/// is this cluster's turn: the last submitted config again, with the new
/// capacity, which then goes into the status.
#[allow(clippy::too_many_arguments)]
async fn move_capacity(
    svc: &RayService,
    key: &Key,
    c: &RayCluster,
    client: &crate::ray::dashboard::DashboardClient,
    st: &mut RayServiceStatuses,
    routes: &Routes,
    ctx: &Context,
    pass: &mut Pass,
) {
    let (ns, cname) = (&key.0, c.name_any());
    if routes.ready().is_err() || !incremental::capacity_update_needed(st).0 {
        return;
    }
    let opts = incremental::options(svc);
    let surge = opts.and_then(|o| o.max_surge_percent).unwrap_or(100);
    let Some(goal) = incremental::capacity_goal(st, &cname, surge) else {
        return;
    };
    // Capacity leaves a cluster only once the Gateway routes by the weights
    // that took its traffic away (see `incremental::drained_at`).
    if goal < incremental::submitted_capacity(st, &cname).unwrap_or(goal) {
        let now = ctx.clock.now();
        let wait = match opts.and_then(|o| incremental::drained_at(st, &cname, o)) {
            Some(at) if at > now => Some(format!(
                "until {} (intervalSeconds after its traffic moved), so that the Gateway stops sending it requests first",
                at.strftime("%Y-%m-%dT%H:%M:%SZ")
            )),
            _ => routes.route_lag(),
        };
        if let Some(why) = wait {
            pass.waiting.push(format!(
                "RayCluster {cname}: target_capacity {goal} waits {why}"
            ));
            return;
        }
    }
    let config = ctx
        .submitted_config(key, &cname)
        .unwrap_or_else(|| svc.spec.serve_config_v2.clone().unwrap_or_default());
    let sent = match serve::config_body(&config) {
        Ok(b) => client
            .put_serve_applications(&incremental::with_capacity(b, Some(goal)))
            .await
            .map_err(|e| e.to_string()),
        Err(e) => Err(e),
    };
    match sent {
        Ok(()) => {
            tracing::info!(%ns, rayservice = %key.1, cluster = %cname, goal, "target_capacity updated");
            incremental::record_capacity(st, &cname, goal);
            ctx.events
                .normal(
                    svc,
                    "UpdatedServeTargetCapacity",
                    "Update",
                    format!("Updated target_capacity of serve applications to {goal} on the RayCluster {ns}/{cname}"),
                )
                .await;
        }
        Err(e) => {
            let msg = format!(
                "Failed to update target_capacity of serve applications to {goal} on the RayCluster {ns}/{cname}: {e}"
            );
            ctx.events
                .warning(svc, "FailedToUpdateTargetCapacity", "Update", msg.clone())
                .await;
            pass.waiting.push(format!(
                "RayCluster {cname}: target_capacity {goal} refused: {e}"
            ));
            pass.serve_error = Some(Error::TargetCapacity(msg));
        }
    }
}

/// Why the head pod of `cluster` is not ready, as far as its pod says.
fn head_detail(svc: &RayService, cluster: &str, ctx: &Context) -> String {
    let Some(p) = head_pod(svc, cluster, ctx) else {
        return "waiting for the head pod to be created".into();
    };
    let st = p.status.clone().unwrap_or_default();
    let phase = st.phase.unwrap_or_else(|| "Pending".into());
    let mut out = format!("the head pod {} is {phase} and not ready", p.name_any());
    let waiting = st
        .container_statuses
        .iter()
        .flatten()
        .filter_map(|c| c.state.as_ref()?.waiting.as_ref())
        .find_map(|w| {
            w.reason
                .clone()
                .map(|r| (r, w.message.clone().unwrap_or_default()))
        });
    let unschedulable = st
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "PodScheduled" && c.status == "False")
        .map(|c| {
            (
                c.reason.clone().unwrap_or_default(),
                c.message.clone().unwrap_or_default(),
            )
        });
    if let Some((r, m)) = waiting.or(unschedulable) {
        out += &format!(" ({r}: {m})");
    }
    out
}

/// Points `<service>-head-svc` and `<service>-serve-svc` at `target`.
/// In an incremental upgrade only the head service: each cluster has its
/// own serve service behind the route.
async fn apply_services(
    svc: &RayService,
    target: &RayCluster,
    with_serve: bool,
    ctx: &Context,
) -> Result<(), Error> {
    let ns = svc.namespace().unwrap_or_default();
    let mut desired = vec![services::head(svc, target, &ctx.cfg)];
    if with_serve {
        desired.extend(services::serve(svc, target));
    }
    for s in desired {
        let sname = s.name_any();
        let before = ctx
            .services
            .get(&ns, &sname)
            .and_then(|s| services::selected_cluster(&s));
        match applier::ensure(&ctx.client, &ctx.services, &s).await {
            Ok(Outcome::Unchanged) => {}
            Ok(outcome) => {
                let (reason, verb) = match (outcome, before) {
                    (Outcome::Created, _) | (_, None) => ("CreatedService", "Created"),
                    _ => ("UpdatedService", "Updated"),
                };
                ctx.events
                    .normal(
                        svc,
                        reason,
                        "Apply",
                        format!(
                            "{verb} the service {ns}/{sname} for the RayCluster {}",
                            target.name_any()
                        ),
                    )
                    .await;
            }
            Err(source) => {
                let err = Error::Service {
                    name: sname.clone(),
                    source,
                };
                ctx.events
                    .warning(
                        svc,
                        err.reason(),
                        "Apply",
                        format!("Failed to apply the service {ns}/{sname}: {err}"),
                    )
                    .await;
                return Err(err);
            }
        }
    }
    Ok(())
}

/// Ready pods behind `service`, from its EndpointSlices, each pod once
/// (dual-stack lists it in two slices).
async fn count_endpoints(ns: &str, service: &str, ctx: &Context) -> Result<i32, Error> {
    let api: Api<EndpointSlice> = Api::namespaced(ctx.client.clone(), ns);
    let lp = ListParams::default().labels(&format!("kubernetes.io/service-name={service}"));
    let slices = api.list(&lp).await.map_err(|source| Error::Endpoints {
        name: service.into(),
        source,
    })?;
    let mut pods = std::collections::BTreeSet::new();
    for e in slices
        .items
        .iter()
        .flat_map(|s| s.endpoints.iter().flatten())
    {
        let ready = e.conditions.as_ref().and_then(|c| c.ready) == Some(true);
        if let Some(uid) = e.target_ref.as_ref().and_then(|r| r.uid.clone())
            && ready
        {
            pods.insert(uid);
        }
    }
    Ok(i32::try_from(pods.len()).unwrap_or(i32::MAX))
}

/// Deletes the clusters that are neither active nor pending once their
/// deletion delay has passed; returns when to look again for the next.
async fn clean_up_clusters(
    svc: &RayService,
    st: &RayServiceStatuses,
    ctx: &Context,
) -> Result<Option<Duration>, Error> {
    let ns = svc.namespace().unwrap_or_default();
    let key = (ns.clone(), svc.name_any());
    let keep = [status::active_name(st), status::pending_name(st)];
    let dangling: Vec<String> = ctx
        .clusters
        .owned_by(&ns, &key.1)
        .into_iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
        .map(|c| c.name_any())
        .filter(|n| !keep.contains(&Some(n.as_str())))
        .collect();
    let delay = svc
        .spec
        .ray_cluster_deletion_delay_seconds
        .map_or(DEFAULT_DELETION_DELAY, |s| {
            Duration::from_secs(s.max(0) as u64)
        });
    let now = ctx.clock.now();
    let due_at = {
        let mut all = ctx.deletions.lock().unwrap();
        let mine = all.entry(key.clone()).or_default();
        mine.retain(|n, _| dangling.contains(n));
        for n in &dangling {
            mine.entry(n.clone())
                .or_insert_with(|| now + jiff::SignedDuration::try_from(delay).unwrap_or_default());
        }
        mine.clone()
    };
    let mut next: Option<Duration> = None;
    for (name, at) in due_at {
        if at <= now {
            delete_cluster(svc, &name, ctx, "after its deletion delay").await?;
        } else {
            let d = until(at, ctx);
            next = Some(next.map_or(d, |n| n.min(d)));
        }
    }
    Ok(next)
}

pub(super) async fn delete_cluster(
    svc: &RayService,
    name: &str,
    ctx: &Context,
    why: &str,
) -> Result<(), Error> {
    let ns = svc.namespace().unwrap_or_default();
    let api: Api<RayCluster> = Api::namespaced(ctx.client.clone(), &ns);
    match api.delete(name, &DeleteParams::background()).await {
        Ok(_) => {
            ctx.events
                .normal(
                    svc,
                    "DeletedRayCluster",
                    "Delete",
                    format!("Deleted the RayCluster {ns}/{name} {why}"),
                )
                .await;
            Ok(())
        }
        Err(kube::Error::Api(s)) if s.code == 404 => Ok(()),
        Err(source) => {
            let err = Error::DeleteCluster {
                name: name.into(),
                source,
            };
            ctx.events
                .warning(
                    svc,
                    err.reason(),
                    "Delete",
                    format!("Failed to delete the RayCluster {ns}/{name}: {err}"),
                )
                .await;
            Err(err)
        }
    }
}

/// A RayService being deleted: its clusters go at once, then the finalizer.
async fn finish_deletion(svc: &RayService, ctx: &Context) -> Result<Action, Error> {
    if !finalizer::has(svc, FINALIZER) {
        return Ok(Action::await_change());
    }
    let ns = svc.namespace().unwrap_or_default();
    let clusters = ctx.clusters.owned_by(&ns, &svc.name_any());
    for c in clusters
        .iter()
        .filter(|c| c.metadata.deletion_timestamp.is_none())
    {
        delete_cluster(
            svc,
            &c.name_any(),
            ctx,
            "because the RayService is being deleted",
        )
        .await?;
    }
    if !clusters.is_empty() {
        return Ok(Action::requeue(ctx.poll));
    }
    finalizer::remove(&ctx.client, svc, FINALIZER)
        .await
        .map_err(Error::Finalizer)?;
    Ok(Action::await_change())
}

/// Writes the status if it changed (`lastUpdateTime` then moves too).
/// Returns whether it wrote.
async fn write_status(
    svc: &RayService,
    old: &RayServiceStatuses,
    mut new: RayServiceStatuses,
    ctx: &Context,
) -> Result<bool, Error> {
    // Server-side apply turns an empty object into null, which the schema
    // refuses: an empty service status is left out instead.
    for s in [
        &mut new.active_service_status,
        &mut new.pending_service_status,
    ] {
        if s.as_ref()
            .is_some_and(|s| *s == RayServiceStatus::default())
        {
            *s = None;
        }
    }
    new.last_update_time = old.last_update_time.clone();
    if *old == new {
        return Ok(false);
    }
    new.last_update_time = Some(Time(ctx.clock.now()));
    let stored = applier::apply_status(&ctx.client, svc, &new)
        .await
        .map_err(Error::Status)?;
    ctx.written.wrote(
        (svc.namespace().unwrap_or_default(), svc.name_any()),
        stored.status.unwrap_or_default(),
    );
    Ok(true)
}
