//! An independent witness on the wire: tcpdump in a host's namespace, for what a test's own
//! probes cannot see (a second answer to one ARP request, a frame's TTL).

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::time::Duration;

use super::cmd::Process;
use super::error::LabError;
use super::topology::Host;
use super::wait::wait_until;

/// A running `tcpdump -l -nn -e -v` on the host's LAN interface.
pub struct Capture(Process);

impl Capture {
    /// Starts tcpdump with `filter` (pcap syntax) and returns once it is listening.
    pub fn start(host: &Host, filter: &str) -> Result<Capture, LabError> {
        let p = host.spawn(&[
            "tcpdump",
            "-i",
            &host.ifname,
            "-l",
            "-nn",
            "-e",
            "-v",
            filter,
        ])?;
        let cap = Capture(p);
        wait_until("tcpdump listening", Duration::from_secs(5), || {
            cap.0.log().contains("listening on")
        })?;
        Ok(cap)
    }

    /// Stops tcpdump (after a short grace, so frames in flight are printed) and returns its
    /// output.
    pub fn stop(mut self) -> String {
        std::thread::sleep(Duration::from_millis(300));
        self.0.stop();
        self.0.log()
    }
}

/// The source MACs (tcpdump `-e`: the second word) of the ARP replies about `ip` in `log`.
pub fn arp_repliers(log: &str, ip: IpAddr) -> BTreeSet<String> {
    let ip = ip.to_string();
    log.lines()
        .filter(|l| l.contains("Reply") && l.contains(&format!("{ip} is-at")))
        .filter_map(|l| l.split_whitespace().nth(1).map(str::to_string))
        .collect()
}
