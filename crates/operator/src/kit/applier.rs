//! The one way the operator writes a child object (service, ingress, RBAC):
//! compare the desired object with the cached one and, only if something
//! the operator sets is missing or different, server-side apply it. A
//! cluster at rest therefore costs no API writes, and fields others set
//! (defaults, cluster IPs, annotations of other tools) are left alone.

use std::fmt::Debug;

use super::Object;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};
use kube::{Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;

use crate::kit::cache::{Cache, Trim};

/// The field manager of every write this operator makes.
pub const FIELD_MANAGER: &str = "kuberay-operator";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Unchanged,
    Created,
    Updated,
}

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("{kind} {name} already exists and is not owned by this object; not modifying it")]
    NotOwned { kind: String, name: String },
    #[error("{}", api_message(.0))]
    Api(#[from] kube::Error),
}

/// What to tell a user about a failed request: the API server's own
/// message (`pods "x" is forbidden: exceeded quota: team-quota, ...`), not
/// kube's rendering, which appends a debug dump of the whole response.
pub fn api_message(e: &kube::Error) -> String {
    match e {
        kube::Error::Api(s) if !s.message.is_empty() => s.message.clone(),
        kube::Error::Api(s) => format!("{} ({})", s.reason, s.code),
        other => other.to_string(),
    }
}

/// Whether every field of `want` is in `have` with the same value (lists
/// must match element by element). Fields the server or others add to
/// `have` do not count as differences.
pub fn is_subset(want: &Value, have: &Value) -> bool {
    match (want, have) {
        (Value::Object(w), Value::Object(h)) => w
            .iter()
            .all(|(k, v)| v.is_null() || h.get(k).is_some_and(|hv| is_subset(v, hv))),
        (Value::Array(w), Value::Array(h)) => {
            w.len() == h.len() && w.iter().zip(h).all(|(a, b)| is_subset(a, b))
        }
        (Value::Number(a), Value::Number(b)) => a.as_f64() == b.as_f64(),
        _ => want == have,
    }
}

/// Whether `obj` is controlled by the owner with `uid`.
pub fn controlled_by<K: Resource>(obj: &K, uid: &str) -> bool {
    obj.owner_references()
        .iter()
        .any(|o| o.controller == Some(true) && o.uid == uid)
}

/// Makes the child `desired` (which carries its controller reference) exist
/// as specified.
pub async fn ensure<K>(
    client: &Client,
    cache: &Cache<K>,
    desired: &K,
) -> Result<Outcome, ApplyError>
where
    K: Object + Serialize + Trim,
{
    let ns = desired.namespace().unwrap_or_default();
    let name = desired.name_any();
    let owner_uid = desired
        .owner_references()
        .first()
        .map(|o| o.uid.clone())
        .unwrap_or_default();
    let outcome = match cache.get(&ns, &name) {
        Some(existing) => {
            if !controlled_by(existing.as_ref(), &owner_uid) {
                return Err(ApplyError::NotOwned {
                    kind: K::kind(&()).to_string(),
                    name,
                });
            }
            let want = serde_json::to_value(desired).expect("serialisable");
            let have = serde_json::to_value(existing.as_ref()).expect("serialisable");
            if is_subset(&strip_status(want), &have) {
                return Ok(Outcome::Unchanged);
            }
            Outcome::Updated
        }
        None => Outcome::Created,
    };
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(desired),
    )
    .await?;
    Ok(outcome)
}

/// Creates `desired` unless an object of that name exists; never updates
/// it. For objects whose content must not change once made, such as a
/// generated auth token.
pub async fn create_if_missing<K>(
    client: &Client,
    cache: &Cache<K>,
    desired: &K,
) -> Result<Outcome, ApplyError>
where
    K: Object + Serialize + Trim,
{
    let ns = desired.namespace().unwrap_or_default();
    if cache.get(&ns, &desired.name_any()).is_some() {
        return Ok(Outcome::Unchanged);
    }
    let api: Api<K> = Api::namespaced(client.clone(), &ns);
    match api.create(&Default::default(), desired).await {
        Ok(_) => Ok(Outcome::Created),
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(Outcome::Unchanged),
        Err(e) => Err(e.into()),
    }
}

fn strip_status(mut v: Value) -> Value {
    if let Some(m) = v.as_object_mut() {
        m.remove("status");
    }
    v
}

/// Server-side applies `status` to the status of `obj`, as this operator's
/// field manager; returns the object as stored.
pub async fn apply_status<K>(
    client: &Client,
    obj: &K,
    status: &impl Serialize,
) -> Result<K, kube::Error>
where
    K: Object,
{
    let api: Api<K> = Api::namespaced(client.clone(), &obj.namespace().unwrap_or_default());
    let body = serde_json::json!({
        "apiVersion": K::api_version(&()),
        "kind": K::kind(&()),
        "status": status,
    });
    api.patch_status(
        &obj.name_any(),
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&body),
    )
    .await
}

/// A controller reference to `owner`, for its children.
pub fn owner_reference<O: Resource<DynamicType = ()>>(owner: &O) -> OwnerReference {
    OwnerReference {
        api_version: O::api_version(&()).to_string(),
        kind: O::kind(&()).to_string(),
        name: owner.name_any(),
        uid: owner.uid().unwrap_or_default(),
        controller: Some(true),
        block_owner_deletion: Some(true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn server_added_fields_are_not_differences() {
        let want = json!({"spec": {"ports": [{"name": "a", "port": 1}], "clusterIP": "None"}});
        let have = json!({"spec": {"ports": [{"name": "a", "port": 1, "protocol": "TCP"}], "clusterIP": "None", "type": "ClusterIP"}});
        assert!(is_subset(&want, &have));
        let changed = json!({"spec": {"ports": [{"name": "a", "port": 2}]}});
        assert!(!is_subset(&changed, &have));
        let extra_port =
            json!({"spec": {"ports": [{"name": "a", "port": 1}, {"name": "b", "port": 2}]}});
        assert!(!is_subset(&extra_port, &have));
    }
}
