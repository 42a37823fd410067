//! The Prometheus registry: controller-runtime's reconcile metrics under
//! their usual names and the operator's Kubernetes API requests by verb and
//! resource. Controllers register their own (KubeRay's `kuberay_*`) here.

use std::sync::{Arc, Mutex};

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::{Metric, Registry};

use crate::runtime::client::RequestCounts;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    pub controller: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    pub controller: String,
    /// `success`, `error` or `requeue`.
    pub result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub controller: String,
    pub reason: String,
}

fn reconcile_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.005, 2.0, 14))
}

/// Every metric the operator exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    reconcile_total: Family<ResultLabels, Counter>,
    reconcile_errors: Family<ControllerLabels, Counter>,
    reconcile_errors_by_reason: Family<ReasonLabels, Counter>,
    reconcile_time: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    active_workers: Family<ControllerLabels, Gauge>,
    /// KubeRay's `--enable-metrics`: whether controllers export their
    /// `kuberay_*` metrics.
    kuberay_metrics: bool,
}

impl Metrics {
    /// `kuberay_*` metrics only when `kuberay_metrics` (KubeRay's
    /// `--enable-metrics`); the reconcile and client metrics always.
    pub fn new(kuberay_metrics: bool, requests: RequestCounts) -> Arc<Self> {
        let mut registry = Registry::default();
        let m = Self {
            registry: Mutex::new(Registry::default()),
            reconcile_total: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_errors_by_reason: Family::default(),
            reconcile_time: Family::new_with_constructor(reconcile_histogram),
            active_workers: Family::default(),
            kuberay_metrics,
        };
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            m.reconcile_total.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "kuberay_reconcile_errors_by_reason",
            "Reconciliation errors per controller and stable reason (also the Event reason)",
            m.reconcile_errors_by_reason.clone(),
        );
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            m.reconcile_time.clone(),
        );
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            m.active_workers.clone(),
        );
        registry.register_collector(Box::new(RequestCollector(requests)));
        registry.register_collector(Box::new(ProcessCollector));
        *m.registry.lock().unwrap() = registry;
        Arc::new(m)
    }

    /// Whether controllers export their `kuberay_*` metrics (KubeRay's
    /// `--enable-metrics`).
    pub fn kuberay_metrics(&self) -> bool {
        self.kuberay_metrics
    }

    /// Adds a controller's own metric.
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        self.registry.lock().unwrap().register(name, help, metric);
    }

    /// Adds a collector computed at each scrape.
    pub fn register_collector(&self, collector: Box<dyn Collector>) {
        self.registry.lock().unwrap().register_collector(collector);
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().unwrap())?;
        Ok(out)
    }

    /// Times one reconcile and records its outcome.
    pub fn reconcile_started(self: &Arc<Self>, controller: &'static str) -> ReconcileTimer {
        let labels = ControllerLabels {
            controller: controller.into(),
        };
        self.active_workers.get_or_create(&labels).inc();
        ReconcileTimer {
            metrics: self.clone(),
            controller,
            start: std::time::Instant::now(),
        }
    }
}

/// Records a reconcile when finished.
pub struct ReconcileTimer {
    metrics: Arc<Metrics>,
    controller: &'static str,
    start: std::time::Instant,
}

impl ReconcileTimer {
    /// `reason` is `None` on success.
    pub fn finish(self, error_reason: Option<&str>) {
        let m = &self.metrics;
        let controller = ControllerLabels {
            controller: self.controller.into(),
        };
        m.active_workers.get_or_create(&controller).dec();
        m.reconcile_time
            .get_or_create(&controller)
            .observe(self.start.elapsed().as_secs_f64());
        let result = if error_reason.is_some() {
            "error"
        } else {
            "success"
        };
        m.reconcile_total
            .get_or_create(&ResultLabels {
                controller: self.controller.into(),
                result: result.into(),
            })
            .inc();
        if let Some(reason) = error_reason {
            m.reconcile_errors.get_or_create(&controller).inc();
            m.reconcile_errors_by_reason
                .get_or_create(&ReasonLabels {
                    controller: self.controller.into(),
                    reason: reason.into(),
                })
                .inc();
        }
    }
}

#[derive(Debug)]
struct RequestCollector(RequestCounts);

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    verb: String,
    group: String,
    resource: String,
}

impl Collector for RequestCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let family = Family::<RequestLabels, Counter>::default();
        for (call, n) in self.0.snapshot() {
            family
                .get_or_create(&RequestLabels {
                    verb: call.verb,
                    group: call.group,
                    resource: call.resource,
                })
                .inc_by(n);
        }
        let m = encoder.encode_descriptor(
            "kuberay_kube_client_requests",
            "Requests to the Kubernetes API server by RBAC verb, API group and resource",
            None,
            family.metric_type(),
        )?;
        family.encode(m)
    }
}

/// The process's own resident memory and CPU time, read from `/proc` at
/// each scrape, under the names Prometheus's process collectors use: what
/// dashboards and the robustness tests watch.
#[derive(Debug)]
struct ProcessCollector;

impl ProcessCollector {
    /// (resident bytes, CPU seconds) from `/proc/self/stat`.
    fn read() -> Option<(f64, f64)> {
        let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
        // Fields after the command name, which may contain spaces.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        // utime, stime (fields 14, 15) and rss (field 24), counted from 1
        // with the pid as field 1: index 11, 12 and 21 of `rest`.
        let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
        let pages: f64 = f.get(21)?.parse().ok()?;
        // The kernel's USER_HZ and page size on every Linux this runs on.
        Some((pages * 4096.0, ticks / 100.0))
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::metrics::gauge::Gauge;
        let Some((rss, cpu)) = Self::read() else {
            return Ok(());
        };
        let gauge = Gauge::<f64, std::sync::atomic::AtomicU64>::default();
        gauge.set(rss);
        let m = encoder.encode_descriptor(
            "process_resident_memory_bytes",
            "Resident memory size in bytes",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(m)?;
        let counter = Counter::<f64, std::sync::atomic::AtomicU64>::default();
        counter.inc_by(cpu);
        let m = encoder.encode_descriptor(
            "process_cpu_seconds",
            "Total user and system CPU time spent in seconds",
            None,
            counter.metric_type(),
        )?;
        counter.encode(m)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exposes_reconcile_and_request_metrics() {
        let requests = RequestCounts::default();
        let m = Metrics::new(true, requests);
        m.reconcile_started("raycluster").finish(None);
        m.reconcile_started("raycluster")
            .finish(Some("FailedCreateWorkerPod"));
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"controller_runtime_reconcile_total{controller="raycluster",result="success"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"kuberay_reconcile_errors_by_reason_total{controller="raycluster",reason="FailedCreateWorkerPod"} 1"#), "{text}");
        assert!(
            text.contains("controller_runtime_reconcile_time_seconds_bucket"),
            "{text}"
        );
        let rss = text
            .lines()
            .find_map(|l| l.strip_prefix("process_resident_memory_bytes "))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_else(|| panic!("no resident memory in {text}"));
        assert!(rss > 1e6, "{rss}");
        assert!(text.contains("process_cpu_seconds_total "), "{text}");
    }
}
