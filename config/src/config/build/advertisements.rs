//! L2Advertisements and BGPAdvertisements: which pools they select, and BGP attributes.

use super::peers::peer_was_refused;
use super::*;

impl Builder {
    /// Resolves `ipAddressPools` and `ipAddressPoolSelectors`; neither set means every pool.
    pub(super) fn pool_selection(
        &mut self,
        r: &ObjectRef,
        names: &[String],
        selectors: &[LabelSelector],
        pools: &BTreeMap<String, Pool>,
    ) -> BTreeSet<String> {
        let names = self.no_duplicates(r, "spec.ipAddressPools", names);
        // A pool that does not exist (yet, or no longer, or not valid) matches nothing, as in
        // MetalLB: objects applied in any order converge, and a typo is told on the object.
        for (i, name) in names.iter().enumerate() {
            if !pools.contains_key(name) {
                self.note(
                    r,
                    format!("spec.ipAddressPools[{i}]"),
                    Reason::DanglingReference {
                        kind: Kind::IPAddressPool,
                        name: name.clone(),
                    },
                );
            }
        }
        let selectors = self.selectors(r, "spec.ipAddressPoolSelectors", selectors);
        if names.is_empty() && selectors.is_empty() {
            return pools.keys().cloned().collect();
        }
        let mut selected: BTreeSet<String> = names
            .into_iter()
            .filter(|n| pools.contains_key(n))
            .collect();
        for pool in pools.values() {
            if selectors.iter().any(|s| s.matches(&pool.labels)) {
                selected.insert(pool.name.clone());
            }
        }
        selected
    }

    pub(super) fn l2_advertisements(
        &mut self,
        raw: &[api::L2Advertisement],
        pools: &BTreeMap<String, Pool>,
    ) -> Vec<L2Advertisement> {
        let mut ads = Vec::new();
        for (r, obj) in self.unique_names(Kind::L2Advertisement, raw) {
            let s = &obj.spec;
            for (i, name) in s.interfaces.iter().enumerate() {
                if !parse::is_interface_name(name) {
                    self.error(
                        &r,
                        format!("spec.interfaces[{i}]"),
                        Reason::InvalidInterface {
                            value: name.clone(),
                        },
                    );
                }
            }
            ads.push(L2Advertisement {
                name: r.name.clone(),
                pools: self.pool_selection(
                    &r,
                    &s.ip_address_pools,
                    &s.ip_address_pool_selectors,
                    pools,
                ),
                node_selectors: self.selectors(&r, "spec.nodeSelectors", &s.node_selectors),
                interfaces: self.no_duplicates(&r, "spec.interfaces", &s.interfaces),
                service_selectors: self.selectors(
                    &r,
                    "spec.serviceSelectors",
                    &s.service_selectors,
                ),
            });
        }
        ads.sort_by(|a, b| a.name.cmp(&b.name));
        ads
    }

    pub(super) fn bgp_advertisements(
        &mut self,
        raw: &[api::BGPAdvertisement],
        pools: &BTreeMap<String, Pool>,
        peers: &BTreeMap<String, Peer>,
        aliases: &BTreeMap<String, CommunityValue>,
    ) -> Vec<BgpAdvertisement> {
        let mut ads = Vec::new();
        for (r, obj) in self.unique_names(Kind::BGPAdvertisement, raw) {
            let s = &obj.spec;
            let aggregation_length =
                self.aggregation(&r, "spec.aggregationLength", s.aggregation_length, 32);
            let aggregation_length_v6 =
                self.aggregation(&r, "spec.aggregationLengthV6", s.aggregation_length_v6, 128);
            let selected =
                self.pool_selection(&r, &s.ip_address_pools, &s.ip_address_pool_selectors, pools);
            for pool in selected.iter().filter_map(|name| pools.get(name)) {
                self.aggregation_fits(&r, pool, aggregation_length, aggregation_length_v6);
            }
            let mut communities = BTreeSet::new();
            for (i, text) in s.communities.iter().enumerate() {
                let field = format!("spec.communities[{i}]");
                let value = match parse::community_literal(text) {
                    Ok(Some(v)) => v,
                    Ok(None) => match aliases.get(text) {
                        Some(v) => *v,
                        None => {
                            let reason = Reason::UnknownReference {
                                kind: Kind::Community,
                                name: text.clone(),
                            };
                            self.error(&r, field, reason);
                            continue;
                        }
                    },
                    Err(reason) => {
                        self.error(&r, field, reason);
                        continue;
                    }
                };
                if !communities.insert(value) {
                    self.error(
                        &r,
                        field,
                        Reason::Duplicate {
                            value: text.clone(),
                        },
                    );
                }
            }
            let peer_names = self.no_duplicates(&r, "spec.peers", &s.peers);
            // A peer that does not exist matches nothing (a list naming only such peers sends
            // to nobody, never to every peer).
            for (i, name) in s.peers.iter().enumerate() {
                if !peers.contains_key(name) && !peer_was_refused(name, &self.errors) {
                    self.note(
                        &r,
                        format!("spec.peers[{i}]"),
                        Reason::DanglingReference {
                            kind: Kind::BGPPeer,
                            name: name.clone(),
                        },
                    );
                }
            }
            if !s.service_selectors.is_empty() {
                for (field, length, host) in [
                    ("spec.aggregationLength", aggregation_length, 32),
                    ("spec.aggregationLengthV6", aggregation_length_v6, 128),
                ] {
                    if length != host {
                        self.error(
                            &r,
                            field,
                            Reason::ServiceSelectorsWithAggregation { length },
                        );
                    }
                }
            }
            ads.push(BgpAdvertisement {
                name: r.name.clone(),
                pools: selected,
                aggregation_length,
                aggregation_length_v6,
                local_pref: s.local_pref,
                communities,
                node_selectors: self.selectors(&r, "spec.nodeSelectors", &s.node_selectors),
                peers: peer_names,
                service_selectors: self.selectors(
                    &r,
                    "spec.serviceSelectors",
                    &s.service_selectors,
                ),
            });
        }
        // Objects come oldest first: of two conflicting advertisements the younger is refused.
        self.local_pref_conflicts(&ads, raw);
        ads.sort_by(|a, b| a.name.cmp(&b.name));
        ads
    }

    pub(super) fn aggregation(
        &mut self,
        r: &ObjectRef,
        field: &str,
        value: Option<i32>,
        max: u8,
    ) -> u8 {
        let v = value.unwrap_or(max.into());
        match u8::try_from(v) {
            Ok(len) if (1..=max).contains(&len) => len,
            _ => {
                self.error(
                    r,
                    field,
                    Reason::OutOfRange {
                        value: v.into(),
                        min: 1,
                        max: max.into(),
                    },
                );
                max
            }
        }
    }

    /// The aggregation length may not be shorter than any prefix of the pool, or the announced
    /// aggregate would cover addresses that the pool does not hold.
    pub(super) fn aggregation_fits(&mut self, r: &ObjectRef, pool: &Pool, v4: u8, v6: u8) {
        for range in &pool.ranges {
            let length = match range.family() {
                Family::V4 => v4,
                Family::V6 => v6,
            };
            if let Some(prefix) = range.cidrs().into_iter().find(|c| c.prefix_len() > length) {
                let field = match range.family() {
                    Family::V4 => "spec.aggregationLength",
                    Family::V6 => "spec.aggregationLengthV6",
                };
                self.error(
                    r,
                    field,
                    Reason::AggregationTooShort {
                        length,
                        pool: pool.name.clone(),
                        prefix: prefix.to_string(),
                    },
                );
            }
        }
    }

    /// Two advertisements that send one pool's prefixes, aggregated alike, from the same nodes to
    /// the same peers must agree on LOCAL_PREF: a router would otherwise get two values for one route.
    pub(super) fn local_pref_conflicts(
        &mut self,
        ads: &[BgpAdvertisement],
        raw: &[api::BGPAdvertisement],
    ) {
        let node_selectors = |name: &str| {
            raw.iter()
                .find(|a| a.metadata.name.as_deref() == Some(name))
                .map(|a| serde_json::to_string(&a.spec.node_selectors).unwrap_or_default())
        };
        for (i, a) in ads.iter().enumerate() {
            for b in &ads[..i] {
                let same_route = (a.aggregation_length, a.aggregation_length_v6, &a.peers)
                    == (b.aggregation_length, b.aggregation_length_v6, &b.peers)
                    && node_selectors(&a.name) == node_selectors(&b.name)
                    && a.local_pref != b.local_pref;
                if let Some(pool) = a.pools.intersection(&b.pools).next().filter(|_| same_route) {
                    let object = raw
                        .iter()
                        .find(|x| x.metadata.name.as_deref() == Some(a.name.as_str()))
                        .map(|x| object_ref(Kind::BGPAdvertisement, x));
                    if let Some(object) = object {
                        let reason = Reason::ConflictingLocalPref {
                            other: b.name.clone(),
                            pool: pool.clone(),
                            pref: a.local_pref,
                            other_pref: b.local_pref,
                        };
                        self.error(&object, "spec.localPref", reason);
                    }
                }
            }
        }
    }
}
