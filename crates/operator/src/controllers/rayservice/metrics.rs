//! KubeRay's RayService metrics (`kuberay_service_info`,
//! `kuberay_service_condition_ready`,
//! `kuberay_service_condition_upgrade_in_progress`, with KubeRay's help
//! texts and labels), read from the RayService cache at each scrape and
//! exported with `--enable-metrics`.

use std::sync::Arc;

use kube::runtime::reflector::Store;
use kuberay_api::RayService;
use kuberay_api::tolerant::Tolerant;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::DescriptorEncoder;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::status::{READY, UPGRADE_IN_PROGRESS};
use crate::kit::conditions;
use crate::kit::metrics::{ConditionLabels, LateStore, ObjectLabels, encode_gauges};
use crate::runtime::metrics::Metrics;

pub struct ServiceMetrics {
    services: LateStore<Tolerant<RayService>>,
}

impl ServiceMetrics {
    /// The RayService metrics, registered in `metrics` when it exports KubeRay's.
    pub fn register(metrics: &Metrics) -> Arc<Self> {
        let m = Self {
            services: LateStore::default(),
        };
        if metrics.kuberay_metrics() {
            metrics.register_collector(Box::new(ServiceCollector(m.services.clone())));
        }
        Arc::new(m)
    }

    /// Lets the collector read the RayService cache.
    pub fn watch(&self, store: Store<Tolerant<RayService>>) {
        self.services.set(store);
    }
}

#[derive(Debug)]
struct ServiceCollector(LateStore<Tolerant<RayService>>);

impl Collector for ServiceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = Family::<ObjectLabels, Gauge>::default();
        let ready = Family::<ConditionLabels, Gauge>::default();
        let upgrading = Family::<ConditionLabels, Gauge>::default();
        for s in self.0.objects() {
            let object = ObjectLabels::of(&*s);
            let conds = s
                .parsed
                .as_ref()
                .ok()
                .and_then(|rs| rs.status.as_ref())
                .and_then(|st| st.conditions.as_ref());
            let labels = |type_: &str| {
                ConditionLabels::new(object.clone(), conditions::is_true(conds, type_))
            };
            ready.get_or_create(&labels(READY)).set(1);
            upgrading.get_or_create(&labels(UPGRADE_IN_PROGRESS)).set(1);
            info.get_or_create(&object).set(1);
        }
        encode_gauges(
            &mut encoder,
            "kuberay_service_info",
            "Metadata information about RayService custom resources",
            &info,
        )?;
        encode_gauges(
            &mut encoder,
            "kuberay_service_condition_ready",
            "Describes whether the RayService is ready. Ready means users can send requests to the underlying cluster and the number of serve endpoints is greater than 0.",
            &ready,
        )?;
        encode_gauges(
            &mut encoder,
            "kuberay_service_condition_upgrade_in_progress",
            "Describes whether the RayService is performing a zero-downtime upgrade.",
            &upgrading,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::metrics::tests::store_of;
    use crate::runtime::client::RequestCounts;

    #[test]
    fn exposes_info_and_conditions_of_each_cached_service() {
        let m = Metrics::new(true, RequestCounts::default());
        let sm = ServiceMetrics::register(&m);
        let svc: Tolerant<RayService> = serde_json::from_value(serde_json::json!({
            "apiVersion": "ray.io/v1", "kind": "RayService",
            "metadata": {"name": "web", "namespace": "ns", "uid": "u1"},
            "spec": {"rayClusterConfig": {"headGroupSpec": {"rayStartParams": {},
                "template": {"spec": {"containers": []}}}}},
            "status": {"conditions": [
                {"type": "Ready", "status": "True", "reason": "NonZeroServeEndpoints",
                 "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "UpgradeInProgress", "status": "False", "reason": "NoPendingCluster",
                 "message": "", "lastTransitionTime": "2026-01-01T00:00:00Z"}]}
        }))
        .unwrap();
        assert!(
            !m.encode().unwrap().contains(r#"name="web""#),
            "no cache yet"
        );
        sm.watch(store_of(vec![svc]));
        let text = m.encode().unwrap();
        let labels = r#"name="web",namespace="ns",uid="u1""#;
        for line in [
            format!("kuberay_service_info{{{labels}}} 1"),
            format!(r#"kuberay_service_condition_ready{{{labels},condition="true"}} 1"#),
            format!(
                r#"kuberay_service_condition_upgrade_in_progress{{{labels},condition="false"}} 1"#
            ),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
        sm.watch(store_of(Vec::<Tolerant<RayService>>::new()));
        assert!(!m.encode().unwrap().contains(r#"name="web""#));
    }
}
