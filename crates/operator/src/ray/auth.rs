//! Token authentication: the Secret holding the cluster's generated token,
//! created once and never rewritten (rotating it would lock out running
//! clients).

use std::collections::BTreeMap;
use std::io::Read;

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kuberay_api::names::{CLUSTER_LABEL, CREATED_BY, CREATED_BY_LABEL, check_name};
use kuberay_api::raycluster::{AuthMode, AuthOptions};
use kuberay_api::{RayCluster, RayClusterSpec};

/// The key of the token in the Secret (KubeRay's `RAY_AUTH_TOKEN_SECRET_KEY`).
pub const TOKEN_KEY: &str = "auth_token";

/// Whether the operator must generate the token Secret: token mode, no
/// user-provided secret, and not Kubernetes service account tokens.
pub fn needs_secret(cluster: &RayCluster) -> bool {
    token_mode(&cluster.spec).is_some_and(|a| {
        a.enable_k8s_token_auth != Some(true) && a.secret_name.as_ref().is_none_or(|s| s.is_empty())
    })
}

/// The cluster's auth options when it asks for token authentication.
pub fn token_mode(spec: &RayClusterSpec) -> Option<&AuthOptions> {
    spec.auth_options
        .as_ref()
        .filter(|a| a.mode == Some(AuthMode::Token))
}

/// The Secret whose `auth_token` the Ray containers (and the operator's
/// dashboard calls) authenticate with: `authOptions.secretName`, else the
/// generated one named after the cluster. `None` without token mode and with
/// Kubernetes token authentication (service account tokens, no Secret).
pub fn token_secret_name(spec: &RayClusterSpec, cluster: &str) -> Option<String> {
    let a = token_mode(spec)?;
    if a.enable_k8s_token_auth == Some(true) {
        return None;
    }
    Some(
        a.secret_name
            .clone()
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| check_name(cluster, 50)),
    )
}

/// The token in a Secret, or what is wrong with it, for the user.
pub fn token_in(secret: &Secret) -> Result<String, String> {
    let name = secret.metadata.name.as_deref().unwrap_or_default();
    let bytes = secret
        .data
        .as_ref()
        .and_then(|d| d.get(TOKEN_KEY))
        .ok_or_else(|| format!("the auth token Secret {name} has no key {TOKEN_KEY:?}"))?;
    String::from_utf8(bytes.0.clone())
        .map(|t| t.trim().to_string())
        .map_err(|_| format!("the {TOKEN_KEY:?} of the auth token Secret {name} is not UTF-8"))
}

/// The token the operator sends to `cluster`'s dashboard, read from the API
/// server (the operator caches only the Secrets it created, and a user's
/// `secretName` is not one of them). `None` when the cluster does not ask
/// for token authentication.
pub async fn dashboard_token(
    client: &kube::Client,
    cluster: &RayCluster,
) -> Result<Option<String>, String> {
    let name = cluster.metadata.name.as_deref().unwrap_or_default();
    let Some(secret) = token_secret_name(&cluster.spec, name) else {
        return Ok(None);
    };
    let ns = cluster.metadata.namespace.as_deref().unwrap_or_default();
    let api: kube::Api<Secret> = kube::Api::namespaced(client.clone(), ns);
    match api.get_opt(&secret).await {
        Ok(Some(s)) => token_in(&s).map(Some),
        Ok(None) => Err(format!(
            "the auth token Secret {ns}/{secret} of RayCluster {name} does not exist"
        )),
        Err(e) => Err(format!(
            "reading the auth token Secret {ns}/{secret}: {}",
            crate::kit::applier::api_message(&e)
        )),
    }
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

    fn spec(auth: serde_json::Value) -> RayClusterSpec {
        serde_json::from_value(serde_json::json!({
            "headGroupSpec": {"template": {}}, "authOptions": auth
        }))
        .unwrap()
    }

    #[test]
    fn the_token_secret_is_the_users_or_the_generated_one() {
        let name = |a| token_secret_name(&spec(a), "rc");
        assert_eq!(
            name(serde_json::json!({"mode": "token"})).as_deref(),
            Some("rc")
        );
        assert_eq!(
            name(serde_json::json!({"mode": "token", "secretName": "mine"})).as_deref(),
            Some("mine")
        );
        assert_eq!(
            name(serde_json::json!({"mode": "token", "secretName": ""})).as_deref(),
            Some("rc")
        );
        assert_eq!(name(serde_json::json!({"mode": "disabled"})), None);
        assert_eq!(
            name(serde_json::json!({"mode": "token", "enableK8sTokenAuth": true})),
            None
        );
    }

    #[test]
    fn a_secret_without_its_key_says_which_key() {
        let secret = |data: serde_json::Value| -> Secret {
            serde_json::from_value(serde_json::json!({"metadata": {"name": "s"}, "data": data}))
                .unwrap()
        };
        // "dG9r" is base64 for "tok".
        assert_eq!(
            token_in(&secret(serde_json::json!({"auth_token": "dG9r"}))).unwrap(),
            "tok"
        );
        assert_eq!(
            token_in(&secret(serde_json::json!({"other": "dG9r"}))).unwrap_err(),
            "the auth token Secret s has no key \"auth_token\""
        );
    }

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
