//! What the cache keeps of each kind. Pods dominate memory at scale, so
//! they keep only what reconciles and status read: identity, labels,
//! annotations, the restart policy and container names, phase, IP,
//! conditions, container states (and the last one of a restarted
//! container). `managedFields` go everywhere.

use k8s_openapi::api::batch::v1::Job;
use k8s_openapi::api::core::v1::{
    Container, ContainerStatus, PersistentVolumeClaim, Pod, PodSpec, PodStatus, Secret, Service,
    ServiceAccount,
};
use k8s_openapi::api::networking::v1::Ingress;
use k8s_openapi::api::rbac::v1::{Role, RoleBinding};

use crate::kit::cache::Trim;

impl Trim for Pod {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        self.spec = self.spec.take().map(|s| PodSpec {
            restart_policy: s.restart_policy,
            node_name: s.node_name,
            containers: s
                .containers
                .into_iter()
                .map(|c| Container {
                    name: c.name,
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        });
        self.status = self.status.take().map(|s| PodStatus {
            phase: s.phase,
            pod_ip: s.pod_ip,
            reason: s.reason,
            message: s.message,
            conditions: s.conditions,
            container_statuses: s.container_statuses.map(|cs| {
                cs.into_iter()
                    .map(|c| ContainerStatus {
                        name: c.name,
                        ready: c.ready,
                        restart_count: c.restart_count,
                        state: c.state,
                        // Why a restarted container died (a status quotes
                        // a crash-looping sidecar's last words); a few
                        // containers restart, so it costs little memory.
                        last_state: c.last_state.filter(|_| c.restart_count > 0),
                        ..Default::default()
                    })
                    .collect()
            }),
            ..Default::default()
        });
    }
}

impl Trim for Service {}
impl Trim for ServiceAccount {}
impl Trim for Role {}
impl Trim for RoleBinding {}
impl Trim for Ingress {}
impl Trim for Job {}
impl Trim for PersistentVolumeClaim {}

/// Only the existence of a Secret matters to reconciles; its data is not
/// kept in memory.
impl Trim for Secret {
    fn trim(&mut self) {
        self.metadata.managed_fields = None;
        self.data = None;
        self.string_data = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trimmed_pods_keep_what_reconciles_read() {
        let mut pod: Pod = serde_json::from_value(serde_json::json!({
            "metadata": {"name": "p", "labels": {"ray.io/cluster": "c"}, "managedFields": [{"manager": "x"}]},
            "spec": {"restartPolicy": "Never", "containers": [{"name": "ray-head", "image": "ray", "env": [{"name": "A", "value": "b"}]}]},
            "status": {"phase": "Running", "podIP": "10.0.0.1", "conditions": [{"type": "Ready", "status": "True"}],
                       "containerStatuses": [{"name": "ray-head", "ready": true, "restartCount": 0, "image": "ray", "imageID": "x"}]}
        }))
        .unwrap();
        pod.trim();
        assert!(pod.metadata.managed_fields.is_none());
        let spec = pod.spec.as_ref().unwrap();
        assert_eq!(spec.restart_policy.as_deref(), Some("Never"));
        assert_eq!(spec.containers[0].name, "ray-head");
        assert!(spec.containers[0].image.is_none() && spec.containers[0].env.is_none());
        let status = pod.status.as_ref().unwrap();
        assert_eq!(status.pod_ip.as_deref(), Some("10.0.0.1"));
        assert_eq!(status.container_statuses.as_ref().unwrap()[0].image, "");
    }
}
