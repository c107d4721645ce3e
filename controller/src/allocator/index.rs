//! Who holds each address: one entry per address in use (never per pool address), IPv4 and IPv6
//! in separate maps so IPv4 keys stay 4 bytes. A shared address lists all its holders.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::service::ServiceKey;

/// The holders of one address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Holders {
    /// The common case: one service.
    One(ServiceKey),
    /// A shared address (two or more services).
    Many(Box<BTreeSet<ServiceKey>>),
}

impl Holders {
    /// Every holder, in key order.
    pub fn iter(&self) -> Box<dyn Iterator<Item = &ServiceKey> + '_> {
        match self {
            Holders::One(k) => Box::new(std::iter::once(k)),
            Holders::Many(set) => Box::new(set.iter()),
        }
    }

    fn insert(&mut self, key: ServiceKey) {
        match self {
            Holders::One(k) if *k == key => {}
            Holders::One(k) => {
                let set = BTreeSet::from([k.clone(), key]);
                *self = Holders::Many(Box::new(set));
            }
            Holders::Many(set) => {
                set.insert(key);
            }
        }
    }

    /// Removes `key`; true when nobody is left.
    fn remove(&mut self, key: &ServiceKey) -> bool {
        match self {
            Holders::One(k) => k == key,
            Holders::Many(set) => {
                set.remove(key);
                if set.len() == 1 {
                    if let Some(last) = set.pop_first() {
                        *self = Holders::One(last);
                    }
                }
                set_is_empty(self)
            }
        }
    }
}

fn set_is_empty(h: &Holders) -> bool {
    matches!(h, Holders::Many(set) if set.is_empty())
}

/// Address -> holders.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct IpIndex {
    v4: BTreeMap<u32, Holders>,
    v6: BTreeMap<u128, Holders>,
}

impl IpIndex {
    /// The holders of `ip`, if anyone holds it.
    pub fn get(&self, ip: IpAddr) -> Option<&Holders> {
        match ip {
            IpAddr::V4(a) => self.v4.get(&u32::from(a)),
            IpAddr::V6(a) => self.v6.get(&u128::from(a)),
        }
    }

    /// Adds `key` as a holder of `ip`; true when it is the first holder.
    pub fn add(&mut self, ip: IpAddr, key: ServiceKey) -> bool {
        fn add_in<K: Ord>(map: &mut BTreeMap<K, Holders>, k: K, key: ServiceKey) -> bool {
            match map.get_mut(&k) {
                Some(h) => {
                    h.insert(key);
                    false
                }
                None => {
                    map.insert(k, Holders::One(key));
                    true
                }
            }
        }
        match ip {
            IpAddr::V4(a) => add_in(&mut self.v4, u32::from(a), key),
            IpAddr::V6(a) => add_in(&mut self.v6, u128::from(a), key),
        }
    }

    /// Removes `key` as a holder of `ip`; true when `ip` has no holder left.
    pub fn remove(&mut self, ip: IpAddr, key: &ServiceKey) -> bool {
        fn remove_in<K: Ord>(map: &mut BTreeMap<K, Holders>, k: K, key: &ServiceKey) -> bool {
            let Some(h) = map.get_mut(&k) else {
                return false;
            };
            if h.remove(key) {
                map.remove(&k);
                true
            } else {
                false
            }
        }
        match ip {
            IpAddr::V4(a) => remove_in(&mut self.v4, u32::from(a), key),
            IpAddr::V6(a) => remove_in(&mut self.v6, u128::from(a), key),
        }
    }

    /// Every address in use, in address order (IPv4 first).
    pub fn iter(&self) -> impl Iterator<Item = (IpAddr, &Holders)> {
        let v4 = self
            .v4
            .iter()
            .map(|(a, h)| (IpAddr::V4(Ipv4Addr::from(*a)), h));
        let v6 = self
            .v6
            .iter()
            .map(|(a, h)| (IpAddr::V6(Ipv6Addr::from(*a)), h));
        v4.chain(v6)
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.v4.clear();
        self.v6.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holders_come_and_go() {
        let mut idx = IpIndex::default();
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let (a, b) = (ServiceKey::new("n", "a"), ServiceKey::new("n", "b"));
        assert!(idx.add(ip, a.clone()));
        assert!(!idx.add(ip, b.clone()));
        assert!(!idx.add(ip, b.clone()), "adding twice is a no-op");
        assert_eq!(idx.get(ip).unwrap().iter().count(), 2);
        assert!(!idx.remove(ip, &a));
        assert_eq!(idx.get(ip), Some(&Holders::One(b.clone())));
        assert!(!idx.remove(ip, &a), "not a holder");
        assert!(idx.remove(ip, &b));
        assert!(idx.get(ip).is_none());
        assert!(!idx.remove(ip, &b));
    }
}
