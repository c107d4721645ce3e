//! Watches the ferrolb config kinds and the Secrets in the config namespace through
//! kube-runtime reflectors, and hands out [`RawConfig`] snapshots for [`ferrolb_config::build`].
//!
//! The controller watches the config kinds in every namespace ([`Scope::AllNamespaces`]) so that
//! an object created in the wrong one is reported on itself ([`ConfigStores::foreign`]) instead
//! of being silently ignored; only objects of the config namespace make the config.

use std::fmt::Debug;

use ferrolb_config::api;
use ferrolb_config::{Kind, ObjectRef, RawConfig};
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// Where the config kinds are watched (Secrets: always in the config namespace only).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// Only the config namespace (the speaker: it acts on the config, it reports nothing).
    Namespace,
    /// Every namespace (the controller: it reports objects outside the config namespace).
    AllNamespaces,
}

/// A config object outside the config namespace, which ferrolb does not read.
#[derive(Clone, Debug)]
pub struct Foreign {
    /// Kind, namespace and name.
    pub object: ObjectRef,
    /// For Events about it.
    pub reference: k8s_openapi::api::core::v1::ObjectReference,
    /// `metadata.generation`.
    pub generation: Option<i64>,
    /// Its current status conditions.
    pub conditions: Vec<Condition>,
}

/// Read handles on the config objects.
#[derive(Clone)]
pub struct ConfigStores {
    namespace: String,
    pools: Store<api::IPAddressPool>,
    l2: Store<api::L2Advertisement>,
    bgp: Store<api::BGPAdvertisement>,
    peers: Store<api::BGPPeer>,
    bfd: Store<api::BFDProfile>,
    communities: Store<api::Community>,
    secrets: Store<Secret>,
}

fn cloned<K: Clone + Resource<DynamicType = ()>>(store: &Store<K>, namespace: &str) -> Vec<K> {
    let mut objects: Vec<K> = (store.state().iter())
        .filter(|o| o.meta().namespace.as_deref() == Some(namespace))
        .map(|o| (**o).clone())
        .collect();
    objects.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    objects
}

fn foreign<K: Clone + Resource<DynamicType = ()>>(
    store: &Store<K>,
    namespace: &str,
    kind: Kind,
    conditions: impl Fn(&K) -> Vec<Condition>,
    out: &mut Vec<Foreign>,
) {
    for o in store.state() {
        let ns = o.meta().namespace.clone();
        if ns.as_deref() == Some(namespace) {
            continue;
        }
        out.push(Foreign {
            object: ObjectRef {
                kind,
                namespace: ns,
                name: o.meta().name.clone().unwrap_or_default(),
            },
            reference: o.object_ref(&()),
            generation: o.meta().generation,
            conditions: conditions(&o),
        });
    }
}

impl ConfigStores {
    /// The current objects, sorted by name (so the same objects always give the same snapshot).
    pub fn snapshot(&self) -> RawConfig {
        let ns = &self.namespace;
        RawConfig {
            pools: cloned(&self.pools, ns),
            l2_advertisements: cloned(&self.l2, ns),
            bgp_advertisements: cloned(&self.bgp, ns),
            peers: cloned(&self.peers, ns),
            bfd_profiles: cloned(&self.bfd, ns),
            communities: cloned(&self.communities, ns),
            secrets: cloned(&self.secrets, ns),
        }
    }

    /// Config objects outside the config namespace (only seen with [`Scope::AllNamespaces`]),
    /// by kind, namespace and name.
    pub fn foreign(&self) -> Vec<Foreign> {
        fn of(s: Option<&api::ConfigStatus>) -> Vec<Condition> {
            s.map(|s| s.conditions.clone()).unwrap_or_default()
        }
        let ns = &self.namespace;
        let mut out = Vec::new();
        let pool_conditions = |p: &api::IPAddressPool| {
            (p.status.as_ref())
                .map(|s| s.conditions.clone())
                .unwrap_or_default()
        };
        foreign(
            &self.pools,
            ns,
            Kind::IPAddressPool,
            pool_conditions,
            &mut out,
        );
        foreign(
            &self.l2,
            ns,
            Kind::L2Advertisement,
            |o| of(o.status.as_ref()),
            &mut out,
        );
        foreign(
            &self.bgp,
            ns,
            Kind::BGPAdvertisement,
            |o| of(o.status.as_ref()),
            &mut out,
        );
        foreign(
            &self.peers,
            ns,
            Kind::BGPPeer,
            |o| of(o.status.as_ref()),
            &mut out,
        );
        foreign(
            &self.bfd,
            ns,
            Kind::BFDProfile,
            |o| of(o.status.as_ref()),
            &mut out,
        );
        foreign(
            &self.communities,
            ns,
            Kind::Community,
            |o| of(o.status.as_ref()),
            &mut out,
        );
        out.sort_by(|a, b| a.object.cmp(&b.object));
        out
    }

    /// Waits until every store has its first full list.
    pub async fn wait_until_ready(&self) -> bool {
        self.pools.wait_until_ready().await.is_ok()
            && self.l2.wait_until_ready().await.is_ok()
            && self.bgp.wait_until_ready().await.is_ok()
            && self.peers.wait_until_ready().await.is_ok()
            && self.bfd.wait_until_ready().await.is_ok()
            && self.communities.wait_until_ready().await.is_ok()
            && self.secrets.wait_until_ready().await.is_ok()
    }
}

fn reflect<K>(
    client: &Client,
    namespace: &str,
    scope: Scope,
) -> (Store<K>, impl Stream<Item = ()> + Send + use<K>)
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + DeserializeOwned
        + Debug
        + Send
        + Sync
        + 'static,
{
    let (reader, writer) = reflector::store();
    let api: Api<K> = match scope {
        Scope::Namespace => Api::namespaced(client.clone(), namespace),
        Scope::AllNamespaces => Api::all(client.clone()),
    };
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .backoff(crate::watch_backoff::WatchBackoff::default())
        .filter_map(|event| async move {
            match event {
                // Only a complete list or a change is worth a rebuild; the pieces of a relist are not.
                Ok(watcher::Event::Apply(_) | watcher::Event::Delete(_) | watcher::Event::InitDone) => Some(()),
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(error = %e, kind = %K::kind(&()), "config watch failed; retrying");
                    None
                }
            }
        });
    (reader, stream)
}

/// Starts the reflectors of the config in `namespace` (the config kinds in `scope`). The stream
/// yields `()` whenever any config object changed.
pub fn watch(
    client: &Client,
    namespace: &str,
    scope: Scope,
) -> (ConfigStores, impl Stream<Item = ()> + Send + use<>) {
    let (pools, a) = reflect(client, namespace, scope);
    let (l2, b) = reflect(client, namespace, scope);
    let (bgp, c) = reflect(client, namespace, scope);
    let (peers, d) = reflect(client, namespace, scope);
    let (bfd, e) = reflect(client, namespace, scope);
    let (communities, f) = reflect(client, namespace, scope);
    let (secrets, g) = reflect(client, namespace, Scope::Namespace);
    let changes = futures::stream::select_all([
        a.boxed(),
        b.boxed(),
        c.boxed(),
        d.boxed(),
        e.boxed(),
        f.boxed(),
        g.boxed(),
    ]);
    let stores = ConfigStores {
        namespace: namespace.to_string(),
        pools,
        l2,
        bgp,
        peers,
        bfd,
        communities,
        secrets,
    };
    (stores, changes)
}
