//! Prometheus metrics: KubeRay's own (`kuberay_cluster_*`, `kuberay_job_*`,
//! with KubeRay's names, help texts and labels, so existing dashboards keep
//! working), controller-runtime's reconcile metrics under their usual names,
//! and the operator's Kubernetes API requests by verb and resource.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use kube::ResourceExt;
use kube::runtime::reflector::Store;
use kuberay_api::names::ORIGINATED_FROM_CRD_LABEL;
use kuberay_api::tolerant::Tolerant;
use kuberay_api::{RayCluster, RayJob};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ObjectLabels {
    pub name: String,
    pub namespace: String,
    pub uid: String,
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
    cluster_provisioned_duration: Family<ObjectLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    clusters: Arc<Mutex<Option<Store<Tolerant<RayCluster>>>>>,
    job_execution_duration: Family<JobDurationLabels, Gauge<f64, std::sync::atomic::AtomicU64>>,
    jobs: Arc<Mutex<Option<Store<Tolerant<RayJob>>>>>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobDurationLabels {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub job_deployment_status: String,
    pub retry_count: String,
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
            cluster_provisioned_duration: Family::default(),
            clusters: Arc::default(),
            job_execution_duration: Family::default(),
            jobs: Arc::default(),
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
        if kuberay_metrics {
            registry.register(
                "kuberay_cluster_provisioned_duration_seconds",
                "The time, in seconds, when a RayCluster's `RayClusterProvisioned` status transitions from false (or unset) to true",
                m.cluster_provisioned_duration.clone(),
            );
            registry.register_collector(Box::new(ClusterCollector(m.clusters.clone())));
            registry.register(
                "kuberay_job_execution_duration_seconds",
                "Duration from when the RayJob CR\u{2019}s JobDeploymentStatus transitions from Initializing to either the Retrying state or a terminal state, such as Complete or Failed. The Retrying state indicates that the CR previously failed and that spec.backoffLimit is enabled.",
                m.job_execution_duration.clone(),
            );
            registry.register_collector(Box::new(JobCollector(m.jobs.clone())));
        }
        *m.registry.lock().unwrap() = registry;
        Arc::new(m)
    }

    /// The text exposition of every metric.
    pub fn encode(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry.lock().unwrap())?;
        Ok(out)
    }

    /// Lets the `kuberay_cluster_*` collector read the RayCluster cache.
    pub fn watch_clusters(&self, store: Store<Tolerant<RayCluster>>) {
        *self.clusters.lock().unwrap() = Some(store);
    }

    /// Lets the `kuberay_job_*` collector read the RayJob cache.
    pub fn watch_jobs(&self, store: Store<Tolerant<RayJob>>) {
        *self.jobs.lock().unwrap() = Some(store);
    }

    /// A RayJob left Running for Complete, Failed or Retrying.
    pub fn job_finished(
        &self,
        name: &str,
        namespace: &str,
        uid: &str,
        status: &str,
        retry_count: i32,
        took: Duration,
    ) {
        let labels = JobDurationLabels {
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
            job_deployment_status: status.into(),
            retry_count: retry_count.to_string(),
        };
        self.job_execution_duration
            .get_or_create(&labels)
            .set(took.as_secs_f64());
    }

    /// Forgets a deleted RayJob's series.
    pub fn job_deleted(&self, name: &str, namespace: &str, uid: &str) {
        // The family cannot match partially; drop every series of this job.
        let stale: Vec<JobDurationLabels> = self.job_series(name, namespace, uid);
        for l in stale {
            self.job_execution_duration.remove(&l);
        }
    }

    fn job_series(&self, name: &str, namespace: &str, uid: &str) -> Vec<JobDurationLabels> {
        let mut out = Vec::new();
        for status in ["Complete", "Failed", "Retrying"] {
            for retry in 0..64 {
                let l = JobDurationLabels {
                    name: name.into(),
                    namespace: namespace.into(),
                    uid: uid.into(),
                    job_deployment_status: status.into(),
                    retry_count: retry.to_string(),
                };
                out.push(l);
            }
        }
        out
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

    pub fn cluster_provisioned(&self, name: &str, namespace: &str, uid: &str, after: Duration) {
        let labels = ObjectLabels {
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
        };
        self.cluster_provisioned_duration
            .get_or_create(&labels)
            .set(after.as_secs_f64());
    }

    /// Forgets a deleted cluster's series.
    pub fn cluster_deleted(&self, name: &str, namespace: &str, uid: &str) {
        let labels = ObjectLabels {
            name: name.into(),
            namespace: namespace.into(),
            uid: uid.into(),
        };
        self.cluster_provisioned_duration.remove(&labels);
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

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ClusterInfoLabels {
    name: String,
    namespace: String,
    uid: String,
    owner_kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ConditionLabels {
    name: String,
    namespace: String,
    uid: String,
    condition: String,
}

/// `kuberay_cluster_info` and `kuberay_cluster_condition_provisioned`,
/// computed from the cache at each scrape, so deleted clusters disappear.
struct ClusterCollector(Arc<Mutex<Option<Store<Tolerant<RayCluster>>>>>);

impl std::fmt::Debug for ClusterCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterCollector")
    }
}

impl Collector for ClusterCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = Family::<ClusterInfoLabels, Gauge>::default();
        let provisioned = Family::<ConditionLabels, Gauge>::default();
        if let Some(store) = self.0.lock().unwrap().as_ref() {
            for c in store.state() {
                let (name, namespace, uid) = (
                    c.name_any(),
                    c.namespace().unwrap_or_default(),
                    c.uid().unwrap_or_default(),
                );
                let owner_kind = c
                    .labels()
                    .get(ORIGINATED_FROM_CRD_LABEL)
                    .cloned()
                    .unwrap_or_else(|| "None".into());
                info.get_or_create(&ClusterInfoLabels {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    uid: uid.clone(),
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
                    .get_or_create(&ConditionLabels {
                        name,
                        namespace,
                        uid,
                        condition: is_provisioned.to_string(),
                    })
                    .set(1);
            }
        }
        let m = encoder.encode_descriptor(
            "kuberay_cluster_info",
            "Metadata information about RayCluster custom resources",
            None,
            info.metric_type(),
        )?;
        info.encode(m)?;
        let m = encoder.encode_descriptor(
            "kuberay_cluster_condition_provisioned",
            "Indicates whether the RayCluster is provisioned",
            None,
            provisioned.metric_type(),
        )?;
        provisioned.encode(m)
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
        m.cluster_provisioned("rc", "ns", "u1", Duration::from_secs(3));
        let text = m.encode().unwrap();
        assert!(
            text.contains(
                r#"controller_runtime_reconcile_total{controller="raycluster",result="success"} 1"#
            ),
            "{text}"
        );
        assert!(text.contains(r#"kuberay_reconcile_errors_by_reason_total{controller="raycluster",reason="FailedCreateWorkerPod"} 1"#), "{text}");
        assert!(text.contains(r#"kuberay_cluster_provisioned_duration_seconds{name="rc",namespace="ns",uid="u1"} 3.0"#), "{text}");
        assert!(
            text.contains("controller_runtime_reconcile_time_seconds_bucket"),
            "{text}"
        );
        m.cluster_deleted("rc", "ns", "u1");
        assert!(!m.encode().unwrap().contains(r#"name="rc""#));
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobInfoLabels {
    name: String,
    namespace: String,
    uid: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobStatusLabels {
    name: String,
    namespace: String,
    uid: String,
    deployment_status: String,
}

/// `kuberay_job_info` and `kuberay_job_deployment_status`, from the cache.
struct JobCollector(Arc<Mutex<Option<Store<Tolerant<RayJob>>>>>);

impl std::fmt::Debug for JobCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("JobCollector")
    }
}

impl Collector for JobCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = Family::<JobInfoLabels, Gauge>::default();
        let status = Family::<JobStatusLabels, Gauge>::default();
        if let Some(store) = self.0.lock().unwrap().as_ref() {
            for j in store.state() {
                let (name, namespace, uid) = (
                    j.name_any(),
                    j.namespace().unwrap_or_default(),
                    j.uid().unwrap_or_default(),
                );
                info.get_or_create(&JobInfoLabels {
                    name: name.clone(),
                    namespace: namespace.clone(),
                    uid: uid.clone(),
                })
                .set(1);
                let deployment_status = j
                    .parsed
                    .as_ref()
                    .ok()
                    .and_then(|rj| rj.status.as_ref())
                    .and_then(|s| s.job_deployment_status.as_ref())
                    .map(|d| d.to_string())
                    .unwrap_or_default();
                status
                    .get_or_create(&JobStatusLabels {
                        name,
                        namespace,
                        uid,
                        deployment_status,
                    })
                    .set(1);
            }
        }
        let m = encoder.encode_descriptor(
            "kuberay_job_info",
            "Metadata information about RayJob custom resources",
            None,
            info.metric_type(),
        )?;
        info.encode(m)?;
        let m = encoder.encode_descriptor(
            "kuberay_job_deployment_status",
            "The RayJob's current deployment status",
            None,
            status.metric_type(),
        )?;
        status.encode(m)
    }
}
