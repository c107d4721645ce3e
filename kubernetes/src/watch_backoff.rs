//! How fast a failed watch is retried. kube-runtime's default waits up to 30 s between attempts
//! plus as much again of jitter, and keeps the long delays for two minutes after recovery: after
//! the API server had been away for a minute, a new Service waited more than a minute for its
//! address (seen on a real kube-apiserver). Here the delay grows from 250 ms to at most 5 s, with
//! up to a quarter of it added at random so that replicas and speakers do not all come back in
//! the same instant, and drops back to 250 ms with the first event that arrives.

use std::time::Duration;

/// The first delay after a failure.
pub const INITIAL: Duration = Duration::from_millis(250);
/// The longest delay between two attempts (before jitter).
pub const MAX: Duration = Duration::from_secs(5);

/// A [`kube::runtime::utils::Backoff`] for watches: exponential from [`INITIAL`] to [`MAX`],
/// plus up to 25 % jitter.
#[derive(Clone, Debug)]
pub struct WatchBackoff {
    next: Duration,
    state: u64,
}

impl Default for WatchBackoff {
    fn default() -> Self {
        // Any varying seed spreads processes apart; the jitter needs no stronger randomness.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        WatchBackoff::with_seed(u64::from(nanos) ^ (u64::from(std::process::id()) << 32))
    }
}

impl WatchBackoff {
    /// A backoff whose jitter follows `seed` (for tests).
    pub fn with_seed(seed: u64) -> Self {
        WatchBackoff {
            next: INITIAL,
            state: seed | 1,
        }
    }

    fn random_fraction(&mut self) -> f64 {
        // xorshift64
        self.state ^= self.state << 13;
        self.state ^= self.state >> 7;
        self.state ^= self.state << 17;
        (self.state >> 11) as f64 / (1u64 << 53) as f64
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let delay = self.next;
        self.next = (self.next * 2).min(MAX);
        let jitter = delay.mul_f64(0.25 * self.random_fraction());
        Some(delay + jitter)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = INITIAL;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::runtime::utils::Backoff;

    #[test]
    fn grows_to_the_cap_with_bounded_jitter_and_resets() {
        let mut b = WatchBackoff::with_seed(42);
        let delays: Vec<Duration> = (&mut b).take(10).collect();
        let bases = [250, 500, 1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000];
        for (d, base) in delays.iter().zip(bases) {
            let base = Duration::from_millis(base);
            assert!(*d >= base && *d <= base.mul_f64(1.25), "{d:?} for {base:?}");
        }
        assert!(
            delays.windows(2).any(|w| w[0] != w[1]),
            "jittered: {delays:?}"
        );
        b.reset();
        let first = b.next().unwrap();
        assert!(first >= INITIAL && first <= INITIAL.mul_f64(1.25));
    }
}
