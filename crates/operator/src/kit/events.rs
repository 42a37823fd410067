//! Kubernetes events (events.k8s.io/v1) with KubeRay's reasons. An event
//! repeated within a few minutes (same object, reason, message and related
//! object) becomes a series instead of a new object, so a retry loop cannot
//! flood the API server; distinct messages stay distinct events, so
//! `kubectl describe` names every pod created. Publishing is best effort: a
//! failed event is logged, never fails a reconcile.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::{Client, Resource};

/// How long a repeat is folded into the previous event.
const SERIES_WINDOW: Duration = Duration::from_secs(360);

type Key = (String, String, String, String, String);
/// Recent events by key: their name, count and last time.
type Recent = HashMap<Key, (String, i32, Instant)>;

#[derive(Clone)]
pub struct Events {
    client: Client,
    controller: String,
    instance: String,
    recent: Arc<Mutex<Recent>>,
}

impl Events {
    /// Events reported by `controller` from the replica `instance`.
    pub fn new(client: Client, controller: &str, instance: &str) -> Self {
        Self {
            client,
            controller: controller.into(),
            instance: instance.into(),
            recent: Arc::default(),
        }
    }

    pub async fn normal<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(obj, "Normal", reason, action, note, None)
            .await;
    }

    pub async fn warning<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        reason: &str,
        action: &str,
        note: String,
    ) {
        self.publish(obj, "Warning", reason, action, note, None)
            .await;
    }

    /// An event about `obj` that concerns another object (`related`), such
    /// as a pod the cluster created.
    pub async fn about<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        related: ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let type_ = if warning { "Warning" } else { "Normal" };
        self.publish(obj, type_, reason, action, note, Some(related))
            .await;
    }

    async fn publish<K: Resource<DynamicType = ()>>(
        &self,
        obj: &K,
        type_: &str,
        reason: &str,
        action: &str,
        note: String,
        related: Option<ObjectReference>,
    ) {
        let regarding = obj.object_ref(&());
        let ns = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        // The API limits notes to 1 kB.
        let note: String = note.chars().take(1000).collect();
        let key: Key = (
            regarding.uid.clone().unwrap_or_default(),
            reason.into(),
            note.clone(),
            related
                .as_ref()
                .and_then(|r| r.name.clone())
                .unwrap_or_default(),
            type_.into(),
        );
        let now = MicroTime(jiff::Timestamp::now());
        let api: Api<Event> = Api::namespaced(self.client.clone(), &ns);
        let repeat = {
            let mut recent = self.recent.lock().unwrap();
            recent.retain(|_, (_, _, at)| at.elapsed() < SERIES_WINDOW);
            recent.get_mut(&key).map(|(name, count, at)| {
                *count += 1;
                *at = Instant::now();
                (name.clone(), *count)
            })
        };
        let result = match repeat {
            Some((name, count)) => {
                let patch =
                    serde_json::json!({"series": EventSeries { count, last_observed_time: now }});
                api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await
                    .map(|_| ())
            }
            None => {
                let name = format!(
                    "{}.{:x}",
                    regarding.name.clone().unwrap_or_default(),
                    now.0.as_nanosecond()
                );
                let event = Event {
                    metadata: ObjectMeta {
                        name: Some(name.clone()),
                        namespace: Some(ns.clone()),
                        ..Default::default()
                    },
                    event_time: Some(now),
                    type_: Some(type_.into()),
                    reason: Some(reason.into()),
                    action: Some(action.into()),
                    note: Some(note),
                    regarding: Some(regarding),
                    related,
                    reporting_controller: Some(self.controller.clone()),
                    reporting_instance: Some(self.instance.clone()),
                    ..Default::default()
                };
                let created = api.create(&PostParams::default(), &event).await.map(|_| ());
                if created.is_ok() {
                    self.recent
                        .lock()
                        .unwrap()
                        .insert(key, (name, 1, Instant::now()));
                }
                created
            }
        };
        if let Err(e) = result {
            tracing::warn!(reason, error = %e, "could not publish event");
        }
    }
}
