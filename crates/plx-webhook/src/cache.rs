//! The cluster's Secrets and ConfigMaps, by key name only: fed by a watch (one list, then
//! changes), not a GET per review. Values are dropped as each object arrives; they are never
//! stored, logged or compared.

use std::{
    collections::{BTreeSet, HashMap},
    sync::{
        Arc, RwLock,
        atomic::{AtomicBool, Ordering},
    },
};

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use kube::{
    Api, Client, ResourceExt,
    runtime::{WatchStreamExt, watcher},
};

use crate::check::{Keys, RefKind};

type Names = HashMap<(String, String), BTreeSet<String>>;

/// Key names by (namespace, name), per kind.
#[derive(Default)]
pub struct Cache {
    secrets: RwLock<Names>,
    config_maps: RwLock<Names>,
    /// A relist in progress, per kind: swapped in whole when it completes.
    pending: std::sync::Mutex<HashMap<RefKind, Names>>,
    secrets_synced: AtomicBool,
    config_maps_synced: AtomicBool,
}

impl Cache {
    /// Whether both watches have listed everything once.
    pub fn synced(&self) -> bool {
        self.secrets_synced.load(Ordering::Relaxed)
            && self.config_maps_synced.load(Ordering::Relaxed)
    }

    fn table(&self, kind: RefKind) -> &RwLock<Names> {
        match kind {
            RefKind::Secret => &self.secrets,
            RefKind::ConfigMap => &self.config_maps,
        }
    }

    fn flag(&self, kind: RefKind) -> &AtomicBool {
        match kind {
            RefKind::Secret => &self.secrets_synced,
            RefKind::ConfigMap => &self.config_maps_synced,
        }
    }

    fn apply(&self, kind: RefKind, event: watcher::Event<(String, String, BTreeSet<String>)>) {
        let (Ok(mut table), Ok(mut pending)) = (self.table(kind).write(), self.pending.lock())
        else {
            return;
        };
        match event {
            // A relist: what is not listed again is gone, but reviews meanwhile see the
            // previous state rather than nothing.
            watcher::Event::Init => {
                pending.insert(kind, Names::new());
            }
            watcher::Event::InitApply((namespace, name, keys)) => {
                pending
                    .entry(kind)
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
                *table = pending.remove(&kind).unwrap_or_default();
                self.flag(kind).store(true, Ordering::Relaxed);
            }
        }
    }

    /// Watches Secrets and ConfigMaps in `namespace` (all when `None`) until the client's
    /// streams end; `ready` turns true once both have synced.
    pub async fn run(
        self: Arc<Self>,
        client: Client,
        namespace: Option<String>,
        ready: Arc<AtomicBool>,
    ) {
        let (secrets, config_maps): (Api<Secret>, Api<ConfigMap>) = match &namespace {
            Some(namespace) => (
                Api::namespaced(client.clone(), namespace),
                Api::namespaced(client, namespace),
            ),
            None => (Api::all(client.clone()), Api::all(client)),
        };
        let secret_events = watcher(secrets, watcher::Config::default())
            .default_backoff()
            .map(|event| {
                event.map(|event| {
                    (
                        RefKind::Secret,
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
                        }),
                    )
                })
            });
        let config_map_events = watcher(config_maps, watcher::Config::default())
            .default_backoff()
            .map(|event| {
                event.map(|event| {
                    (
                        RefKind::ConfigMap,
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
                        }),
                    )
                })
            });
        let mut events = std::pin::pin!(futures::stream::select(secret_events, config_map_events));
        while let Some(event) = events.next().await {
            match event {
                Ok((kind, event)) => {
                    self.apply(kind, event);
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
        self.table(kind)
            .read()
            .ok()?
            .get(&(namespace.to_owned(), name.to_owned()))
            .cloned()
    }
}
