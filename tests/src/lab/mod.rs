//! The network lab: network-namespace topologies with real routing daemons and client tools,
//! for testing ferrolb on real packets.
//!
//! ```no_run
//! use ferrolb_tests::lab::{self, Lab, LabSpec};
//! # fn t() -> Result<(), lab::LabError> {
//! if !lab::require_lab() { return Ok(()); }
//! let lab = Lab::new(LabSpec { nodes: 2, ..Default::default() })?;
//! let reply = lab.client().arping(lab.node(0).ipv4, std::time::Duration::from_secs(2))?;
//! assert_eq!(reply.map(|r| r.mac), Some(lab.node(0).mac));
//! # Ok(()) }
//! ```
//!
//! Everything is torn down on drop (also when a test panics): processes in the lab's
//! namespaces are killed, the namespaces and the lab's temp dir deleted.

mod bgp;
pub mod bird;
mod capture;
mod cmd;
mod daemon;
mod error;
pub mod frr;
pub mod gobgp;
mod mac;
mod nft;
mod outage;
mod probe;
mod sys;
mod topology;
mod wait;

pub use bgp::{
    Afi, Bfd, BgpConfig, BgpDaemon, Community, LargeCommunity, Neighbor, Origin, Route, Session,
    SessionState,
};
pub use bird::Bird;
pub use capture::{Capture, arp_repliers};
pub use cmd::{
    COMMAND_TIMEOUT, Process, Signal, run as run_command, run_ok as run_command_ok, tail,
};
pub use daemon::READY_TIMEOUT;
pub use error::LabError;
pub use frr::{BfdPeer, Frr};
pub use gobgp::GoBgp;
pub use mac::{BadMac, MacAddr};
pub use nft::SERVICE_TABLE;
pub use outage::{OutageProbe, OutageReport};
pub use probe::{
    ArpReply, NdReply, NeighbourEntry, TcpBackend, TcpProbe, parse_arping, parse_ndisc6,
};
pub use topology::{
    Host, Lab, LabSpec, NetnsThread, PREFIX, destroy_netns, list_netns, read_mac, sweep_stale,
};
pub use wait::{POLL_INTERVAL, wait_for, wait_until};

use std::path::Path;

/// Tools every lab test may drive. `require_lab` checks them all.
pub const TOOLS: &[&str] = &[
    "ip",
    "nft",
    "sysctl",
    "bird",
    "birdc",
    "gobgpd",
    "gobgp",
    "/usr/lib/frr/bgpd",
    "/usr/lib/frr/bfdd",
    "vtysh",
    "arping",
    "ndisc6",
];

/// Call first in every lab test: `if !lab::require_lab() { return; }`.
///
/// Returns true when the lab can run (root, every tool of [`TOOLS`] installed). Otherwise,
/// with `CI=true` in the environment it panics (lab tests must fail, not skip, in CI); without,
/// it prints `skipping: <reason>` and returns false.
pub fn require_lab() -> bool {
    match lab_unavailable() {
        None => true,
        Some(reason) => {
            if std::env::var("CI").is_ok_and(|v| v.eq_ignore_ascii_case("true")) {
                panic!("the network lab cannot run and CI=true forbids skipping: {reason}");
            }
            eprintln!(
                "skipping: network lab unavailable: {reason} (set CI=true to make this fail)"
            );
            false
        }
    }
}

/// Why the lab cannot run here, or `None` if it can.
pub fn lab_unavailable() -> Option<String> {
    if !sys::is_root() {
        return Some("not running as root (network namespaces need CAP_SYS_ADMIN)".into());
    }
    let missing: Vec<&str> = TOOLS
        .iter()
        .copied()
        .filter(|t| find_tool(t).is_none())
        .collect();
    if !missing.is_empty() {
        return Some(format!(
            "missing tools: {} (run scripts/test.sh as root to install them)",
            missing.join(", ")
        ));
    }
    None
}

/// Sends `signal` to process `pid`; false if it does not exist.
pub fn signal_pid(pid: u32, signal: Signal) -> bool {
    sys::signal(pid, signal as i32)
}

/// Finds a tool by absolute path or in `PATH` (plus the sbin directories).
pub fn find_tool(name: &str) -> Option<std::path::PathBuf> {
    let path = Path::new(name);
    if path.is_absolute() {
        return path.is_file().then(|| path.to_path_buf());
    }
    let dirs = std::env::var("PATH").unwrap_or_default();
    dirs.split(':')
        .chain(["/usr/local/sbin", "/usr/sbin", "/sbin", "/usr/bin", "/bin"])
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}
