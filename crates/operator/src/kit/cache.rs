//! A watch-fed cache of the objects the operator owns (pods, services, ...),
//! indexed by the RayCluster (or other owner) they belong to, so a reconcile
//! reads its own children in O(children), not O(all objects). Objects are
//! trimmed before they are stored (see [`Trim`]) so memory follows what
//! reconciles read, not the size of pod specs. Every change also names the
//! owner to reconcile.

use std::collections::{HashMap, HashSet};
use std::fmt::Debug;
use std::sync::{Arc, RwLock};

use futures::StreamExt;
use futures::stream::BoxStream;
use kube::api::Api;
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::ObjectRef};
use kube::{Client, Resource, ResourceExt};

use crate::kit::scope::{Listed, Scope};
use serde::de::DeserializeOwned;

/// Drops what no reconcile reads before an object is cached; by default
/// the `managedFields`.
pub trait Trim: Resource {
    fn trim(&mut self) {
        self.meta_mut().managed_fields = None;
    }
}

/// Which owner an object belongs to, by name within its namespace.
pub type OwnerOf<K> = fn(&K) -> Option<String>;

type Key = (String, String);

struct Inner<K> {
    objects: HashMap<Key, Arc<K>>,
    /// (namespace, owner) -> names of its objects.
    by_owner: HashMap<Key, HashSet<String>>,
}

impl<K> Default for Inner<K> {
    fn default() -> Self {
        Self {
            objects: HashMap::new(),
            by_owner: HashMap::new(),
        }
    }
}

/// The cache. Cheap to clone; all clones share the same state.
pub struct Cache<K> {
    inner: Arc<RwLock<Inner<K>>>,
    owner_of: OwnerOf<K>,
    listed: Listed,
}

impl<K> Clone for Cache<K> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
            owner_of: self.owner_of,
            listed: self.listed.clone(),
        }
    }
}

fn key_of<K: Resource>(o: &K) -> Key {
    (o.namespace().unwrap_or_default(), o.name_any())
}

impl<K> Cache<K>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + Sync + Trim + 'static,
    K::DynamicType: Default,
{
    pub fn new(owner_of: OwnerOf<K>) -> Self {
        Self {
            inner: Arc::default(),
            owner_of,
            listed: Listed::default(),
        }
    }

    /// Waits until the first full list has been cached; before that the
    /// cache would claim objects do not exist and the operator would create
    /// duplicates.
    pub async fn wait_ready(&self) {
        self.listed.wait().await;
    }

    pub fn get(&self, namespace: &str, name: &str) -> Option<Arc<K>> {
        let inner = self.inner.read().unwrap();
        inner
            .objects
            .get(&(namespace.to_string(), name.to_string()))
            .cloned()
    }

    /// Every cached object of one owner.
    pub fn owned_by(&self, namespace: &str, owner: &str) -> Vec<Arc<K>> {
        let inner = self.inner.read().unwrap();
        let Some(names) = inner
            .by_owner
            .get(&(namespace.to_string(), owner.to_string()))
        else {
            return Vec::new();
        };
        names
            .iter()
            .filter_map(|n| {
                inner
                    .objects
                    .get(&(namespace.to_string(), n.clone()))
                    .cloned()
            })
            .collect()
    }

    pub fn len(&self) -> usize {
        self.inner.read().unwrap().objects.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn index(&self, inner: &mut Inner<K>, obj: K) -> Option<Key> {
        let key = key_of(&obj);
        let owner = (self.owner_of)(&obj).map(|o| (key.0.clone(), o));
        if let Some(old) = inner.objects.insert(key.clone(), Arc::new(obj))
            && let Some(old_owner) = (self.owner_of)(&old)
        {
            let ok = (key.0.clone(), old_owner);
            if Some(&ok) != owner.as_ref()
                && let Some(set) = inner.by_owner.get_mut(&ok)
            {
                set.remove(&key.1);
            }
        }
        if let Some(o) = &owner {
            inner
                .by_owner
                .entry(o.clone())
                .or_default()
                .insert(key.1.clone());
        }
        owner
    }

    fn remove(&self, inner: &mut Inner<K>, obj: &K) -> Option<Key> {
        let key = key_of(obj);
        let old = inner.objects.remove(&key);
        let owner = old
            .as_deref()
            .and_then(self.owner_of)
            .or_else(|| (self.owner_of)(obj));
        let owner = owner.map(|o| (key.0.clone(), o));
        if let Some(o) = &owner
            && let Some(set) = inner.by_owner.get_mut(o)
        {
            set.remove(&key.1);
            if set.is_empty() {
                inner.by_owner.remove(o);
            }
        }
        owner
    }

    /// Applies one watch event of the watcher of `namespace` (all when
    /// `None`); returns the owners whose children changed. A relist replaces
    /// only that watcher's namespace, so several watchers can feed one cache.
    fn apply(
        &self,
        event: Event<K>,
        relist: &mut Option<Inner<K>>,
        namespace: Option<&str>,
    ) -> Vec<Key> {
        match event {
            Event::Init => {
                *relist = Some(Inner::default());
                Vec::new()
            }
            Event::InitApply(mut obj) => {
                obj.trim();
                if let Some(fresh) = relist.as_mut() {
                    self.index(fresh, obj);
                }
                Vec::new()
            }
            Event::InitDone => {
                let Some(fresh) = relist.take() else {
                    return Vec::new();
                };
                let mut inner = self.inner.write().unwrap();
                let in_scope = |k: &Key| namespace.is_none_or(|ns| k.0 == ns);
                // Every owner seen before or now may have changed.
                let mut owners: HashSet<Key> = fresh.by_owner.keys().cloned().collect();
                owners.extend(inner.by_owner.keys().filter(|k| in_scope(k)).cloned());
                inner.objects.retain(|k, _| !in_scope(k));
                inner.by_owner.retain(|k, _| !in_scope(k));
                inner.objects.extend(fresh.objects);
                inner.by_owner.extend(fresh.by_owner);
                drop(inner);
                self.listed.one_listed();
                owners.into_iter().collect()
            }
            Event::Apply(mut obj) => {
                obj.trim();
                let mut inner = self.inner.write().unwrap();
                self.index(&mut inner, obj).into_iter().collect()
            }
            Event::Delete(obj) => {
                let mut inner = self.inner.write().unwrap();
                self.remove(&mut inner, &obj).into_iter().collect()
            }
        }
    }

    /// Watches the kind in every namespace of `scope` (through `config`'s
    /// selectors) into the cache, yielding the owners to reconcile. Watch
    /// errors are logged and retried with backoff inside the stream.
    pub fn watch<O>(
        &self,
        client: &Client,
        scope: &Scope,
        config: watcher::Config,
    ) -> BoxStream<'static, ObjectRef<O>>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
        O: Resource<DynamicType = ()> + 'static,
    {
        let namespaces = scope.namespaces();
        self.listed.expect(namespaces.len());
        let streams = namespaces.into_iter().map(|ns| {
            let api: Api<K> = crate::kit::scope::api_in(client, ns.as_deref());
            let cache = self.clone();
            let mut relist: Option<Inner<K>> = None;
            let kind = K::kind(&()).to_string();
            kube::runtime::watcher(api, config.clone())
                .default_backoff()
                .filter_map(move |event| {
                    let out = match event {
                        Ok(e) => cache.apply(e, &mut relist, ns.as_deref()),
                        Err(e) => {
                            tracing::warn!(kind, error = %e, "watch error; retrying");
                            Vec::new()
                        }
                    };
                    futures::future::ready(Some(futures::stream::iter(out)))
                })
                .flatten()
                .boxed()
        });
        futures::stream::select_all(streams)
            .map(|(ns, name)| ObjectRef::new(&name).within(&ns))
            .boxed()
    }
}

/// The controlling owner's name, if it is of kind `kind`.
pub fn controller_owner(meta: &kube::api::ObjectMeta, kind: &str) -> Option<String> {
    meta.owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true) && o.kind == kind)
        .map(|o| o.name.clone())
}
