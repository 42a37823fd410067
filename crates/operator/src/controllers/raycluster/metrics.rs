//! KubeRay's RayCluster metrics (`kuberay_cluster_*`, with KubeRay's names,
//! help texts and labels, so existing dashboards keep working), exported
//! with `--enable-metrics`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use kuberay_api::RayCluster;
use kuberay_api::names::ORIGINATED_FROM_CRD_LABEL;
use kuberay_api::tolerant::Tolerant;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::kit::metrics::{ConditionLabels, LateStore, ObjectLabels, encode_gauges};
use crate::runtime::metrics::Metrics;

pub struct ClusterMetrics {
    provisioned_duration: Family<ObjectLabels, Gauge<f64, AtomicU64>>,
    clusters: LateStore<Tolerant<RayCluster>>,
}

impl ClusterMetrics {
    /// The RayCluster metrics, registered in `metrics` when it exports
    /// KubeRay's.
    pub fn register(metrics: &Metrics) -> Arc<Self> {
        let m = Self {
            provisioned_duration: Family::default(),
            clusters: LateStore::default(),
        };
        if metrics.kuberay_metrics() {
            metrics.register(
                "kuberay_cluster_provisioned_duration_seconds",
                "The time, in seconds, when a RayCluster's `RayClusterProvisioned` status transitions from false (or unset) to true",
                m.provisioned_duration.clone(),
            );
            metrics.register_collector(Box::new(ClusterCollector(m.clusters.clone())));
        }
        Arc::new(m)
    }

    /// Lets the `kuberay_cluster_*` collector read the RayCluster cache.
    pub fn watch(&self, store: Store<Tolerant<RayCluster>>) {
        self.clusters.set(store);
    }

    pub fn provisioned(&self, name: &str, namespace: &str, uid: &str, after: Duration) {
        self.provisioned_duration
            .get_or_create(&ObjectLabels::new(name, namespace, uid))
            .set(after.as_secs_f64());
    }

    /// Forgets a deleted cluster's series.
    pub fn deleted(&self, name: &str, namespace: &str, uid: &str) {
        self.provisioned_duration
            .remove(&ObjectLabels::new(name, namespace, uid));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterInfoLabels {
    #[prometheus(flatten)]
    object: ObjectLabels,
    owner_kind: String,
}

/// `kuberay_cluster_info` and `kuberay_cluster_condition_provisioned`,
/// computed from the cache at each scrape, so deleted clusters disappear.
#[derive(Debug)]
struct ClusterCollector(LateStore<Tolerant<RayCluster>>);

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = Family::<ClusterInfoLabels, Gauge>::default();
        let provisioned = Family::<ConditionLabels, Gauge>::default();
        for c in self.0.objects() {
            let object = ObjectLabels::of(&*c);
            let owner_kind = c
                .labels()
                .get(ORIGINATED_FROM_CRD_LABEL)
                .cloned()
                .unwrap_or_else(|| "None".into());
            info.get_or_create(&ClusterInfoLabels {
                object: object.clone(),
                owner_kind,
            })
            .set(1);
            let is_provisioned = c.parsed.as_ref().ok().is_some_and(|rc| {
                crate::kit::conditions::is_true(
                    rc.status.as_ref().and_then(|s| s.conditions.as_ref()),
                    crate::ray::conditions::PROVISIONED,
                )
            });
            provisioned
                .get_or_create(&ConditionLabels::new(object, is_provisioned))
                .set(1);
        }
        encode_gauges(
            &mut encoder,
            "kuberay_cluster_info",
            "Metadata information about RayCluster custom resources",
            &info,
        )?;
        encode_gauges(
            &mut encoder,
            "kuberay_cluster_condition_provisioned",
            "Indicates whether the RayCluster is provisioned",
            &provisioned,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runtime::client::RequestCounts;

    #[test]
    fn exposes_the_provisioned_duration_until_the_cluster_goes() {
        let m = Metrics::new(true, RequestCounts::default());
        let c = ClusterMetrics::register(&m);
        c.provisioned("rc", "ns", "u1", Duration::from_secs(3));
        let text = m.encode().unwrap();
        assert!(text.contains(r#"kuberay_cluster_provisioned_duration_seconds{name="rc",namespace="ns",uid="u1"} 3.0"#), "{text}");
        c.deleted("rc", "ns", "u1");
        assert!(!m.encode().unwrap().contains(r#"name="rc""#));
    }
}
