//! The Ray autoscaler sidecar and the RBAC it needs to read pods and patch
//! its RayCluster (`replicas`, `workersToDelete`).

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Container, ResourceRequirements, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kuberay_api::RayCluster;
use kuberay_api::names::{
    APP_NAME, APP_NAME_LABEL, CLUSTER_LABEL, CREATED_BY, CREATED_BY_LABEL, check_name,
};

use super::pod::command;
use super::pod::{auth_env, push_env, push_field_env};
use crate::runtime::config::Config;

/// The sidecar's container name, as KubeRay names it.
pub const CONTAINER: &str = "autoscaler";

const START: &str = "ray kuberay-autoscaler --cluster-name $(RAY_CLUSTER_NAME) --cluster-namespace $(RAY_CLUSTER_NAMESPACE)";

/// The head's service account: the template's, else one named like the cluster.
pub fn service_account_name(cluster: &RayCluster) -> String {
    cluster
        .spec
        .head_group_spec
        .template
        .spec
        .as_ref()
        .and_then(|s| s.service_account_name.clone())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| cluster.metadata.name.clone().unwrap_or_default())
}

/// Whether the user brought their own service account (then they must
/// create it; the operator only creates the default one).
pub fn user_service_account(cluster: &RayCluster) -> bool {
    Some(service_account_name(cluster)) != cluster.metadata.name
}

pub fn container(cluster: &RayCluster, cfg: &Config) -> Container {
    let ray = &cluster
        .spec
        .head_group_spec
        .template
        .spec
        .as_ref()
        .expect("validated")
        .containers[0];
    let mut c = Container {
        name: CONTAINER.into(),
        image: ray.image.clone(),
        image_pull_policy: Some("IfNotPresent".into()),
        command: Some(command::shell(cfg.login_shell)),
        args: Some(vec![START.into()]),
        resources: Some(default_resources()),
        // Beyond KubeRay: when the autoscaler dies (say, a 403 from the API
        // server), the tail of its log becomes the termination message, which
        // the RayCluster status then quotes; otherwise it is only in the logs.
        termination_message_policy: Some("FallbackToLogsOnError".into()),
        ..Default::default()
    };
    push_field_env(
        &mut c,
        "RAY_CLUSTER_NAME",
        &format!("metadata.labels['{CLUSTER_LABEL}']"),
    );
    push_field_env(&mut c, "RAY_CLUSTER_NAMESPACE", "metadata.namespace");
    push_field_env(&mut c, "RAY_HEAD_POD_NAME", "metadata.name");
    push_env(&mut c, "KUBERAY_CRD_VER", "v1");
    push_env(&mut c, "KUBERAY_GEN_AUTOSCALER_START_CMD", START);
    // It reads the cluster through the dashboard and GCS as the Ray
    // container does, so it needs the same token.
    auth_env(
        &cluster.spec,
        cluster.metadata.name.as_deref().unwrap_or_default(),
        &mut c,
    );
    if let Some(o) = &cluster.spec.autoscaler_options {
        // Replaced wholesale: what the user set is what runs.
        if o.resources.is_some() {
            c.resources = o.resources.clone();
        }
        if o.image.is_some() {
            c.image = o.image.clone();
        }
        if o.image_pull_policy.is_some() {
            c.image_pull_policy = o.image_pull_policy.clone();
        }
        if o.security_context.is_some() {
            c.security_context = o.security_context.clone();
        }
        if o.command.is_some() {
            c.command = o.command.clone();
        }
        if o.args.is_some() {
            c.args = o.args.clone();
        }
        // Added to ours.
        c.env
            .get_or_insert_with(Vec::new)
            .extend(o.env.clone().unwrap_or_default());
        if let Some(from) = &o.env_from {
            c.env_from.get_or_insert_with(Vec::new).extend(from.clone());
        }
        if let Some(m) = &o.volume_mounts {
            c.volume_mounts
                .get_or_insert_with(Vec::new)
                .extend(m.clone());
        }
    }
    c
}

fn default_resources() -> ResourceRequirements {
    let r = BTreeMap::from([
        ("cpu".to_string(), Quantity("500m".into())),
        ("memory".to_string(), Quantity("512Mi".into())),
    ]);
    ResourceRequirements {
        limits: Some(r.clone()),
        requests: Some(r),
        ..Default::default()
    }
}

fn meta(cluster: &RayCluster, name: String) -> ObjectMeta {
    ObjectMeta {
        name: Some(name),
        namespace: cluster.metadata.namespace.clone(),
        labels: Some(BTreeMap::from([
            (
                CLUSTER_LABEL.to_string(),
                cluster.metadata.name.clone().unwrap_or_default(),
            ),
            (APP_NAME_LABEL.to_string(), APP_NAME.to_string()),
            (CREATED_BY_LABEL.to_string(), CREATED_BY.to_string()),
        ])),
        ..Default::default()
    }
}

pub fn service_account(cluster: &RayCluster) -> ServiceAccount {
    ServiceAccount {
        metadata: meta(cluster, check_name(&service_account_name(cluster), 50)),
        ..Default::default()
    }
}

pub fn role(cluster: &RayCluster) -> Role {
    let rule = |group: &str, resource: &str, verbs: &[&str]| PolicyRule {
        api_groups: Some(vec![group.into()]),
        resources: Some(vec![resource.into()]),
        verbs: verbs.iter().map(|v| v.to_string()).collect(),
        ..Default::default()
    };
    Role {
        metadata: meta(
            cluster,
            check_name(cluster.metadata.name.as_deref().unwrap_or_default(), 50),
        ),
        // KubeRay v1.7's rules: the autoscaler reads pods and the cluster,
        // patches `replicas`/`workersToDelete`, and may resize pods in place.
        rules: Some(vec![
            rule("", "pods", &["get", "list", "watch", "patch"]),
            rule("", "pods/resize", &["patch"]),
            rule("ray.io", "rayclusters", &["get", "patch"]),
        ]),
    }
}

pub fn role_binding(cluster: &RayCluster) -> RoleBinding {
    let name = check_name(cluster.metadata.name.as_deref().unwrap_or_default(), 50);
    RoleBinding {
        metadata: meta(cluster, name.clone()),
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "Role".into(),
            name,
        },
        subjects: Some(vec![Subject {
            kind: "ServiceAccount".into(),
            name: check_name(&service_account_name(cluster), 50),
            namespace: cluster.metadata.namespace.clone(),
            ..Default::default()
        }]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rbac::{OPERATOR_RULES, from_policy_rules, permissions};

    #[test]
    fn the_operator_holds_every_permission_it_grants_the_autoscaler() {
        // Kubernetes refuses to create a Role granting more than its creator
        // holds, so a rule added here and not to rbac.rs breaks every
        // autoscaled cluster at its first reconcile.
        let cluster: RayCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": "c", "namespace": "ns"},
            "spec": {"headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head"}]}}}}
        }))
        .unwrap();
        let granted = from_policy_rules(&role(&cluster).rules.unwrap());
        let held = permissions(OPERATOR_RULES);
        let missing: Vec<_> = granted.difference(&held).collect();
        assert!(missing.is_empty(), "not held by the operator: {missing:?}");
        assert!(granted.contains(&("".into(), "pods/resize".into(), "patch".into())));
    }
}
