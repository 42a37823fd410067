//! What the operator adds for the Ray autoscaler beyond honouring
//! `replicas` and `workersToDelete` (that is in `scale.rs`): it clears a
//! `workersToDelete` list whose pods are all gone, says in an event when a
//! group's size changes and who asked, and explains a crash-looping
//! autoscaler sidecar in the status. Pure: the caller does the writes.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{ContainerStatus, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use kuberay_api::RayCluster;
use serde_json::{Value, json};

use super::scale::desired_pods;
use crate::ray::autoscaler;

/// A group whose `workersToDelete` names only pods that no longer exist.
#[derive(Clone, Debug, PartialEq)]
pub struct FinishedList {
    pub index: usize,
    pub group: String,
    pub listed: Vec<String>,
}

impl FinishedList {
    /// A JSON patch that empties the list only if the group and the list
    /// are still what this reconcile saw: if the autoscaler wrote a new list
    /// meanwhile, the `test` fails and its list stays.
    pub fn clearing_patch(&self) -> Value {
        let base = format!("/spec/workerGroupSpecs/{}", self.index);
        json!([
            {"op": "test", "path": format!("{base}/groupName"), "value": self.group},
            {"op": "test", "path": format!("{base}/scaleStrategy/workersToDelete"), "value": self.listed},
            {"op": "replace", "path": format!("{base}/scaleStrategy/workersToDelete"), "value": []},
        ])
    }

    pub fn message(&self) -> String {
        format!(
            "Cleared workersToDelete of worker group {}: its pods {:?} are gone; a stale list would keep the autoscaler from scaling this group",
            self.group, self.listed
        )
    }
}

/// Groups whose `workersToDelete` is not empty and names no pod in
/// `existing` (every pod of the cluster, terminating ones included). The
/// caller must know `existing` is complete: no creation of its own that the
/// cache has not shown yet, else a brand-new pod the autoscaler already
/// named could be missing from it.
pub fn finished_lists(cluster: &RayCluster, existing: &BTreeSet<&str>) -> Vec<FinishedList> {
    cluster
        .spec
        .worker_group_specs
        .iter()
        .flatten()
        .enumerate()
        .filter_map(|(index, g)| {
            let listed = g.scale_strategy.as_ref()?.workers_to_delete.clone()?;
            (!listed.is_empty() && listed.iter().all(|p| !existing.contains(p.as_str()))).then(
                || FinishedList {
                    index,
                    group: g.group_name.clone(),
                    listed,
                },
            )
        })
        .collect()
}

/// Each group's desired replicas (bounded by min/max, 0 when suspended), by
/// group name: what [`scaling_messages`] compares between reconciles.
pub fn group_sizes(cluster: &RayCluster) -> BTreeMap<String, i32> {
    cluster
        .spec
        .worker_group_specs
        .iter()
        .flatten()
        .map(|g| {
            let hosts = g.num_of_hosts.unwrap_or(1).max(1);
            (g.group_name.clone(), desired_pods(g) / hosts)
        })
        .collect()
}

/// One event message per group whose size changed since `before`; groups
/// new or gone are not scaling and say nothing.
pub fn scaling_messages(
    cluster: &RayCluster,
    before: &BTreeMap<String, i32>,
    now: &BTreeMap<String, i32>,
) -> Vec<String> {
    let autoscaled = cluster.spec.enable_in_tree_autoscaling == Some(true);
    now.iter()
        .filter_map(|(group, &n)| {
            let &was = before.get(group)?;
            (was != n).then(|| {
                if autoscaled {
                    format!("Scaled worker group {group} {was} -> {n} at the autoscaler's request")
                } else {
                    format!("Scaled worker group {group} {was} -> {n} as its replicas ask")
                }
            })
        })
        .collect()
}

/// How long after its last crash an autoscaler that runs again is still
/// reported: long enough to span a crash loop's back-off (5 min at most).
const CRASH_MEMORY_SECONDS: i64 = 600;

/// The start of every message of [`sidecar_trouble`], so that a healed
/// sidecar clears its own reason and nothing else.
pub const SIDECAR_PREFIX: &str = "The Ray autoscaler sidecar";

/// Why the head's autoscaler sidecar is not working, if it crash-loops:
/// without it nothing scales, and its pod is Ready between crashes, so
/// neither the pod nor the cluster state shows it. Quotes the sidecar's
/// last words (its termination message falls back to its log's tail).
pub fn sidecar_trouble(head: &Pod, now: &Time) -> Option<String> {
    let status: &ContainerStatus = head
        .status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .iter()
        .find(|c| c.name == autoscaler::CONTAINER)?;
    let last = status
        .last_state
        .as_ref()
        .and_then(|s| s.terminated.as_ref());
    let backing_off = status
        .state
        .as_ref()
        .and_then(|s| s.waiting.as_ref())
        .is_some_and(|w| w.reason.as_deref() == Some("CrashLoopBackOff"));
    let recent = last.is_some_and(|t| {
        t.exit_code != 0
            && t.finished_at
                .as_ref()
                .is_some_and(|f| now.0.duration_since(f.0).as_secs() < CRASH_MEMORY_SECONDS)
    });
    if status.restart_count == 0 || !(backing_off || recent) {
        return None;
    }
    let pod = head.metadata.name.as_deref().unwrap_or_default();
    let mut message = format!(
        "{SIDECAR_PREFIX} in head Pod {pod} is crash-looping ({} restarts), so the cluster is not autoscaled",
        status.restart_count
    );
    if let Some(t) = last {
        message.push_str(&format!("; last exit code {}", t.exit_code));
        if let Some(words) = t
            .message
            .as_deref()
            .map(last_lines)
            .filter(|w| !w.is_empty())
        {
            message.push_str(&format!(": {words}"));
        }
    }
    message.push_str(&format!(
        ". See `kubectl logs {pod} -c {} --previous`",
        autoscaler::CONTAINER
    ));
    Some(message)
}

/// The last non-empty lines of a log tail, at most ~400 characters: a
/// Python traceback ends with the error that matters.
fn last_lines(log: &str) -> String {
    const MAX: usize = 400;
    let mut out: Vec<&str> = Vec::new();
    let mut len = 0;
    for line in log.lines().rev().map(str::trim).filter(|l| !l.is_empty()) {
        if len + line.len() > MAX && !out.is_empty() {
            break;
        }
        len += line.len() + 3;
        out.push(line);
        if out.len() == 3 {
            break;
        }
    }
    out.reverse();
    let joined = out.join(" | ");
    if joined.len() > MAX {
        let cut = joined.floor_char_boundary(joined.len() - MAX);
        format!("...{}", &joined[cut..])
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{
        ContainerState, ContainerStateTerminated, ContainerStateWaiting, PodStatus,
    };

    fn cluster(groups: Value) -> RayCluster {
        serde_json::from_value(json!({
            "apiVersion": "ray.io/v1", "kind": "RayCluster",
            "metadata": {"name": "c", "namespace": "ns"},
            "spec": {"enableInTreeAutoscaling": true,
                "headGroupSpec": {"template": {"spec": {"containers": [{"name": "ray-head"}]}}},
                "workerGroupSpecs": groups}
        }))
        .unwrap()
    }

    fn group(name: &str, replicas: i32, to_delete: &[&str]) -> Value {
        json!({"groupName": name, "replicas": replicas, "minReplicas": 0, "maxReplicas": 5,
            "scaleStrategy": {"workersToDelete": to_delete},
            "template": {"spec": {"containers": [{"name": "ray-worker"}]}}})
    }

    #[test]
    fn a_list_is_finished_only_when_every_named_pod_is_gone() {
        let c = cluster(json!([
            group("a", 1, &["a-1", "a-2"]),
            group("b", 1, &["b-1"]),
            group("c", 1, &[])
        ]));
        let existing = BTreeSet::from(["a-2", "c-9"]);
        let done = finished_lists(&c, &existing);
        assert_eq!(
            done,
            [FinishedList {
                index: 1,
                group: "b".into(),
                listed: vec!["b-1".into()]
            }]
        );
        let patch = done[0].clearing_patch();
        assert_eq!(patch[0]["path"], "/spec/workerGroupSpecs/1/groupName");
        assert_eq!(patch[1]["value"], json!(["b-1"]));
        assert_eq!(patch[2]["value"], json!([]));
    }

    #[test]
    fn size_changes_are_attributed_to_the_autoscaler_when_it_is_on() {
        let c = cluster(json!([group("small", 2, &[]), group("new", 1, &[])]));
        let before = BTreeMap::from([("small".to_string(), 0), ("gone".to_string(), 3)]);
        let msgs = scaling_messages(&c, &before, &group_sizes(&c));
        assert_eq!(
            msgs,
            ["Scaled worker group small 0 -> 2 at the autoscaler's request"]
        );
        let mut manual = c.clone();
        manual.spec.enable_in_tree_autoscaling = None;
        assert_eq!(
            scaling_messages(&manual, &before, &group_sizes(&manual)),
            ["Scaled worker group small 0 -> 2 as its replicas ask"]
        );
        // Bounds apply: replicas above maxReplicas scale to the bound.
        let big = cluster(json!([group("small", 9, &[])]));
        assert_eq!(group_sizes(&big)["small"], 5);
    }

    fn head(restarts: i32, waiting: Option<&str>, finished: &str, message: &str) -> Pod {
        let at = |s: &str| Time(s.parse().unwrap());
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some("c-head".into()),
                ..Default::default()
            },
            status: Some(PodStatus {
                container_statuses: Some(vec![ContainerStatus {
                    name: "autoscaler".into(),
                    restart_count: restarts,
                    state: Some(ContainerState {
                        waiting: waiting.map(|r| ContainerStateWaiting {
                            reason: Some(r.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    last_state: Some(ContainerState {
                        terminated: Some(ContainerStateTerminated {
                            exit_code: 1,
                            finished_at: Some(at(finished)),
                            message: Some(message.into()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }]),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_crash_looping_sidecar_is_explained_with_its_last_words() {
        let now = Time("2026-12-02T10:00:00Z".parse().unwrap());
        let log = "Traceback (most recent call last):\n  File \"x.py\"\n\nrequests.exceptions.HTTPError: 403 Client Error: Forbidden for url: https://k/apis/ray.io/v1/namespaces/x/rayclusters/c\n";
        let m = sidecar_trouble(
            &head(3, Some("CrashLoopBackOff"), "2026-12-02T09:59:00Z", log),
            &now,
        )
        .unwrap();
        assert!(m.starts_with(SIDECAR_PREFIX), "{m}");
        assert!(m.contains("(3 restarts)"), "{m}");
        assert!(m.contains("403 Client Error: Forbidden"), "{m}");
        assert!(
            m.contains("kubectl logs c-head -c autoscaler --previous"),
            "{m}"
        );
        // Running again shortly after a crash: still reported.
        assert!(sidecar_trouble(&head(3, None, "2026-12-02T09:59:00Z", log), &now).is_some());
        // Long healthy since its last crash, or never restarted: nothing.
        assert!(sidecar_trouble(&head(3, None, "2026-12-02T09:00:00Z", log), &now).is_none());
        assert!(sidecar_trouble(&head(0, None, "2026-12-02T09:59:00Z", log), &now).is_none());
    }

    #[test]
    fn last_lines_keep_the_end_of_a_long_log() {
        let long = "x".repeat(1000);
        let out = last_lines(&format!("first\n{long}\n"));
        assert!(out.len() <= 403 && out.starts_with("..."), "{out}");
        assert_eq!(last_lines("a\n\nb\nc\nd\n"), "b | c | d");
    }
}
