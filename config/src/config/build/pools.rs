//! IPAddressPools: addresses, ranges, overlaps between pools, service allocation.

use super::*;

impl Builder {
    pub(super) fn pools(&mut self, raw: &[api::IPAddressPool]) -> BTreeMap<String, Pool> {
        // Every parsed entry of every pool, for the overlap sweep: (range, pool, entry index).
        let mut entries: Vec<(IpRange, ObjectRef, usize)> = Vec::new();
        let mut pools = BTreeMap::new();
        for (r, obj) in self.unique_names(Kind::IPAddressPool, raw) {
            let spec = &obj.spec;
            if spec.addresses.is_empty() {
                self.error(&r, "spec.addresses", Reason::EmptyPool);
            }
            let mut ranges = Vec::new();
            let mut seen = BTreeSet::new();
            for (i, text) in spec.addresses.iter().enumerate() {
                let field = format!("spec.addresses[{i}]");
                match parse::address_entry(text) {
                    Ok(range) if !seen.insert(range) => self.error(
                        &r,
                        field,
                        Reason::Duplicate {
                            value: text.clone(),
                        },
                    ),
                    Ok(range) => {
                        entries.push((range, r.clone(), i));
                        ranges.push(range);
                    }
                    Err(reason) => self.error(&r, field, reason),
                }
            }
            let allocation = spec.service_allocation.as_ref().map(|a| {
                if let Some(p) = a.priority.filter(|p| *p < 0) {
                    self.error(
                        &r,
                        "spec.serviceAllocation.priority",
                        Reason::OutOfRange {
                            value: p.into(),
                            min: 0,
                            max: i32::MAX.into(),
                        },
                    );
                }
                ServiceAllocation {
                    // 0 is "not set", as in MetalLB: a pool with any priority comes first.
                    priority: a.priority.filter(|p| *p > 0),
                    namespaces: self.no_duplicates(
                        &r,
                        "spec.serviceAllocation.namespaces",
                        &a.namespaces,
                    ),
                    namespace_selectors: self.selectors(
                        &r,
                        "spec.serviceAllocation.namespaceSelectors",
                        &a.namespace_selectors,
                    ),
                    service_selectors: self.selectors(
                        &r,
                        "spec.serviceAllocation.serviceSelectors",
                        &a.service_selectors,
                    ),
                }
            });
            pools.insert(
                r.name.clone(),
                Pool {
                    name: r.name.clone(),
                    labels: obj.labels().clone(),
                    ranges: merge_adjacent(ranges),
                    auto_assign: spec.auto_assign.unwrap_or(true),
                    avoid_buggy_ips: spec.avoid_buggy_ips.unwrap_or(false),
                    allocation,
                },
            );
        }
        self.overlaps(entries, raw);
        pools
    }

    /// Reports every pair of overlapping entries, within a pool or across pools, with one sweep.
    pub(super) fn overlaps(
        &mut self,
        mut entries: Vec<(IpRange, ObjectRef, usize)>,
        raw: &[api::IPAddressPool],
    ) {
        entries.sort_by(|a, b| a.0.cmp(&b.0).then_with(|| (&a.1, a.2).cmp(&(&b.1, b.2))));
        let text = |pool: &ObjectRef, i: usize| {
            raw.iter()
                .find(|p| p.metadata.name.as_deref() == Some(pool.name.as_str()))
                .and_then(|p| p.spec.addresses.get(i))
                .cloned()
                .unwrap_or_default()
        };
        let ranks: BTreeMap<&str, usize> = (raw.iter().enumerate())
            .filter_map(|(i, p)| Some((p.metadata.name.as_deref()?, i)))
            .rev()
            .collect();
        let rank = |pool: &ObjectRef| ranks.get(pool.name.as_str()).copied();
        // `open` holds the entries that may still overlap later ones (their last address is not yet passed).
        let mut open: Vec<&(IpRange, ObjectRef, usize)> = Vec::new();
        for entry in &entries {
            open.retain(|o| o.0.family() == entry.0.family() && o.0.last() >= entry.0.first());
            for o in &open {
                // Across pools the younger one is refused (pools come oldest first), so a new
                // pool never takes addresses from one in use; within a pool, the later entry.
                let (at, other) = if entry.1 != o.1 && rank(&entry.1) < rank(&o.1) {
                    (*o, entry)
                } else {
                    (entry, *o)
                };
                let reason = Reason::AddressOverlap {
                    entry: text(&at.1, at.2),
                    other: other.1.clone(),
                    other_entry: text(&other.1, other.2),
                };
                self.error(&at.1, format!("spec.addresses[{}]", at.2), reason);
            }
            open.push(entry);
        }
    }
}

/// Joins ranges that touch (`.0-.4` and `.5-.9` become `.0-.9`), after sorting.
pub(super) fn merge_adjacent(mut ranges: Vec<IpRange>) -> Vec<IpRange> {
    ranges.sort();
    let mut merged: Vec<IpRange> = Vec::with_capacity(ranges.len());
    for r in ranges {
        if let Some(last) = merged.last_mut()
            && last.family() == r.family()
            && to_u128(last.last())
                .checked_add(1)
                .is_some_and(|n| n >= to_u128(r.first()))
        {
            if r.last() > last.last()
                && let Some(joined) = IpRange::new(last.first(), r.last())
            {
                *last = joined;
            }
            continue;
        }
        merged.push(r);
    }
    merged
}
