//! Watching without letting one malformed object break the stream. A typed
//! watch fails as a whole when a single object does not deserialise (say a
//! v1alpha1 write, which the API server does not check, put a string where a
//! number belongs). `Tolerant<K>` always deserialises: it keeps the metadata
//! and either the object or the reason it could not be read, so the
//! controller can report that one object and reconcile the rest.

use std::borrow::Cow;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kube::Resource;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};

#[derive(Clone, Debug)]
pub struct Tolerant<K> {
    pub metadata: ObjectMeta,
    /// The object, or why it could not be read as a `K`.
    pub parsed: Result<K, String>,
}

impl<'de, K: DeserializeOwned> Deserialize<'de> for Tolerant<K> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let value = serde_json::Value::deserialize(d)?;
        // Metadata must be readable: without a name nothing can be reported.
        let metadata: ObjectMeta =
            serde_json::from_value(value.get("metadata").cloned().unwrap_or_default())
                .map_err(serde::de::Error::custom)?;
        let parsed = serde_json::from_value(value).map_err(|e| e.to_string());
        Ok(Self { metadata, parsed })
    }
}

impl<K: Resource<DynamicType = ()>> Resource for Tolerant<K> {
    type DynamicType = ();
    type Scope = K::Scope;

    fn kind(_: &()) -> Cow<'_, str> {
        K::kind(&())
    }
    fn group(_: &()) -> Cow<'_, str> {
        K::group(&())
    }
    fn version(_: &()) -> Cow<'_, str> {
        K::version(&())
    }
    fn plural(_: &()) -> Cow<'_, str> {
        K::plural(&())
    }
    fn meta(&self) -> &ObjectMeta {
        &self.metadata
    }
    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut self.metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RayCluster;

    #[test]
    fn a_malformed_object_keeps_its_name_and_the_reason() {
        let bad = serde_json::json!({
            "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "bad", "namespace": "ns"},
            "spec": {"headGroupSpec": {"template": {}}, "workerGroupSpecs": [{"groupName": "g", "replicas": "three", "template": {}}]}
        });
        let t: Tolerant<RayCluster> = serde_json::from_value(bad).unwrap();
        assert_eq!(t.metadata.name.as_deref(), Some("bad"));
        let err = t.parsed.unwrap_err();
        assert!(err.contains("three"), "{err}");
    }

    #[test]
    fn a_good_object_parses_and_keeps_the_kind_of_its_type() {
        let good = serde_json::json!({
            "apiVersion": "ray.io/v1", "kind": "RayCluster", "metadata": {"name": "good"},
            "spec": {"headGroupSpec": {"template": {}}}
        });
        let t: Tolerant<RayCluster> = serde_json::from_value(good).unwrap();
        assert!(t.parsed.is_ok());
        assert_eq!(Tolerant::<RayCluster>::plural(&()), "rayclusters");
    }
}
