//! The environment KubeRay injects into Ray containers: plain and
//! field-reference variables, GCS fault tolerance and auth.

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, SecretKeySelector,
};
use kuberay_api::RayClusterSpec;
use kuberay_api::names::*;
use kuberay_api::raycluster::{AuthMode, GcsBackend};

use super::PodContext;

pub(super) fn env(name: &str, value: &str) -> EnvVar {
    EnvVar {
        name: name.into(),
        value: Some(value.into()),
        value_from: None,
    }
}

pub(crate) fn push_env(c: &mut Container, name: &str, value: &str) {
    c.env.get_or_insert_with(Vec::new).push(env(name, value));
}

pub(crate) fn push_env_if_absent(c: &mut Container, name: &str, value: &str) {
    if !c.env.iter().flatten().any(|e| e.name == name) {
        push_env(c, name, value);
    }
}

pub(crate) fn push_field_env(c: &mut Container, name: &str, path: &str) {
    c.env.get_or_insert_with(Vec::new).push(EnvVar {
        name: name.into(),
        value: None,
        value_from: Some(EnvVarSource {
            field_ref: Some(ObjectFieldSelector {
                field_path: path.into(),
                api_version: None,
            }),
            ..Default::default()
        }),
    });
}

pub(super) fn gcs_ft_enabled(ctx: &PodContext) -> bool {
    ctx.cluster_annotation(FT_ENABLED_ANNOTATION)
        .is_some_and(|v| v.eq_ignore_ascii_case("true"))
        || ctx.spec().gcs_fault_tolerance_options.is_some()
}

pub(super) fn is_redis_backend(spec: &RayClusterSpec) -> bool {
    spec.gcs_fault_tolerance_options
        .as_ref()
        .and_then(|o| o.backend.as_ref())
        .is_none_or(|b| *b == GcsBackend::Redis)
}

/// The key namespace in Redis: the cluster's UID unless an annotation or the
/// options name one (the options win).
pub(super) fn external_storage_namespace(ctx: &PodContext) -> String {
    let from_options = ctx
        .spec()
        .gcs_fault_tolerance_options
        .as_ref()
        .and_then(|o| o.external_storage_namespace.clone())
        .filter(|n| !n.is_empty());
    from_options
        .or_else(|| {
            ctx.cluster_annotation(EXTERNAL_STORAGE_NAMESPACE_ANNOTATION)
                .map(String::from)
        })
        .unwrap_or_else(|| ctx.cluster.metadata.uid.clone().unwrap_or_default())
}

pub(super) fn head_ft_env(ctx: &PodContext, c: &mut Container) {
    let spec = ctx.spec();
    if !is_redis_backend(spec) {
        return;
    }
    push_env_if_absent(
        c,
        "RAY_external_storage_namespace",
        &external_storage_namespace(ctx),
    );
    match &spec.gcs_fault_tolerance_options {
        Some(o) => {
            push_env(
                c,
                "RAY_REDIS_ADDRESS",
                o.redis_address.as_deref().unwrap_or_default(),
            );
            for (name, cred) in [
                ("REDIS_USERNAME", &o.redis_username),
                ("REDIS_PASSWORD", &o.redis_password),
            ] {
                if let Some(cred) = cred {
                    c.env.get_or_insert_with(Vec::new).push(EnvVar {
                        name: name.into(),
                        value: cred.value.clone(),
                        value_from: cred.value_from.clone(),
                    });
                }
            }
        }
        None => {
            let password = spec
                .head_group_spec
                .ray_start_params
                .as_ref()
                .and_then(|p| p.get("redis-password"));
            if let Some(p) = password {
                push_env_if_absent(c, "REDIS_PASSWORD", p);
            }
        }
    }
}

/// Token authentication: the token comes from the cluster's Secret.
pub(crate) fn auth_env(spec: &RayClusterSpec, cluster: &str, c: &mut Container) {
    let Some(a) = spec
        .auth_options
        .as_ref()
        .filter(|a| a.mode == Some(AuthMode::Token))
    else {
        return;
    };
    push_env_if_absent(c, "RAY_AUTH_MODE", "token");
    if a.enable_k8s_token_auth == Some(true) {
        push_env_if_absent(c, "RAY_ENABLE_K8S_TOKEN_AUTH", "true");
    } else if !c.env.iter().flatten().any(|e| e.name == "RAY_AUTH_TOKEN") {
        let secret = a
            .secret_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| check_name(cluster, 50));
        c.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: "RAY_AUTH_TOKEN".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret,
                    key: "auth_token".into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        });
    }
}
