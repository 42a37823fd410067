//! Token authentication: the Secret holding the cluster's generated token,
//! created once and never rewritten (rotating it would lock out running
//! clients).

use std::collections::BTreeMap;
use std::io::Read;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kuberay_api::RayCluster;
use kuberay_api::names::{CLUSTER_LABEL, CREATED_BY, CREATED_BY_LABEL, check_name};
use kuberay_api::raycluster::AuthMode;

/// The key of the token in the Secret (KubeRay's `RAY_AUTH_TOKEN_SECRET_KEY`).
pub const TOKEN_KEY: &str = "auth_token";

/// Whether the operator must generate the token Secret: token mode, no
/// user-provided secret, and not Kubernetes service account tokens.
pub fn needs_secret(cluster: &RayCluster) -> bool {
    cluster.spec.auth_options.as_ref().is_some_and(|a| {
        a.mode == Some(AuthMode::Token)
            && a.enable_k8s_token_auth != Some(true)
            && a.secret_name.as_ref().is_none_or(|s| s.is_empty())
    })
}

/// 32 random bytes from the kernel, hex encoded.
fn token() -> String {
    let mut bytes = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("the kernel's random source is readable");
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub fn secret(cluster: &RayCluster) -> Secret {
    let name = cluster.metadata.name.clone().unwrap_or_default();
    Secret {
        metadata: ObjectMeta {
            name: Some(check_name(&name, 50)),
            namespace: cluster.metadata.namespace.clone(),
            labels: Some(BTreeMap::from([
                (CLUSTER_LABEL.to_string(), name),
                (CREATED_BY_LABEL.to_string(), CREATED_BY.to_string()),
            ])),
            ..Default::default()
        },
        string_data: Some(BTreeMap::from([(TOKEN_KEY.to_string(), token())])),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_long() {
        let c: RayCluster = serde_json::from_value(serde_json::json!({
            "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "rc", "namespace": "ns"},
            "spec": {"headGroupSpec": {"template": {}}, "authOptions": {"mode": "token"}}
        }))
        .unwrap();
        assert!(needs_secret(&c));
        let (a, b) = (secret(&c), secret(&c));
        let tok = |s: &Secret| s.string_data.as_ref().unwrap()["auth_token"].clone();
        assert_eq!(tok(&a).len(), 64);
        assert_ne!(tok(&a), tok(&b));
        assert_eq!(a.metadata.name.as_deref(), Some("rc"));
    }
}
