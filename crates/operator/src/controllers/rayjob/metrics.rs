//! KubeRay's RayJob metrics (`kuberay_job_*`, with KubeRay's names, help
//! texts and labels), exported with `--enable-metrics`.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use kube::runtime::reflector::Store;
use kuberay_api::RayJob;
use kuberay_api::tolerant::Tolerant;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;

use crate::kit::metrics::{LateStore, ObjectLabels, encode_gauges};
use crate::runtime::metrics::Metrics;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobDurationLabels {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub job_deployment_status: String,
    pub retry_count: String,
}

pub struct JobMetrics {
    execution_duration: Family<JobDurationLabels, Gauge<f64, AtomicU64>>,
    jobs: LateStore<Tolerant<RayJob>>,
}

impl JobMetrics {
    /// The RayJob metrics, registered in `metrics` when it exports KubeRay's.
    pub fn register(metrics: &Metrics) -> Arc<Self> {
        let m = Self {
            execution_duration: Family::default(),
            jobs: LateStore::default(),
        };
        if metrics.kuberay_metrics() {
            metrics.register(
                "kuberay_job_execution_duration_seconds",
                "Duration from when the RayJob CR\u{2019}s JobDeploymentStatus transitions from Initializing to either the Retrying state or a terminal state, such as Complete or Failed. The Retrying state indicates that the CR previously failed and that spec.backoffLimit is enabled.",
                m.execution_duration.clone(),
            );
            metrics.register_collector(Box::new(JobCollector(m.jobs.clone())));
        }
        Arc::new(m)
    }

    /// Lets the `kuberay_job_*` collector read the RayJob cache.
    pub fn watch(&self, store: Store<Tolerant<RayJob>>) {
        self.jobs.set(store);
    }

    /// A RayJob left Running for Complete, Failed or Retrying.
    pub fn finished(
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
        self.execution_duration
            .get_or_create(&labels)
            .set(took.as_secs_f64());
    }

    /// Forgets a deleted RayJob's series.
    pub fn deleted(&self, name: &str, namespace: &str, uid: &str) {
        // The family cannot match partially; drop every series of this job.
        let stale: Vec<JobDurationLabels> = self.series(name, namespace, uid);
        for l in stale {
            self.execution_duration.remove(&l);
        }
    }

    fn series(&self, name: &str, namespace: &str, uid: &str) -> Vec<JobDurationLabels> {
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
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobStatusLabels {
    #[prometheus(flatten)]
    object: ObjectLabels,
    deployment_status: String,
}

/// `kuberay_job_info` and `kuberay_job_deployment_status`, from the cache.
#[derive(Debug)]
struct JobCollector(LateStore<Tolerant<RayJob>>);

impl Collector for JobCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let info = Family::<ObjectLabels, Gauge>::default();
        let status = Family::<JobStatusLabels, Gauge>::default();
        for j in self.0.objects() {
            let object = ObjectLabels::of(&*j);
            info.get_or_create(&object).set(1);
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
                    object,
                    deployment_status,
                })
                .set(1);
        }
        encode_gauges(
            &mut encoder,
            "kuberay_job_info",
            "Metadata information about RayJob custom resources",
            &info,
        )?;
        encode_gauges(
            &mut encoder,
            "kuberay_job_deployment_status",
            "The RayJob's current deployment status",
            &status,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kit::metrics::tests::store_of;
    use crate::runtime::client::RequestCounts;

    #[test]
    fn exposes_info_and_deployment_status_of_each_cached_job() {
        let m = Metrics::new(true, RequestCounts::default());
        let jm = JobMetrics::register(&m);
        let job: Tolerant<RayJob> = serde_json::from_value(serde_json::json!({
            "apiVersion": "ray.io/v1", "kind": "RayJob",
            "metadata": {"name": "count", "namespace": "ns", "uid": "u2"},
            "spec": {"entrypoint": "python -c 'print(1)'"},
            "status": {"jobDeploymentStatus": "Running"}
        }))
        .unwrap();
        jm.watch(store_of(vec![job]));
        let text = m.encode().unwrap();
        let labels = r#"name="count",namespace="ns",uid="u2""#;
        for line in [
            format!("kuberay_job_info{{{labels}}} 1"),
            format!(r#"kuberay_job_deployment_status{{{labels},deployment_status="Running"}} 1"#),
        ] {
            assert!(text.contains(&line), "{line} missing from\n{text}");
        }
    }
}
