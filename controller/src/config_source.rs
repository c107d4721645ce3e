//! Watches the ferrolb config kinds and the Secrets in the controller's namespace through
//! kube-runtime reflectors, and hands out [`RawConfig`] snapshots for [`ferrolb_crds::config::build`].

use std::fmt::Debug;

use ferrolb_crds::api;
use ferrolb_crds::config::RawConfig;
use futures::{Stream, StreamExt};
use k8s_openapi::api::core::v1::Secret;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, Resource};
use serde::de::DeserializeOwned;

/// Read handles on the config objects.
#[derive(Clone)]
pub struct ConfigStores {
    pools: Store<api::IPAddressPool>,
    l2: Store<api::L2Advertisement>,
    bgp: Store<api::BGPAdvertisement>,
    peers: Store<api::BGPPeer>,
    bfd: Store<api::BFDProfile>,
    communities: Store<api::Community>,
    secrets: Store<Secret>,
}

fn cloned<K: Clone + Resource<DynamicType = ()>>(store: &Store<K>) -> Vec<K> {
    let mut objects: Vec<K> = store.state().iter().map(|o| (**o).clone()).collect();
    objects.sort_by(|a, b| a.meta().name.cmp(&b.meta().name));
    objects
}

impl ConfigStores {
    /// The current objects, sorted by name (so the same objects always give the same snapshot).
    pub fn snapshot(&self) -> RawConfig {
        RawConfig {
            pools: cloned(&self.pools),
            l2_advertisements: cloned(&self.l2),
            bgp_advertisements: cloned(&self.bgp),
            peers: cloned(&self.peers),
            bfd_profiles: cloned(&self.bfd),
            communities: cloned(&self.communities),
            secrets: cloned(&self.secrets),
        }
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
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let stream = reflector::reflector(writer, watcher(api, watcher::Config::default()))
        .default_backoff()
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

/// Starts the reflectors. The stream yields `()` whenever any config object changed.
pub fn watch(
    client: &Client,
    namespace: &str,
) -> (ConfigStores, impl Stream<Item = ()> + Send + use<>) {
    let (pools, a) = reflect(client, namespace);
    let (l2, b) = reflect(client, namespace);
    let (bgp, c) = reflect(client, namespace);
    let (peers, d) = reflect(client, namespace);
    let (bfd, e) = reflect(client, namespace);
    let (communities, f) = reflect(client, namespace);
    let (secrets, g) = reflect(client, namespace);
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
