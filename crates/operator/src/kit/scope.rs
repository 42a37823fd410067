//! Which namespaces the operator watches: all, or a list
//! (`--watch-namespace=a,b`). Every cache and controller watches through
//! this, one watch per namespace when a list is given.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::stream::BoxStream;
use futures::{StreamExt, TryStreamExt};
use kube::api::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Client, Resource};

use super::Object;

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Scope {
    /// Empty means every namespace.
    namespaces: Vec<String>,
}

impl Scope {
    pub fn all() -> Self {
        Self::default()
    }

    pub fn namespaces_of(list: impl IntoIterator<Item = String>) -> Self {
        let mut namespaces: Vec<String> = list
            .into_iter()
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty())
            .collect();
        namespaces.sort();
        namespaces.dedup();
        Self { namespaces }
    }

    /// Parses KubeRay's `--watch-namespace` value: comma-separated, empty
    /// for all namespaces.
    pub fn parse(flag: &str) -> Self {
        Self::namespaces_of(flag.split(',').map(String::from))
    }

    /// `None` stands for every namespace.
    pub fn namespaces(&self) -> Vec<Option<String>> {
        if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        }
    }

    pub fn contains(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }

    /// One merged watch over every namespace of the scope.
    pub fn watch<K>(
        &self,
        client: &Client,
        config: watcher::Config,
    ) -> BoxStream<'static, watcher::Result<Event<K>>>
    where
        K: Object,
    {
        let streams = self
            .namespaces()
            .into_iter()
            .map(|ns| watcher::watcher(api_in(client, ns.as_deref()), config.clone()).boxed());
        futures::stream::select_all(streams).boxed()
    }

    /// A controller's watch of its own kind: [`Scope::watch`], retried with
    /// backoff, and a signal that turns true once the watch of every
    /// namespace has listed, when a store fed from it holds everything.
    pub fn watch_listed<K>(
        &self,
        client: &Client,
        config: watcher::Config,
    ) -> (BoxStream<'static, watcher::Result<Event<K>>>, Listed)
    where
        K: Object,
    {
        let listed = Listed::default();
        listed.expect(self.namespaces().len());
        let counter = listed.clone();
        let stream = self
            .watch::<K>(client, config)
            .default_backoff()
            .inspect_ok(move |event| {
                if let Event::InitDone = event {
                    counter.one_listed();
                }
            })
            .boxed();
        (stream, listed)
    }
}

/// Turns true once the watch of every namespace has made its first list
/// (relists later keep it true): until then a store fed by the watches
/// would claim that objects do not exist. Cheap to clone; clones share it.
#[derive(Clone)]
pub struct Listed {
    left: Arc<AtomicUsize>,
    tx: Arc<tokio::sync::watch::Sender<bool>>,
    rx: tokio::sync::watch::Receiver<bool>,
}

impl Default for Listed {
    fn default() -> Self {
        let (tx, rx) = tokio::sync::watch::channel(false);
        Self {
            left: Arc::default(),
            tx: Arc::new(tx),
            rx,
        }
    }
}

impl Listed {
    /// Expects `watches` first lists.
    pub fn expect(&self, watches: usize) {
        self.left.store(watches, Ordering::SeqCst);
    }

    /// One watch made its first list (or a later one).
    pub fn one_listed(&self) {
        if self.left.fetch_sub(1, Ordering::SeqCst) <= 1 {
            self.left.store(0, Ordering::SeqCst);
            self.tx.send_replace(true);
        }
    }

    /// Waits until every watch has listed.
    pub async fn wait(&self) {
        let _ = self.rx.clone().wait_for(|l| *l).await;
    }
}

/// The API of `K` in one namespace, or in all for `None`.
pub fn api_in<K>(client: &Client, namespace: Option<&str>) -> Api<K>
where
    K: Resource<Scope = k8s_openapi::NamespaceResourceScope, DynamicType = ()>,
{
    match namespace {
        Some(n) => Api::namespaced(client.clone(), n),
        None => Api::all(client.clone()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_kuberays_flag() {
        assert_eq!(Scope::parse("").namespaces(), vec![None]);
        let s = Scope::parse("b, a,,a");
        assert_eq!(
            s.namespaces(),
            vec![Some("a".to_string()), Some("b".to_string())]
        );
        assert!(s.contains("a") && !s.contains("c"));
        assert!(Scope::all().contains("anything"));
    }

    #[tokio::test]
    async fn listed_turns_true_once_every_watch_listed_and_stays() {
        let listed = Listed::default();
        listed.expect(2);
        listed.one_listed();
        assert!(!*listed.rx.borrow());
        listed.one_listed();
        listed.wait().await;
        listed.one_listed();
        assert!(*listed.rx.borrow(), "a relist keeps it listed");
    }
}
