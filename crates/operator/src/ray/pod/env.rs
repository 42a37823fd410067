//! The environment KubeRay injects into Ray containers: plain and
//! field-reference variables, GCS fault tolerance and auth.

use k8s_openapi::api::core::v1::{
    Container, EnvVar, EnvVarSource, ObjectFieldSelector, PersistentVolumeClaimVolumeSource,
    PodSpec, ProjectedVolumeSource, SecretKeySelector, ServiceAccountTokenProjection, Volume,
    VolumeMount, VolumeProjection,
};
use kuberay_api::RayClusterSpec;
use kuberay_api::names::*;

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
    let Some(a) = crate::ray::auth::token_mode(spec) else {
        return;
    };
    push_env_if_absent(c, "RAY_AUTH_MODE", "token");
    if a.enable_k8s_token_auth == Some(true) {
        push_env_if_absent(c, "RAY_ENABLE_K8S_TOKEN_AUTH", "true");
    } else if !c.env.iter().flatten().any(|e| e.name == "RAY_AUTH_TOKEN")
        && let Some(secret) = crate::ray::auth::token_secret_name(spec, cluster)
    {
        c.env.get_or_insert_with(Vec::new).push(EnvVar {
            name: "RAY_AUTH_TOKEN".into(),
            value: None,
            value_from: Some(EnvVarSource {
                secret_key_ref: Some(SecretKeySelector {
                    name: secret,
                    key: crate::ray::auth::TOKEN_KEY.into(),
                    optional: None,
                }),
                ..Default::default()
            }),
        });
    }
}

/// Where Kubernetes token authentication finds the pod's service account
/// token (KubeRay's `ray-token` volume and path).
pub(crate) const RAY_TOKEN_VOLUME: &str = "ray-token";
pub(crate) const RAY_TOKEN_MOUNT_PATH: &str = "/var/run/secrets/ray.io/serviceaccount";

/// What token authentication needs beyond the Ray container's env: the
/// `wait-gcs-ready` init container asks the GCS too, so it carries the
/// token; with Kubernetes token authentication the pod gets a projected
/// service account token, mounted where Ray reads it.
pub(crate) fn token_auth_pod(spec: &RayClusterSpec, cluster: &str, pod: &mut PodSpec) {
    let Some(a) = crate::ray::auth::token_mode(spec) else {
        return;
    };
    for ic in pod.init_containers.iter_mut().flatten() {
        if ic.name == "wait-gcs-ready" {
            auth_env(spec, cluster, ic);
        }
    }
    if a.enable_k8s_token_auth != Some(true) {
        return;
    }
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    if !volumes.iter().any(|v| v.name == RAY_TOKEN_VOLUME) {
        volumes.push(Volume {
            name: RAY_TOKEN_VOLUME.into(),
            projected: Some(ProjectedVolumeSource {
                sources: Some(vec![VolumeProjection {
                    service_account_token: Some(ServiceAccountTokenProjection {
                        path: "token".into(),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        });
    }
    let c = &mut pod.containers[0];
    let mounts = c.volume_mounts.get_or_insert_with(Vec::new);
    if !mounts.iter().any(|m| m.name == RAY_TOKEN_VOLUME) {
        mounts.push(VolumeMount {
            name: RAY_TOKEN_VOLUME.into(),
            mount_path: RAY_TOKEN_MOUNT_PATH.into(),
            read_only: Some(true),
            ..Default::default()
        });
    }
}

#[cfg(test)]
mod token_tests {
    use super::*;

    fn pod() -> PodSpec {
        serde_json::from_value(serde_json::json!({
            "containers": [{"name": "ray-worker"}],
            "initContainers": [{"name": "wait-gcs-ready"}, {"name": "users"}],
        }))
        .unwrap()
    }

    fn spec(auth: serde_json::Value) -> RayClusterSpec {
        serde_json::from_value(
            serde_json::json!({"headGroupSpec": {"template": {}}, "authOptions": auth}),
        )
        .unwrap()
    }

    fn names(c: &Container) -> Vec<String> {
        c.env.iter().flatten().map(|e| e.name.clone()).collect()
    }

    #[test]
    fn the_gcs_wait_carries_the_token_and_other_init_containers_do_not() {
        let mut p = pod();
        token_auth_pod(&spec(serde_json::json!({"mode": "token"})), "rc", &mut p);
        let init = p.init_containers.unwrap();
        assert_eq!(names(&init[0]), ["RAY_AUTH_MODE", "RAY_AUTH_TOKEN"]);
        assert!(names(&init[1]).is_empty());
        assert!(p.volumes.is_none());
    }

    #[test]
    fn kubernetes_tokens_are_projected_once_where_ray_reads_them() {
        let mut p = pod();
        let s = spec(serde_json::json!({"mode": "token", "enableK8sTokenAuth": true}));
        token_auth_pod(&s, "rc", &mut p);
        token_auth_pod(&s, "rc", &mut p);
        let volumes = p.volumes.unwrap();
        assert_eq!(volumes.len(), 1);
        let projected = volumes[0].projected.clone().unwrap().sources.unwrap();
        assert_eq!(
            projected[0].service_account_token.as_ref().unwrap().path,
            "token"
        );
        let mounts = p.containers[0].volume_mounts.clone().unwrap();
        assert_eq!(mounts.len(), 1);
        assert_eq!(mounts[0].mount_path, RAY_TOKEN_MOUNT_PATH);
        assert_eq!(mounts[0].read_only, Some(true));
        let init = p.init_containers.unwrap();
        assert_eq!(
            names(&init[0]),
            ["RAY_AUTH_MODE", "RAY_ENABLE_K8S_TOKEN_AUTH"]
        );
    }

    #[test]
    fn no_token_mode_no_change() {
        let mut p = pod();
        token_auth_pod(&spec(serde_json::json!({"mode": "disabled"})), "rc", &mut p);
        assert_eq!(p, pod());
    }
}
