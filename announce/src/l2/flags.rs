//! The layer-2 command-line flags both binaries take (the speaker DaemonSet and standalone
//! hosts), defined once.

use std::time::Duration;

use super::Burst;

/// `--l2-burst-repeats`, `--l2-burst-interval-ms`, `--l2-quorum`.
#[derive(Clone, Copy, Debug, clap::Args)]
pub struct L2Flags {
    /// Gratuitous ARP / unsolicited NA rounds repeated after the first one on takeover.
    #[arg(long, default_value_t = 5)]
    pub l2_burst_repeats: u32,
    /// Milliseconds between those rounds.
    #[arg(long, default_value_t = 200, value_parser = clap::value_parser!(u64).range(1..=60_000))]
    pub l2_burst_interval_ms: u64,
    /// Split-brain guard: answer ARP/NDP only while at least this many speakers or hosts (this
    /// one included) are live, e.g. a majority of them. 0: off (each side of a partition
    /// answers).
    #[arg(long, default_value_t = 0)]
    pub l2_quorum: usize,
}

impl L2Flags {
    /// The takeover burst the flags ask for.
    pub fn burst(&self) -> Burst {
        Burst {
            repeats: self.l2_burst_repeats,
            interval: Duration::from_millis(self.l2_burst_interval_ms),
        }
    }
}
