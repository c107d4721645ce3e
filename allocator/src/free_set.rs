//! The free addresses of one family of one pool, as a set of runs.
//!
//! A [`FreeSet`] stores *free* addresses as maximal runs `[start, end]` in a `BTreeMap` keyed by
//! `start`. Taking the lowest address, taking a given address and returning an address are each
//! one or two `O(log r)` map operations, where `r` is the number of runs. Every run boundary is a
//! range boundary or sits next to an address in use, so `r <= ranges + addresses in use + 1`:
//! the structure costs the same for a /8 or a /64 as for a /28.
//!
//! **avoidBuggyIPs without enumerating.** When the set skips IPv4 `.0` and `.255` addresses, those
//! addresses are never handed out, yet they are not cut out of the runs either (that would cost one
//! run per /24). Instead every run is kept *trimmed* (its first and last address are usable) and
//! two runs separated only by unusable addresses are merged. The representation is therefore
//! canonical: it depends only on which usable addresses are free, not on the history that led
//! there, so two allocators holding the same addresses have equal free sets.

use std::collections::BTreeMap;

/// Free addresses of one family of one pool (addresses as `u128`, IPv4 in the low 32 bits).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FreeSet {
    /// Free runs: start -> end, inclusive, disjoint, trimmed, maximal.
    runs: BTreeMap<u128, u128>,
    /// Skip addresses whose low byte is 0 or 255 (only ever set for IPv4).
    avoid_buggy: bool,
    /// Usable addresses ever added (the pool's capacity in this family).
    total: u128,
    /// Usable addresses currently free.
    free: u128,
}

impl FreeSet {
    /// An empty set; `avoid_buggy` skips addresses ending in `.0` and `.255` (pass it for IPv4 only).
    pub fn new(avoid_buggy: bool) -> Self {
        Self {
            avoid_buggy,
            ..Self::default()
        }
    }

    /// Whether the set would ever hand out `x` (false for `.0`/`.255` when avoiding buggy IPs).
    pub fn usable(&self, x: u128) -> bool {
        !(self.avoid_buggy && matches!(x & 0xff, 0 | 0xff))
    }

    /// Adds a range of addresses as free. Ranges must not overlap anything already added; an
    /// overlapping range is ignored (returns false) rather than corrupting the counts.
    pub fn add_range(&mut self, first: u128, last: u128) -> bool {
        if first > last {
            return false;
        }
        let Some(a) = self.next_usable(first, last) else {
            return true; // only unusable addresses: nothing to add
        };
        let Some(b) = self.prev_usable(last, a) else {
            return true;
        };
        if self.overlaps(a, b) {
            return false;
        }
        let n = self.count_usable(a, b);
        self.total = self.total.saturating_add(n);
        self.free = self.free.saturating_add(n);
        self.insert_run(a, b);
        true
    }

    /// The lowest free address, if any.
    pub fn lowest(&self) -> Option<u128> {
        self.runs.first_key_value().map(|(s, _)| *s)
    }

    /// Whether `x` is free (and usable).
    pub fn contains(&self, x: u128) -> bool {
        self.usable(x) && self.run_containing(x).is_some()
    }

    /// Marks `x` as used. False when it was not free.
    pub fn take(&mut self, x: u128) -> bool {
        if !self.usable(x) {
            return false;
        }
        let Some((s, e)) = self.run_containing(x) else {
            return false;
        };
        self.runs.remove(&s);
        if x > s {
            // s is usable and s <= x - 1, so a usable address >= s exists at or below x - 1.
            if let Some(left_end) = self.prev_usable(x - 1, s) {
                self.runs.insert(s, left_end);
            }
        }
        if x < e
            && let Some(right_start) = self.next_usable(x + 1, e)
        {
            self.runs.insert(right_start, e);
        }
        self.free = self.free.saturating_sub(1);
        true
    }

    /// Takes the lowest free address.
    pub fn take_lowest(&mut self) -> Option<u128> {
        let x = self.lowest()?;
        self.take(x).then_some(x)
    }

    /// Returns `x` to the set. The caller guarantees `x` belongs to one of the added ranges; false
    /// (and no change) when `x` is unusable or already free.
    pub fn put(&mut self, x: u128) -> bool {
        if !self.usable(x) || self.run_containing(x).is_some() {
            return false;
        }
        self.insert_run(x, x);
        self.free = self.free.saturating_add(1);
        true
    }

    /// Usable addresses ever added.
    pub fn total(&self) -> u128 {
        self.total
    }

    /// Usable addresses free now.
    pub fn free(&self) -> u128 {
        self.free
    }

    /// Number of runs (for tests and the benchmark's memory accounting).
    pub fn run_count(&self) -> usize {
        self.runs.len()
    }

    fn run_containing(&self, x: u128) -> Option<(u128, u128)> {
        let (s, e) = self.runs.range(..=x).next_back()?;
        (*e >= x).then_some((*s, *e))
    }

    fn overlaps(&self, a: u128, b: u128) -> bool {
        if self.run_containing(a).is_some() {
            return true;
        }
        self.runs.range(a..=b).next().is_some()
    }

    /// Inserts the run `[a, b]` (trimmed, disjoint from every run) and merges it with neighbours
    /// separated from it by unusable addresses only.
    fn insert_run(&mut self, a: u128, b: u128) {
        let mut start = a;
        let mut end = b;
        if let Some((&ls, &le)) = self.runs.range(..a).next_back()
            && self.gap_unusable(le, a)
        {
            self.runs.remove(&ls);
            start = ls;
        }
        if let Some(next) = b.checked_add(1)
            && let Some((&rs, &re)) = self.runs.range(next..).next()
            && self.gap_unusable(b, rs)
        {
            self.runs.remove(&rs);
            end = re;
        }
        self.runs.insert(start, end);
    }

    /// Whether every address strictly between `lo` and `hi` (`lo < hi`) is unusable.
    fn gap_unusable(&self, lo: u128, hi: u128) -> bool {
        let gap = hi - lo - 1;
        if gap == 0 {
            return true;
        }
        // Unusable addresses come in pairs (.255, .0), so a longer gap always holds a usable one.
        self.avoid_buggy && gap <= 2 && (lo + 1..hi).all(|x| !self.usable(x))
    }

    /// The lowest usable address in `[x, limit]`.
    fn next_usable(&self, x: u128, limit: u128) -> Option<u128> {
        let mut y = x;
        loop {
            if y > limit {
                return None;
            }
            if self.usable(y) {
                return Some(y);
            }
            y = y.checked_add(1)?;
        }
    }

    /// The highest usable address in `[limit, x]`.
    fn prev_usable(&self, x: u128, limit: u128) -> Option<u128> {
        let mut y = x;
        loop {
            if y < limit {
                return None;
            }
            if self.usable(y) {
                return Some(y);
            }
            y = y.checked_sub(1)?;
        }
    }

    /// Usable addresses in `[a, b]`, computed arithmetically.
    pub fn count_usable(&self, a: u128, b: u128) -> u128 {
        if a > b {
            return 0;
        }
        let all = (b - a).saturating_add(1);
        if !self.avoid_buggy {
            return all;
        }
        let residue_count = |r: u128| count_le(b, r) - if a == 0 { 0 } else { count_le(a - 1, r) };
        all - residue_count(0) - residue_count(0xff)
    }
}

/// How many `x` in `[0, n]` have `x % 256 == r`.
fn count_le(n: u128, r: u128) -> u128 {
    if n < r { 0 } else { (n - r) / 256 + 1 }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn takes_lowest_first_and_refills_holes() {
        let mut s = FreeSet::new(false);
        assert!(s.add_range(10, 13));
        assert_eq!(s.total(), 4);
        assert_eq!(s.take_lowest(), Some(10));
        assert_eq!(s.take_lowest(), Some(11));
        assert!(s.take(13));
        assert!(!s.take(13), "taking twice must fail");
        assert_eq!(s.take_lowest(), Some(12));
        assert_eq!(s.take_lowest(), None);
        assert_eq!(s.free(), 0);
        assert!(s.put(11));
        assert!(!s.put(11), "returning twice must fail");
        assert_eq!(s.take_lowest(), Some(11));
    }

    #[test]
    fn huge_ranges_cost_one_run() {
        let mut s = FreeSet::new(false);
        assert!(s.add_range(1 << 64, (1 << 65) - 1));
        assert_eq!(s.total(), 1 << 64);
        assert_eq!(s.run_count(), 1);
        for _ in 0..1000 {
            s.take_lowest();
        }
        assert_eq!(s.run_count(), 1);
        assert!(!s.add_range(0, u128::MAX), "overlap is refused");
        let mut all = FreeSet::new(false);
        assert!(all.add_range(0, u128::MAX));
        assert_eq!(all.total(), u128::MAX, "saturates at u128::MAX");
        assert!(all.take(u128::MAX));
        assert!(all.take(0));
        assert!(all.put(u128::MAX));
    }

    #[test]
    fn avoid_buggy_skips_dot_zero_and_dot_255_arithmetically() {
        // 10.0.0.254 - 10.0.2.1 : .254 .255 | .0 ... .255 | .0 .1
        let base = u128::from(u32::from(std::net::Ipv4Addr::new(10, 0, 0, 0)));
        let mut s = FreeSet::new(true);
        s.add_range(base + 254, base + 513);
        // usable: 254, 257..=510, 513 -> 1 + 254 + 1
        assert_eq!(s.total(), 256);
        assert_eq!(s.run_count(), 1, "runs joined across unusable gaps");
        assert_eq!(s.take_lowest(), Some(base + 254));
        assert_eq!(s.take_lowest(), Some(base + 257));
        assert!(!s.take(base + 255));
        assert!(!s.contains(base + 256));
        // A /16 with avoidBuggyIPs stays one run however its /24s are cut.
        let mut big = FreeSet::new(true);
        big.add_range(base, base + 65535);
        assert_eq!(big.total(), 65536 - 512);
        assert_eq!(big.run_count(), 1);
        // Only unusable addresses: nothing added.
        let mut none = FreeSet::new(true);
        none.add_range(base + 255, base + 256);
        assert_eq!(none.total(), 0);
        assert_eq!(none.lowest(), None);
    }

    /// The model: a plain set of usable free addresses.
    fn model_usable(x: u128, avoid: bool) -> bool {
        !(avoid && matches!(x & 0xff, 0 | 0xff))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(128))]
        #[test]
        fn matches_a_plain_set(
            avoid in any::<bool>(),
            ranges in proptest::collection::vec((0u128..1200, 0u128..40), 1..4),
            ops in proptest::collection::vec((0u8..3, 0u128..1300), 0..120),
        ) {
            let mut s = FreeSet::new(avoid);
            let mut model = BTreeSet::new();
            let mut covered = BTreeSet::new();
            for (first, len) in ranges {
                let last = first + len;
                let overlaps = (first..=last).any(|x| covered.contains(&x));
                let added = s.add_range(first, last);
                prop_assert_eq!(added, !overlaps);
                if added {
                    for x in first..=last {
                        covered.insert(x);
                        if model_usable(x, avoid) { model.insert(x); }
                    }
                }
            }
            prop_assert_eq!(s.total(), model.len() as u128);
            let mut taken = BTreeSet::new();
            for (op, x) in ops {
                match op {
                    0 => {
                        let got = s.take_lowest();
                        let want = model.iter().next().copied();
                        prop_assert_eq!(got, want);
                        if let Some(x) = want { model.remove(&x); taken.insert(x); }
                    }
                    1 => {
                        let took = s.take(x);
                        prop_assert_eq!(took, model.remove(&x));
                        if took { taken.insert(x); }
                    }
                    _ => {
                        // Only return addresses of the pool that were handed out.
                        if taken.remove(&x) {
                            prop_assert!(s.put(x));
                            model.insert(x);
                        }
                    }
                }
                prop_assert_eq!(s.free(), model.len() as u128);
                for y in 0..1300 {
                    prop_assert_eq!(s.contains(y), model.contains(&y), "address {}", y);
                }
            }
            // Canonical form: rebuilding from the same free addresses gives an equal set.
            let mut rebuilt = FreeSet::new(avoid);
            for (first, last) in covered_runs(&covered) { rebuilt.add_range(first, last); }
            for y in covered.iter() { if !model.contains(y) { rebuilt.take(*y); } }
            prop_assert_eq!(&rebuilt.runs, &s.runs);
        }
    }

    fn covered_runs(covered: &BTreeSet<u128>) -> Vec<(u128, u128)> {
        let mut out: Vec<(u128, u128)> = Vec::new();
        for &x in covered {
            match out.last_mut() {
                Some((_, e)) if *e + 1 == x => *e = x,
                _ => out.push((x, x)),
            }
        }
        out
    }
}
