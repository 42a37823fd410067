//! KubeRay's RayService metrics (`kuberay_service_info`,
//! `kuberay_service_condition_ready`,
//! `kuberay_service_condition_upgrade_in_progress`, with KubeRay's help
//! texts and labels), read from the RayService cache at each scrape and
//! exported with `--enable-metrics`.

use std::sync::{Arc, Mutex};

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use kuberay_api::RayService;
use kuberay_api::tolerant::Tolerant;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use super::status::{READY, UPGRADE_IN_PROGRESS};
use crate::kit::conditions;
use crate::runtime::metrics::Metrics;

type Services = Arc<Mutex<Option<Store<Tolerant<RayService>>>>>;

pub struct ServiceMetrics {
    services: Services,
}

impl ServiceMetrics {
    /// The RayService metrics, registered in `metrics` when it exports KubeRay's.
    pub fn register(metrics: &Metrics) -> Arc<Self> {
        let m = Self {
            services: Arc::default(),
        };
        if metrics.kuberay_metrics() {
            metrics.register_collector(Box::new(ServiceCollector(m.services.clone())));
        }
        Arc::new(m)
    }

    /// Lets the collector read the RayService cache.
    pub fn watch(&self, store: Store<Tolerant<RayService>>) {
        *self.services.lock().unwrap() = Some(store);
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct InfoLabels {
    name: String,
    namespace: String,
    uid: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    name: String,
    namespace: String,
    uid: String,
    condition: String,
}

struct ServiceCollector(Services);

impl std::fmt::Debug for ServiceCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ServiceCollector")
    }
}

impl Collector for ServiceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = Family::<InfoLabels, Gauge>::default();
        let ready = Family::<ConditionLabels, Gauge>::default();
        let upgrading = Family::<ConditionLabels, Gauge>::default();
        if let Some(store) = self.0.lock().unwrap().as_ref() {
            for s in store.state() {
                let (name, namespace, uid) = (
                    s.name_any(),
                    s.namespace().unwrap_or_default(),
                    s.uid().unwrap_or_default(),
                );
                let conds = s
                    .parsed
                    .as_ref()
                    .ok()
                    .and_then(|rs| rs.status.as_ref())
                    .and_then(|st| st.conditions.as_ref());
                let labels = |type_: &str| ConditionLabels {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    uid: uid.clone(),
                    condition: conditions::is_true(conds, type_).to_string(),
                };
                ready.get_or_create(&labels(READY)).set(1);
                upgrading.get_or_create(&labels(UPGRADE_IN_PROGRESS)).set(1);
                info.get_or_create(&InfoLabels {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    uid: uid.clone(),
                })
                .set(1);
            }
        }
        let m = encoder.encode_descriptor(
            "kuberay_service_info",
            "Metadata information about RayService custom resources",
            None,
            info.metric_type(),
        )?;
        info.encode(m)?;
        let m = encoder.encode_descriptor(
            "kuberay_service_condition_ready",
            "Describes whether the RayService is ready. Ready means users can send requests to the underlying cluster and the number of serve endpoints is greater than 0.",
            None,
            ready.metric_type(),
        )?;
        ready.encode(m)?;
        let m = encoder.encode_descriptor(
            "kuberay_service_condition_upgrade_in_progress",
            "Describes whether the RayService is performing a zero-downtime upgrade.",
            None,
            upgrading.metric_type(),
        )?;
        upgrading.encode(m)
    }
}
