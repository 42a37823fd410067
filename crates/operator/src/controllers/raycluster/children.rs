//! The RayCluster's children other than pods: the autoscaler's RBAC, the
//! auth token Secret, the ingress and the services. Each is written only
//! when it differs from the cached one, and reported as KubeRay does.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::{Resource, ResourceExt};
use kuberay_api::RayCluster;
use kuberay_api::names::{CREATED_BY, CREATED_BY_LABEL};

use super::Context;
use super::reconcile::Error;
use crate::kit::applier::{self, Outcome};
use crate::kit::cache::{Cache, Trim};
use crate::kit::runner::Reason;
use crate::ray::{auth, autoscaler, service};

/// The kinds of children [`reconcile_children`] writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ChildKind {
    Service,
    Ingress,
    ServiceAccount,
    Role,
    RoleBinding,
    Secret,
}

impl ChildKind {
    pub fn name(self) -> &'static str {
        match self {
            ChildKind::Service => "Service",
            ChildKind::Ingress => "Ingress",
            ChildKind::ServiceAccount => "ServiceAccount",
            ChildKind::Role => "Role",
            ChildKind::RoleBinding => "RoleBinding",
            ChildKind::Secret => "Secret",
        }
    }

    /// The event reason of a failed write (KubeRay's, but for the Secret,
    /// which KubeRay has no reason for).
    pub fn failed_reason(self) -> &'static str {
        match self {
            ChildKind::Service => "FailedToCreateService",
            ChildKind::Ingress => "FailedToCreateIngress",
            ChildKind::ServiceAccount => "FailedToCreateServiceAccount",
            ChildKind::Role => "FailedToCreateRole",
            ChildKind::RoleBinding => "FailedToCreateRoleBinding",
            ChildKind::Secret => "FailedToCreateSecret",
        }
    }
}

impl std::fmt::Display for ChildKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Applies one desired child and reports what happened as an event.
async fn ensure<K>(
    ctx: &Context,
    cluster: &RayCluster,
    cache: &Cache<K>,
    mut desired: K,
    kind: ChildKind,
) -> Result<(), Error>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>
        + Clone
        + serde::Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug
        + Send
        + Sync
        + Trim
        + 'static,
{
    let meta = desired.meta_mut();
    meta.owner_references = Some(vec![applier::owner_reference(cluster)]);
    meta.labels
        .get_or_insert_with(Default::default)
        .insert(CREATED_BY_LABEL.into(), CREATED_BY.into());
    let name = desired.name_any();
    let ns = cluster.namespace().unwrap_or_default();
    let lower = kind.name().to_lowercase();
    match applier::ensure(&ctx.client, cache, &desired).await {
        Ok(Outcome::Unchanged) => Ok(()),
        Ok(Outcome::Created) => {
            ctx.events
                .normal(
                    cluster,
                    &format!("Created{kind}"),
                    "Create",
                    format!("Created {lower} {ns}/{name}"),
                )
                .await;
            Ok(())
        }
        Ok(Outcome::Updated) => {
            ctx.events
                .normal(
                    cluster,
                    &format!("Updated{kind}"),
                    "Update",
                    format!("Updated {lower} {ns}/{name}"),
                )
                .await;
            Ok(())
        }
        Err(source) => {
            let err = Error::Child { kind, name, source };
            ctx.events
                .warning(
                    cluster,
                    err.reason(),
                    "Create",
                    format!("Failed creating {lower} {ns}/{}: {err}", desired.name_any()),
                )
                .await;
            Err(err)
        }
    }
}

/// Makes every child but the pods exist as the spec says.
pub(super) async fn reconcile_children(
    cluster: &RayCluster,
    ctx: &Context,
    _owner: &OwnerReference,
) -> Result<(), Error> {
    if cluster.spec.enable_in_tree_autoscaling == Some(true) {
        if !autoscaler::user_service_account(cluster) {
            ensure(
                ctx,
                cluster,
                &ctx.service_accounts,
                autoscaler::service_account(cluster),
                ChildKind::ServiceAccount,
            )
            .await?;
        }
        ensure(
            ctx,
            cluster,
            &ctx.roles,
            autoscaler::role(cluster),
            ChildKind::Role,
        )
        .await?;
        ensure(
            ctx,
            cluster,
            &ctx.role_bindings,
            autoscaler::role_binding(cluster),
            ChildKind::RoleBinding,
        )
        .await?;
    }
    if auth::needs_secret(cluster) {
        let mut secret = auth::secret(cluster);
        secret.metadata.owner_references = Some(vec![applier::owner_reference(cluster)]);
        let name = secret.name_any();
        match applier::create_if_missing(&ctx.client, &ctx.secrets, &secret).await {
            Ok(Outcome::Created) => {
                let note = format!(
                    "Created secret {}/{name}",
                    cluster.namespace().unwrap_or_default()
                );
                ctx.events
                    .normal(cluster, "CreatedSecret", "Create", note)
                    .await;
            }
            Ok(_) => {}
            Err(source) => {
                let err = Error::Child {
                    kind: ChildKind::Secret,
                    name,
                    source,
                };
                ctx.events
                    .warning(cluster, err.reason(), "Create", err.to_string())
                    .await;
                return Err(err);
            }
        }
    }
    if cluster.spec.head_group_spec.enable_ingress == Some(true) {
        ensure(
            ctx,
            cluster,
            &ctx.ingresses,
            service::ingress(cluster, &ctx.cfg),
            ChildKind::Ingress,
        )
        .await?;
    }
    ensure(
        ctx,
        cluster,
        &ctx.services,
        service::head_service(cluster, &ctx.cfg),
        ChildKind::Service,
    )
    .await?;
    if service::wants_headless_service(cluster) {
        ensure(
            ctx,
            cluster,
            &ctx.services,
            service::headless_service(cluster),
            ChildKind::Service,
        )
        .await?;
    }
    if service::wants_serve_service(cluster) {
        ensure(
            ctx,
            cluster,
            &ctx.services,
            service::serve_service(cluster),
            ChildKind::Service,
        )
        .await?;
    }
    Ok(())
}
