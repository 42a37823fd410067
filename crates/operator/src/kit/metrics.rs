//! Gauges read from a controller's cache at each scrape, the shape of
//! KubeRay's `*_info` and condition metrics: nothing is updated as objects
//! change, and a deleted object's series go with it.
//!
//! A collector keeps a [`LateStore`] (the cache exists only once the
//! controller's watch starts, after the metrics are registered), builds
//! its gauge families from [`LateStore::objects`] with [`ObjectLabels`] and
//! [`ConditionLabels`], and writes each with [`encode_gauges`].

use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

/// The labels every KubeRay object metric starts with.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

impl ObjectLabels {
    pub fn new(name: &str, namespace: &str, uid: &str) -> Self {
        Self {
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
        }
    }

    pub fn of(obj: &impl ResourceExt) -> Self {
        Self {
            name: obj.name_any(),
            namespace: obj.namespace().unwrap_or_default(),
            uid: obj.uid().unwrap_or_default(),
        }
    }
}

/// An object's labels and whether one of its conditions is true
/// (`condition="true"`/`"false"`), KubeRay's `*_condition_*` shape.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ConditionLabels {
    #[prometheus(flatten)]
    pub object: ObjectLabels,
    pub condition: String,
}

impl ConditionLabels {
    pub fn new(object: ObjectLabels, is_true: bool) -> Self {
        Self {
            object,
            condition: is_true.to_string(),
        }
    }
}

/// The cache of `K` a collector reads, once the controller has one.
pub struct LateStore<K: kube::Resource<DynamicType = ()> + Clone + 'static>(
    Arc<Mutex<Option<Store<K>>>>,
);

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> LateStore<K> {
    /// Hands the controller's cache to every clone of this slot.
    pub fn set(&self, store: Store<K>) {
        *self.0.lock().unwrap() = Some(store);
    }

    /// Every cached object; none before the cache is set.
    pub fn objects(&self) -> Vec<Arc<K>> {
        self.0
            .lock()
            .unwrap()
            .as_ref()
            .map(Store::state)
            .unwrap_or_default()
    }
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Clone for LateStore<K> {
    fn clone(&self) -> Self {
        Self(self.0.clone())
    }
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> Default for LateStore<K> {
    fn default() -> Self {
        Self(Arc::default())
    }
}

impl<K: kube::Resource<DynamicType = ()> + Clone + 'static> std::fmt::Debug for LateStore<K> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LateStore<{}>", K::kind(&()))
    }
}

/// Writes one gauge family into a scrape under `name` with `help`.
pub fn encode_gauges<L>(
    encoder: &mut DescriptorEncoder,
    name: &str,
    help: &str,
    family: &Family<L, Gauge>,
) -> Result<(), std::fmt::Error>
where
    L: EncodeLabelSet + Clone + std::hash::Hash + Eq + std::fmt::Debug,
{
    let m = encoder.encode_descriptor(name, help, None, family.metric_type())?;
    family.encode(m)
}

#[cfg(test)]
pub(crate) mod tests {
    use kube::runtime::reflector::store::Writer;
    use kube::runtime::watcher::Event;

    use super::*;

    /// A cache holding `objects`, as a controller's watch would fill it.
    pub(crate) fn store_of<K>(objects: Vec<K>) -> Store<K>
    where
        K: kube::Resource<DynamicType = ()> + Clone + 'static,
    {
        let mut w: Writer<K> = Writer::default();
        let store = w.as_reader();
        w.apply_watcher_event(&Event::Init);
        for o in objects {
            w.apply_watcher_event(&Event::InitApply(o));
        }
        w.apply_watcher_event(&Event::InitDone);
        store
    }

    #[test]
    fn condition_labels_follow_the_object_labels() {
        let mut out = String::new();
        let f = Family::<ConditionLabels, Gauge>::default();
        f.get_or_create(&ConditionLabels::new(
            ObjectLabels::new("a", "ns", "u"),
            true,
        ))
        .set(1);
        let mut registry = prometheus_client::registry::Registry::default();
        registry.register("x", "help", f);
        prometheus_client::encoding::text::encode(&mut out, &registry).unwrap();
        assert!(
            out.contains(r#"x{name="a",namespace="ns",uid="u",condition="true"} 1"#),
            "{out}"
        );
    }
}
