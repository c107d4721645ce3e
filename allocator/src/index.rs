//! Who holds each address: one entry per address in use (never per pool address), IPv4 and IPv6
//! in separate maps so IPv4 keys stay 4 bytes. The main maps hold one holder per address (8
//! bytes); the other holders of shared addresses live in a side map, so the common, unshared
//! case pays for nothing else.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::service::ServiceKey;

/// Address -> holders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpIndex {
    v4: BTreeMap<u32, ServiceKey>,
    v6: BTreeMap<u128, ServiceKey>,
    /// Holders of shared addresses besides the one in the main maps.
    more: BTreeMap<IpAddr, BTreeSet<ServiceKey>>,
}

impl IpIndex {
    fn main(&self, ip: IpAddr) -> Option<&ServiceKey> {
        match ip {
            IpAddr::V4(a) => self.v4.get(&u32::from(a)),
            IpAddr::V6(a) => self.v6.get(&u128::from(a)),
        }
    }

    /// The holders of `ip`: the first claimant (or its successor), then the others in key order.
    pub fn holders(&self, ip: IpAddr) -> impl Iterator<Item = &ServiceKey> {
        let more = self.main(ip).and_then(|_| self.more.get(&ip));
        self.main(ip).into_iter().chain(more.into_iter().flatten())
    }

    /// Adds `key` as a holder of `ip`; true when it is the first holder.
    pub fn add(&mut self, ip: IpAddr, key: ServiceKey) -> bool {
        use std::collections::btree_map::Entry;
        fn add_in<K: Ord>(
            map: &mut BTreeMap<K, ServiceKey>,
            k: K,
            key: &ServiceKey,
        ) -> Option<bool> {
            // One walk of the map: Some(true) first holder, Some(false) already the main holder,
            // None another service holds it.
            match map.entry(k) {
                Entry::Vacant(v) => {
                    v.insert(key.clone());
                    Some(true)
                }
                Entry::Occupied(o) if o.get() == key => Some(false),
                Entry::Occupied(_) => None,
            }
        }
        let added = match ip {
            IpAddr::V4(a) => add_in(&mut self.v4, u32::from(a), &key),
            IpAddr::V6(a) => add_in(&mut self.v6, u128::from(a), &key),
        };
        match added {
            Some(first) => first,
            None => {
                self.more.entry(ip).or_default().insert(key);
                false
            }
        }
    }

    /// Removes `key` as a holder of `ip`; true when `ip` has no holder left.
    pub fn remove(&mut self, ip: IpAddr, key: &ServiceKey) -> bool {
        if self.main(ip) != Some(key) {
            if let Some(set) = self.more.get_mut(&ip) {
                set.remove(key);
                if set.is_empty() {
                    self.more.remove(&ip);
                }
            }
            return false;
        }
        // The main holder leaves: promote another one, if any.
        let successor = self.more.get_mut(&ip).and_then(|set| set.pop_first());
        if self.more.get(&ip).is_some_and(|set| set.is_empty()) {
            self.more.remove(&ip);
        }
        match (ip, successor) {
            (IpAddr::V4(a), Some(k)) => {
                self.v4.insert(u32::from(a), k);
                false
            }
            (IpAddr::V6(a), Some(k)) => {
                self.v6.insert(u128::from(a), k);
                false
            }
            (IpAddr::V4(a), None) => self.v4.remove(&u32::from(a)).is_some(),
            (IpAddr::V6(a), None) => self.v6.remove(&u128::from(a)).is_some(),
        }
    }

    /// Every address in use, in address order (IPv4 first).
    pub fn addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        let v4 = self.v4.keys().map(|a| IpAddr::V4(Ipv4Addr::from(*a)));
        let v6 = self.v6.keys().map(|a| IpAddr::V6(Ipv6Addr::from(*a)));
        v4.chain(v6)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
        self.more.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_come_and_go() {
        let mut idx = IpIndex::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let (a, b, c) = (
            ServiceKey::new("n", "a"),
            ServiceKey::new("n", "b"),
            ServiceKey::new("n", "c"),
        );
        assert!(idx.add(ip, b.clone()));
        assert!(!idx.add(ip, a.clone()));
        assert!(!idx.add(ip, a.clone()), "adding twice is a no-op");
        assert!(!idx.add(ip, c.clone()));
        assert_eq!(
            idx.holders(ip).cloned().collect::<Vec<_>>(),
            [b.clone(), a.clone(), c.clone()]
        );
        assert!(!idx.remove(ip, &b), "the main holder leaves; a takes over");
        assert_eq!(
            idx.holders(ip).cloned().collect::<Vec<_>>(),
            [a.clone(), c.clone()]
        );
        assert!(!idx.remove(ip, &b), "not a holder");
        assert!(!idx.remove(ip, &c));
        assert_eq!(
            idx.holders(ip).cloned().collect::<Vec<_>>(),
            std::slice::from_ref(&a)
        );
        assert!(idx.remove(ip, &a));
        assert_eq!(idx.holders(ip).count(), 0);
        assert!(idx.more.is_empty());
        assert!(!idx.remove(ip, &a));
        let v6: IpAddr = "fd00::1".parse().unwrap();
        assert!(idx.add(v6, a.clone()));
        assert_eq!(idx.addresses().collect::<Vec<_>>(), [v6]);
    }
}
