//! The RayCluster a RayJob creates: its spec, KubeRay's origin labels, the
//! RayJob's labels and annotations, and in SidecarMode the submitter in the
//! head pod (whose head must then never restart on its own).

use std::collections::BTreeMap;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kuberay_api::names::{
    DISABLE_PROVISIONED_HEAD_RESTART_ANNOTATION, ORIGINATED_FROM_CR_NAME_LABEL,
    ORIGINATED_FROM_CRD_LABEL,
};
use kuberay_api::rayjob::JobSubmissionMode;
use kuberay_api::{RayCluster, RayJob};

use super::submitter;

/// Label naming how the owning RayJob submits.
pub const SUBMISSION_MODE_LABEL: &str = "ray.io/job-submission-mode";

pub fn cluster_for(
    job: &RayJob,
    name: &str,
    job_id: &str,
    login: bool,
) -> Result<RayCluster, String> {
    let mut spec = job
        .spec
        .ray_cluster_spec
        .clone()
        .ok_or("the RayJob has no rayClusterSpec")?;
    let mode = job
        .spec
        .submission_mode
        .clone()
        .unwrap_or(JobSubmissionMode::K8sJobMode);
    let mut labels = job.metadata.labels.clone().unwrap_or_default();
    labels.insert(
        ORIGINATED_FROM_CR_NAME_LABEL.into(),
        job.metadata.name.clone().unwrap_or_default(),
    );
    labels.insert(ORIGINATED_FROM_CRD_LABEL.into(), "RayJob".into());
    labels.insert(SUBMISSION_MODE_LABEL.into(), mode.to_string());
    let mut annotations: BTreeMap<String, String> =
        job.metadata.annotations.clone().unwrap_or_default();
    annotations.remove("kubectl.kubernetes.io/last-applied-configuration");
    if mode == JobSubmissionMode::SidecarMode {
        let container = submitter::sidecar(job, &spec, name, job_id, login)?;
        let head = spec
            .head_group_spec
            .template
            .spec
            .get_or_insert_with(Default::default);
        head.containers.push(container);
        // The submitter runs once; a restarted head would run a second job.
        head.restart_policy = Some("Never".into());
        annotations.insert(
            DISABLE_PROVISIONED_HEAD_RESTART_ANNOTATION.into(),
            "true".into(),
        );
    }
    Ok(RayCluster {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: job.metadata.namespace.clone(),
            labels: Some(labels),
            annotations: (!annotations.is_empty()).then_some(annotations),
            ..Default::default()
        },
        spec,
        status: None,
    })
}
