//! The environment KubeRay injects into Ray containers: plain and
//! field-reference variables, GCS fault tolerance and auth.

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PersistentVolumeClaimVolumeSource,
    PodSpec, SecretKeySelector, Volume, VolumeMount,
};
use kuberay_api::RayClusterSpec;
use kuberay_api::names::*;
use kuberay_api::raycluster::AuthMode;

use super::PodContext;
use crate::ray::gcs_ft;

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

/// GCS fault tolerance on the head: where its state goes. Redis: the key
/// namespace, the address and the credentials as env (the `ray start` line
/// refers to the credentials by name). Embedded: the RocksDB store on the
/// cluster's claim, mounted where Ray is told to keep it.
pub(super) fn head_ft(ctx: &PodContext, pod: &mut PodSpec) {
    let cluster = ctx.cluster;
    let spec = ctx.spec();
    if gcs_ft::embedded(spec) {
        head_embedded_storage(cluster, pod);
        return;
    }
    let c = &mut pod.containers[0];
    push_env_if_absent(
        c,
        "RAY_external_storage_namespace",
        &gcs_ft::storage_namespace(cluster),
    );
    match &spec.gcs_fault_tolerance_options {
        Some(o) => {
            push_env(
                c,
                gcs_ft::REDIS_ADDRESS_ENV,
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
            // The old form: a password given as a `ray start` flag reaches
            // the Redis clean-up Job through this env.
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

fn head_embedded_storage(cluster: &kuberay_api::RayCluster, pod: &mut PodSpec) {
    let sub_path = gcs_ft::storage(cluster)
        .and_then(|s| s.sub_path.clone())
        .filter(|p| !p.is_empty());
    let c = &mut pod.containers[0];
    push_env_if_absent(c, "RAY_gcs_storage", "rocksdb");
    push_env_if_absent(c, "RAY_gcs_storage_path", GCS_STORAGE_MOUNT_PATH);
    c.volume_mounts
        .get_or_insert_with(Vec::new)
        .push(VolumeMount {
            name: GCS_STORAGE_VOLUME.into(),
            mount_path: GCS_STORAGE_MOUNT_PATH.into(),
            sub_path,
            ..Default::default()
        });
    pod.volumes.get_or_insert_with(Vec::new).push(Volume {
        name: GCS_STORAGE_VOLUME.into(),
        persistent_volume_claim: Some(PersistentVolumeClaimVolumeSource {
            claim_name: gcs_ft::storage_claim(cluster),
            read_only: None,
        }),
        ..Default::default()
    });
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
