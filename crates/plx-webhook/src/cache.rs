//! The cluster's Secrets and ConfigMaps, by key name only: fed by a watch (one list, then
//! changes), not a GET per review. Values are dropped as each object arrives; they are never
//! stored, logged or compared.

use std::{
    collections::{BTreeSet, HashMap, HashSet},
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::{StreamExt, stream::BoxStream};
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

use crate::check::{Keys, RefKind};

type Names = HashMap<(String, String), BTreeSet<String>>;

/// One watch: a kind, in one namespace or (`None`) in all.
type Scope = (RefKind, Option<String>);

type Event = watcher::Event<(String, String, BTreeSet<String>)>;

/// Key names by (namespace, name), per watch.
#[derive(Default)]
pub struct Cache {
    /// The namespaces watched; empty: all.
    namespaces: Vec<String>,
    tables: RwLock<HashMap<Scope, Names>>,
    /// A relist in progress, per watch: swapped in whole when it completes.
    pending: Mutex<HashMap<Scope, Names>>,
    /// The watches that have listed everything once.
    synced: Mutex<HashSet<Scope>>,
}

impl Cache {
    /// A cache of these namespaces (all of them when empty, which needs a ClusterRole; a Role
    /// in each otherwise).
    pub fn new(namespaces: Vec<String>) -> Cache {
        Cache {
            namespaces,
            ..Cache::default()
        }
    }

    fn scopes(&self) -> Vec<Option<String>> {
        if self.namespaces.is_empty() {
            vec![None]
        } else {
            self.namespaces.iter().cloned().map(Some).collect()
        }
    }

    /// Whether every watch has listed everything once.
    pub fn synced(&self) -> bool {
        let wanted = self.scopes().len() * 2;
        self.synced
            .lock()
            .is_ok_and(|synced| synced.len() == wanted)
    }

    fn apply(&self, scope: Scope, event: Event) {
        let (Ok(mut tables), Ok(mut pending)) = (self.tables.write(), self.pending.lock()) else {
            return;
        };
        let table = tables.entry(scope.clone()).or_default();
        match event {
            // A relist: what is not listed again is gone, but reviews meanwhile see the
            // previous state rather than nothing.
            watcher::Event::Init => {
                pending.insert(scope, Names::new());
            }
            watcher::Event::InitApply((namespace, name, keys)) => {
                pending
                    .entry(scope)
                    .or_default()
                    .insert((namespace, name), keys);
            }
            watcher::Event::Apply((namespace, name, keys)) => {
                table.insert((namespace, name), keys);
            }
            watcher::Event::Delete((namespace, name, _)) => {
                table.remove(&(namespace, name));
            }
            watcher::Event::InitDone => {
                *table = pending.remove(&scope).unwrap_or_default();
                if let Ok(mut synced) = self.synced.lock() {
                    synced.insert(scope);
                }
            }
        }
    }

    /// Watches Secrets and ConfigMaps in the cache's namespaces until the client's streams
    /// end; `ready` turns true once every watch has synced.
    pub async fn run(self: Arc<Self>, client: Client, ready: Arc<AtomicBool>) {
        let mut streams: Vec<BoxStream<'static, (Scope, Result<Event, watcher::Error>)>> =
            Vec::new();
        for namespace in self.scopes() {
            let (secrets, config_maps): (Api<Secret>, Api<ConfigMap>) = match &namespace {
                Some(namespace) => (
                    Api::namespaced(client.clone(), namespace),
                    Api::namespaced(client.clone(), namespace),
                ),
                None => (Api::all(client.clone()), Api::all(client.clone())),
            };
            let scope = (RefKind::Secret, namespace.clone());
            streams.push(
                watcher(secrets, watcher::Config::default())
                    .default_backoff()
                    .map(move |event| {
                        (
                            scope.clone(),
                            event.map(|event| {
                                names(event, |secret: Secret| {
                                    let keys = secret
                                        .data
                                        .as_ref()
                                        .map(|data| data.keys().cloned().collect())
                                        .unwrap_or_default();
                                    (
                                        secret.namespace().unwrap_or_default(),
                                        secret.name_any(),
                                        keys,
                                    )
                                })
                            }),
                        )
                    })
                    .boxed(),
            );
            let scope = (RefKind::ConfigMap, namespace);
            streams.push(
                watcher(config_maps, watcher::Config::default())
                    .default_backoff()
                    .map(move |event| {
                        (
                            scope.clone(),
                            event.map(|event| {
                                names(event, |config_map: ConfigMap| {
                                    let mut keys: BTreeSet<String> = config_map
                                        .data
                                        .as_ref()
                                        .map(|data| data.keys().cloned().collect())
                                        .unwrap_or_default();
                                    keys.extend(
                                        config_map
                                            .binary_data
                                            .as_ref()
                                            .into_iter()
                                            .flat_map(|data| data.keys().cloned()),
                                    );
                                    (
                                        config_map.namespace().unwrap_or_default(),
                                        config_map.name_any(),
                                        keys,
                                    )
                                })
                            }),
                        )
                    })
                    .boxed(),
            );
        }
        let mut events = futures::stream::select_all(streams);
        while let Some((scope, event)) = events.next().await {
            match event {
                Ok(event) => {
                    self.apply(scope, event);
                    if self.synced() {
                        ready.store(true, Ordering::Relaxed);
                    }
                }
                Err(error) => tracing::warn!("watch failed (retrying): {error}"),
            }
        }
    }
}

/// Keeps (namespace, name, key names) of each object and drops the rest, values included.
fn names<K>(
    event: watcher::Event<K>,
    keep: impl Fn(K) -> (String, String, BTreeSet<String>),
) -> watcher::Event<(String, String, BTreeSet<String>)> {
    match event {
        watcher::Event::Apply(object) => watcher::Event::Apply(keep(object)),
        watcher::Event::Delete(object) => watcher::Event::Delete(keep(object)),
        watcher::Event::InitApply(object) => watcher::Event::InitApply(keep(object)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

impl Keys for Cache {
    fn keys(&self, kind: RefKind, namespace: &str, name: &str) -> Option<BTreeSet<String>> {
        let tables = self.tables.read().ok()?;
        let key = (namespace.to_owned(), name.to_owned());
        [None, Some(namespace.to_owned())]
            .into_iter()
            .find_map(|scope| tables.get(&(kind, scope))?.get(&key).cloned())
    }

    fn watches(&self, namespace: &str) -> bool {
        self.namespaces.is_empty() || self.namespaces.iter().any(|n| n == namespace)
    }
}
