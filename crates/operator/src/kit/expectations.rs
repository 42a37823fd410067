//! What this operator just created or deleted and the watch has not shown
//! yet. A reconcile sees the cache plus its own pending creations, minus its
//! pending deletions, so a stale cache never makes it create a pod twice or
//! count a deleted one. Entries end when the watch catches up, or after a
//! timeout in case the event was missed (the object was created and deleted
//! before the watch saw it).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Pod;

const TTL: Duration = Duration::from_secs(300);

#[derive(Default)]
struct Pending {
    created: HashMap<String, (Arc<Pod>, Instant)>,
    deleted: HashMap<String, Instant>,
}

/// Pending pod changes per owner (namespace, name).
#[derive(Default)]
pub struct Expectations {
    inner: Mutex<HashMap<(String, String), Pending>>,
}

impl Expectations {
    pub fn created(&self, owner: &(String, String), pod: Pod) {
        let name = pod.metadata.name.clone().unwrap_or_default();
        let mut inner = self.inner.lock().unwrap();
        inner
            .entry(owner.clone())
            .or_default()
            .created
            .insert(name, (Arc::new(pod), Instant::now()));
    }

    pub fn deleted(&self, owner: &(String, String), name: &str) {
        let mut inner = self.inner.lock().unwrap();
        let p = inner.entry(owner.clone()).or_default();
        p.created.remove(name);
        p.deleted.insert(name.to_string(), Instant::now());
    }

    /// The pods as they will be once the watch catches up with this
    /// operator's own writes; settles the expectations the cache has met.
    pub fn view(&self, owner: &(String, String), cached: Vec<Arc<Pod>>) -> Vec<Arc<Pod>> {
        let mut inner = self.inner.lock().unwrap();
        let Some(p) = inner.get_mut(owner) else {
            return cached;
        };
        let name = |pod: &Pod| pod.metadata.name.clone().unwrap_or_default();
        let seen: std::collections::HashSet<String> = cached.iter().map(|c| name(c)).collect();
        p.created
            .retain(|n, (_, at)| !seen.contains(n) && at.elapsed() < TTL);
        p.deleted
            .retain(|n, at| seen.contains(n) && at.elapsed() < TTL);
        let mut out: Vec<Arc<Pod>> = cached
            .into_iter()
            .filter(|c| !p.deleted.contains_key(&name(c)))
            .collect();
        out.extend(p.created.values().map(|(pod, _)| pod.clone()));
        if p.created.is_empty() && p.deleted.is_empty() {
            inner.remove(owner);
        }
        out
    }

    /// Whether writes of this owner are still waiting for the watch (as of
    /// the last [`Self::view`]): until they are not, the cache may lack a
    /// pod this operator created.
    pub fn pending(&self, owner: &(String, String)) -> bool {
        self.inner.lock().unwrap().contains_key(owner)
    }

    /// Forgets an owner (it was deleted).
    pub fn forget(&self, owner: &(String, String)) {
        self.inner.lock().unwrap().remove(owner);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(name: &str) -> Pod {
        Pod {
            metadata: kube::api::ObjectMeta {
                name: Some(name.into()),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn unseen_creations_count_and_deletions_do_not() {
        let e = Expectations::default();
        let owner = ("ns".to_string(), "rc".to_string());
        e.created(&owner, pod("new"));
        e.deleted(&owner, "old");
        let view = e.view(&owner, vec![Arc::new(pod("old")), Arc::new(pod("kept"))]);
        let mut names: Vec<String> = view
            .iter()
            .map(|p| p.metadata.name.clone().unwrap())
            .collect();
        names.sort();
        assert_eq!(names, ["kept", "new"]);
        // The watch catches up: expectations settle and the view is the cache.
        let view = e.view(&owner, vec![Arc::new(pod("kept")), Arc::new(pod("new"))]);
        assert_eq!(view.len(), 2);
        assert!(e.inner.lock().unwrap().is_empty());
    }
}
