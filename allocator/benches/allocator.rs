//! Allocator benchmark: 100,000 Services into a mix of IPv4 /16 and IPv6 /64 pools, then half of
//! them released at random and 50,000 new ones allocated into the holes (fragmenting the free
//! sets), timing every operation and measuring peak heap with a counting global allocator.
//!
//! Run: `cargo bench -p ferrolb-allocator --bench allocator` (env `SERVICES`, default 100000).
//!
//! Memory per allocation = (peak heap while the allocator lives - heap before it existed) / number
//! of Services holding addresses at that peak. It counts everything the allocator owns: service
//! keys (namespace and name strings), assignment records, the address index and the free runs.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use ferrolb_allocator::{Allocator, FamilyPolicy, ServiceKey, ServiceRequest, StalePolicy};
use ferrolb_config::selector::Labels;
use ferrolb_config::{Config, Family, IpRange, Pool};

struct Counting;

static CURRENT: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is passed to the System allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract for `alloc` is passed on as is.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            let now = CURRENT.fetch_add(layout.size(), Ordering::Relaxed) + layout.size();
            PEAK.fetch_max(now, Ordering::Relaxed);
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from System through `alloc`/`realloc` with this layout.
        unsafe { System.dealloc(ptr, layout) };
        CURRENT.fetch_sub(layout.size(), Ordering::Relaxed);
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` came from System with `layout`; the caller's contract is passed on.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                let now = CURRENT.fetch_add(new_size - layout.size(), Ordering::Relaxed)
                    + (new_size - layout.size());
                PEAK.fetch_max(now, Ordering::Relaxed);
            } else {
                CURRENT.fetch_sub(layout.size() - new_size, Ordering::Relaxed);
            }
        }
        p
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn heap() -> usize {
    CURRENT.load(Ordering::Relaxed)
}

fn reset_peak() {
    PEAK.store(heap(), Ordering::Relaxed);
}

fn range(first: &str, last: &str) -> IpRange {
    IpRange::new(first.parse().unwrap(), last.parse().unwrap()).unwrap()
}

fn pool(name: &str, ranges: Vec<IpRange>, avoid_buggy: bool) -> Pool {
    Pool {
        name: name.into(),
        labels: Labels::new(),
        ranges,
        auto_assign: true,
        avoid_buggy_ips: avoid_buggy,
        allocation: None,
    }
}

fn config(pools: Vec<Pool>) -> Config {
    Config {
        pools: pools.into_iter().map(|p| (p.name.clone(), p)).collect(),
        ..Default::default()
    }
}

/// Service `i`: 40 % single-stack IPv4, 40 % single-stack IPv6, 20 % RequireDualStack.
fn request(i: usize) -> ServiceRequest {
    let mut r = ServiceRequest::new(format!("ns-{}", i % 50), format!("svc-{i}"));
    match i % 5 {
        0 | 1 => r.families = vec![Family::V4],
        2 | 3 => r.families = vec![Family::V6],
        _ => {
            r.family_policy = FamilyPolicy::RequireDualStack;
            r.families = vec![Family::V4, Family::V6];
        }
    }
    r
}

/// xorshift64*: a fixed-seed generator, so every run releases the same services.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
}

fn report(label: &str, ns: &mut [u64]) {
    ns.sort_unstable();
    let pct = |p: f64| ns[((ns.len() as f64 * p) as usize).min(ns.len() - 1)];
    let mean = ns.iter().sum::<u64>() as f64 / ns.len() as f64;
    println!(
        "{label:<26} n={:<7} p50={:>6} ns  p99={:>6} ns  p99.9={:>7} ns  max={:>8} ns  mean={:>7.0} ns",
        ns.len(),
        pct(0.50),
        pct(0.99),
        pct(0.999),
        ns[ns.len() - 1],
        mean
    );
}

fn main() {
    let n: usize = std::env::var("SERVICES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);

    // Holding cost does not depend on pool size: an empty allocator for /28s vs a /8 and a /64.
    let small = config(vec![pool(
        "p",
        vec![range("10.0.0.0", "10.0.0.15"), range("fd00::", "fd00::f")],
        true,
    )]);
    let huge = config(vec![pool(
        "p",
        vec![
            range("10.0.0.0", "10.255.255.255"),
            range("fd00::", "fd00::ffff:ffff:ffff:ffff"),
        ],
        true,
    )]);
    for (label, c) in [("/28 + /124", small), ("/8 + /64", huge)] {
        let before = heap();
        let a = Allocator::new(c, StalePolicy::Keep);
        println!(
            "empty allocator, {label:<11} pool: {} bytes on the heap",
            heap() - before
        );
        drop(a);
    }

    let cfg = config(vec![
        pool(
            "a",
            vec![
                range("10.0.0.0", "10.0.255.255"),
                range("fd00:0:0:1::", "fd00:0:0:1:ffff:ffff:ffff:ffff"),
            ],
            false,
        ),
        pool("b", vec![range("10.1.0.0", "10.1.255.255")], true),
        pool(
            "c",
            vec![range("fd00:0:0:2::", "fd00:0:0:2:ffff:ffff:ffff:ffff")],
            false,
        ),
    ]);

    let mut alloc_ns: Vec<u64> = Vec::with_capacity(n);
    let mut release_ns: Vec<u64> = Vec::with_capacity(n);
    let mut realloc_ns: Vec<u64> = Vec::with_capacity(n);
    let mut live: Vec<ServiceKey> = Vec::with_capacity(n);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut refused = 0usize;

    let baseline = heap();
    reset_peak();
    let mut a = Allocator::new(cfg, StalePolicy::Keep);

    // Phase 1: allocate n services.
    for i in 0..n {
        let r = request(i);
        let t = Instant::now();
        let out = a.ensure(&r);
        alloc_ns.push(t.elapsed().as_nanos() as u64);
        match out {
            Ok(_) => live.push(r.key),
            Err(_) => refused += 1,
        }
    }
    let after_alloc = heap() - baseline;
    let peak_alloc = PEAK.load(Ordering::Relaxed) - baseline;
    let held_after_alloc = a.len();

    // Phase 2: release half, chosen at random (fragments every pool).
    let half = live.len() / 2;
    for j in 0..half {
        let k = j + (rng.next() as usize) % (live.len() - j);
        live.swap(j, k);
    }
    let released: Vec<ServiceKey> = live.drain(..half).collect();
    for key in &released {
        let t = Instant::now();
        let retry = a.release(key);
        release_ns.push(t.elapsed().as_nanos() as u64);
        drop(retry);
    }
    drop(released);
    let after_release = heap() - baseline;

    // Phase 3: allocate as many new services into the holes.
    for i in n..n + half {
        let r = request(i);
        let t = Instant::now();
        let out = a.ensure(&r);
        realloc_ns.push(t.elapsed().as_nanos() as u64);
        if out.is_err() {
            refused += 1;
        }
    }
    let peak = PEAK.load(Ordering::Relaxed) - baseline;
    let end = heap() - baseline;
    let held = a.len();
    let mut ips = 0usize;
    for key in a.assignments().iter().map(|(_, x)| x.ips.len()) {
        ips += key;
    }
    let counters: Vec<String> = ["a", "b", "c"]
        .iter()
        .map(|p| {
            let c = a.pool_counters(p);
            format!(
                "{p}: v4 {}/{} v6 {} used",
                c.assigned_v4,
                c.assigned_v4 + c.available_v4,
                c.assigned_v6
            )
        })
        .collect();

    println!("services: {n} (40% IPv4, 40% IPv6, 20% RequireDualStack); refused: {refused}");
    println!(
        "pools: a = 10.0.0.0/16 + fd00:0:0:1::/64, b = 10.1.0.0/16 (avoidBuggyIPs), c = fd00:0:0:2::/64"
    );
    println!("final usage: {}", counters.join("; "));
    report("allocate (empty pools)", &mut alloc_ns);
    report("release (random half)", &mut release_ns);
    report("allocate (fragmented)", &mut realloc_ns);
    let mut all: Vec<u64> = alloc_ns.iter().chain(&realloc_ns).copied().collect();
    report("allocate (all)", &mut all);
    println!(
        "heap after phase 1: {after_alloc} B for {held_after_alloc} services = {:.1} B/allocation (peak {peak_alloc} B = {:.1} B/allocation)",
        after_alloc as f64 / held_after_alloc as f64,
        peak_alloc as f64 / held_after_alloc as f64
    );
    println!("heap after releasing half: {after_release} B");
    println!(
        "heap at end: {end} B for {held} services ({ips} addresses) = {:.1} B/allocation; overall peak {peak} B = {:.1} B/allocation",
        end as f64 / held as f64,
        peak as f64 / held.max(held_after_alloc) as f64
    );
    drop(a);
}
