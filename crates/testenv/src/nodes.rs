//! Simulated nodes. KWOK plays the kubelet for nodes labelled
//! `type=kwok`: it keeps them Ready, moves scheduled pods to Running with a pod
//! IP, completes pods owned by Jobs, and finishes deleting terminating pods.
//! The stage definitions below are what tells KWOK to do exactly that.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{Node, NodeAddress, NodeSpec, NodeStatus, Taint};
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// The label that marks a node as KWOK's to manage.
pub const KWOK_NODE_LABEL: (&str, &str) = ("type", "kwok");

/// One simulated node and its capacity.
#[derive(Debug, Clone)]
pub struct SimNode {
    pub name: String,
    pub cpu: String,
    pub memory: String,
    pub pods: u32,
    pub gpus: u32,
    pub labels: BTreeMap<String, String>,
    /// The node's InternalIP; the control plane assigns one when unset.
    pub ip: Option<String>,
}

/// GPU nodes are tainted as cloud providers taint them; the API server's
/// ExtendedResourceToleration admission adds the toleration to pods that
/// request GPUs, so only those land there.
const GPU_TAINT: &str = "nvidia.com/gpu";

impl SimNode {
    pub fn new(name: &str, cpu: &str, memory: &str) -> Self {
        Self {
            name: name.to_string(),
            cpu: cpu.to_string(),
            memory: memory.to_string(),
            pods: 500,
            gpus: 0,
            labels: BTreeMap::new(),
            ip: None,
        }
    }

    pub fn with_gpus(mut self, gpus: u32) -> Self {
        self.gpus = gpus;
        self
    }

    pub fn with_label(mut self, key: &str, value: &str) -> Self {
        self.labels.insert(key.into(), value.into());
        self
    }

    pub fn with_pods(mut self, pods: u32) -> Self {
        self.pods = pods;
        self
    }

    /// The Node object to create; KWOK fills in its status conditions.
    pub fn to_node(&self) -> Node {
        let mut capacity = BTreeMap::from([
            ("cpu".to_string(), Quantity(self.cpu.clone())),
            ("memory".to_string(), Quantity(self.memory.clone())),
            ("pods".to_string(), Quantity(self.pods.to_string())),
            ("ephemeral-storage".to_string(), Quantity("1Ti".into())),
        ]);
        if self.gpus > 0 {
            capacity.insert("nvidia.com/gpu".into(), Quantity(self.gpus.to_string()));
        }
        let mut labels = self.labels.clone();
        labels.insert(KWOK_NODE_LABEL.0.into(), KWOK_NODE_LABEL.1.into());
        labels.insert("kubernetes.io/hostname".into(), self.name.clone());
        labels.insert("kubernetes.io/os".into(), "linux".into());
        labels.insert("kubernetes.io/arch".into(), "amd64".into());
        Node {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                labels: Some(labels),
                annotations: Some(BTreeMap::from([(
                    "node.alpha.kubernetes.io/ttl".to_string(),
                    "0".to_string(),
                )])),
                ..Default::default()
            },
            spec: Some(NodeSpec {
                taints: (self.gpus > 0).then(|| {
                    vec![Taint {
                        key: GPU_TAINT.into(),
                        value: Some("present".into()),
                        effect: "NoSchedule".into(),
                        time_added: None,
                    }]
                }),
                ..Default::default()
            }),
            status: Some(NodeStatus {
                addresses: self.ip.as_ref().map(|ip| {
                    vec![
                        NodeAddress {
                            type_: "InternalIP".into(),
                            address: ip.clone(),
                        },
                        NodeAddress {
                            type_: "Hostname".into(),
                            address: self.name.clone(),
                        },
                    ]
                }),
                allocatable: Some(capacity.clone()),
                capacity: Some(capacity),
                ..Default::default()
            }),
        }
    }
}

/// A small, mixed fleet: general-purpose nodes and one GPU node, roomy enough
/// for every sample manifest and for tests that scale to dozens of pods.
pub fn default_nodes() -> Vec<SimNode> {
    vec![
        SimNode::new("kwok-node-0", "64", "256Gi"),
        SimNode::new("kwok-node-1", "64", "256Gi"),
        SimNode::new("kwok-node-2", "64", "256Gi"),
        // Labelled like a GKE T4 node, so GPU samples that select one schedule.
        SimNode::new("kwok-gpu-node-0", "128", "1Ti")
            .with_gpus(8)
            .with_label("cloud.google.com/gke-accelerator", "nvidia-tesla-t4"),
    ]
}

/// KWOK's stage configuration: how simulated objects move between states.
/// Templates are Go templates evaluated by KWOK against the object.
pub const STAGES: &str = r#"
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sim-node-ready
spec:
  resourceRef: {apiGroup: v1, kind: Node}
  selector:
    matchExpressions:
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: NotIn
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      conditions:
      {{ range NodeConditions }}
      - type: {{ .type | Quote }}
        status: {{ .status | Quote }}
        reason: {{ .reason | Quote }}
        message: {{ .message | Quote }}
        lastHeartbeatTime: {{ $now | Quote }}
        lastTransitionTime: {{ $now | Quote }}
      {{ end }}
      addresses:
      {{ with .status.addresses }}
      {{ YAML . 1 }}
      {{ else }}
      - {type: InternalIP, address: {{ NodeIP | Quote }}}
      - {type: Hostname, address: {{ NodeName | Quote }}}
      {{ end }}
      allocatable:
      {{ YAML .status.allocatable 1 }}
      capacity:
      {{ YAML .status.capacity 1 }}
      nodeInfo:
        architecture: amd64
        operatingSystem: linux
        kubeletVersion: {{ printf "kwok-%s" Version | Quote }}
        kubeProxyVersion: {{ printf "kwok-%s" Version | Quote }}
        containerRuntimeVersion: simulated
        kernelVersion: simulated
        osImage: simulated
        machineID: ""
        bootID: ""
        systemUUID: ""
      phase: Running
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sim-pod-running
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: DoesNotExist}
    - {key: .status.phase, operator: In, values: [Pending]}
    - key: '.status.conditions.[] | select( .type == "Ready" ) | .status'
      operator: NotIn
      values: ['True']
  next:
    statusTemplate: |
      {{ $now := Now }}
      phase: Running
      startTime: {{ $now | Quote }}
      conditions:
      - {type: PodScheduled, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Initialized, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "True", lastTransitionTime: {{ $now | Quote }}}
      - {type: Ready, status: "True", lastTransitionTime: {{ $now | Quote }}}
      {{ range .spec.readinessGates }}
      - {type: {{ .conditionType | Quote }}, status: "True", lastTransitionTime: {{ $now | Quote }}}
      {{ end }}
      initContainerStatuses:
      {{ range .spec.initContainers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: true
        restartCount: 0
        state:
          terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}
      {{ end }}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: true
        started: true
        restartCount: 0
        state:
          running: {startedAt: {{ $now | Quote }}}
      {{ end }}
      {{ with NodeIPsWith .spec.nodeName }}
      hostIP: {{ index . 0 | Quote }}
      hostIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
      {{ with PodIPsWith .spec.nodeName ( or .spec.hostNetwork false ) ( or .metadata.uid "" ) ( or .metadata.name "" ) ( or .metadata.namespace "" ) }}
      podIP: {{ index . 0 | Quote }}
      podIPs:
      {{ range . }}
      - ip: {{ . | Quote }}
      {{ end }}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sim-job-pod-succeeded
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: DoesNotExist}
    - {key: .status.phase, operator: In, values: [Running]}
    - {key: '.metadata.ownerReferences.[].kind', operator: In, values: [Job]}
    - {key: '.metadata.annotations["sim.kuberay-rs.dev/keep-running"]', operator: DoesNotExist}
  delay:
    durationMilliseconds: 1000
  next:
    statusTemplate: |
      {{ $now := Now }}
      phase: Succeeded
      conditions:
      - {type: Ready, status: "False", reason: PodCompleted, lastTransitionTime: {{ $now | Quote }}}
      - {type: ContainersReady, status: "False", reason: PodCompleted, lastTransitionTime: {{ $now | Quote }}}
      containerStatuses:
      {{ range .spec.containers }}
      - name: {{ .name | Quote }}
        image: {{ .image | Quote }}
        ready: false
        started: false
        restartCount: 0
        state:
          terminated: {exitCode: 0, reason: Completed, startedAt: {{ $now | Quote }}, finishedAt: {{ $now | Quote }}}
      {{ end }}
---
apiVersion: kwok.x-k8s.io/v1alpha1
kind: Stage
metadata:
  name: sim-pod-gone
spec:
  resourceRef: {apiGroup: v1, kind: Pod}
  selector:
    matchExpressions:
    - {key: .metadata.deletionTimestamp, operator: Exists}
  next:
    delete: true
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gpu_nodes_advertise_gpus_and_all_are_kwok_managed() {
        let node = SimNode::new("n", "4", "8Gi").with_gpus(2).to_node();
        let cap = node.status.unwrap().capacity.unwrap();
        assert_eq!(cap["nvidia.com/gpu"], Quantity("2".into()));
        assert_eq!(cap["cpu"], Quantity("4".into()));
        assert_eq!(node.metadata.labels.unwrap()["type"], "kwok");
    }

    #[test]
    fn stages_parse_as_yaml_documents() {
        use serde::Deserialize;
        let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(STAGES)
            .map(serde_yaml::Value::deserialize)
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(docs.len(), 4);
        assert!(docs.iter().all(|d| d["kind"] == "Stage"));
    }
}
