//! A probe that keeps opening TCP connections to a service from a host and records when it was
//! served and by whom, to measure how long an address was unreachable during a failover or a
//! restart.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use super::error::LabError;
use super::probe::tcp_probe_here;
use super::topology::{Host, NetnsThread};

/// What an [`OutageProbe`] saw.
#[derive(Clone, Debug, Default)]
pub struct OutageReport {
    /// Connections answered.
    pub served: u64,
    /// Attempts that failed (refused, timed out, reset).
    pub failed: u64,
    /// The longest time between two answered connections (or from the start to the first, or
    /// from the last to the end, when nothing answered there).
    pub longest_gap: Duration,
    /// How many answers each backend gave (the first word of its response).
    pub served_by: BTreeMap<String, u64>,
}

/// A running probe; [`OutageProbe::stop`] ends it and returns the report.
#[derive(Debug)]
pub struct OutageProbe {
    stop: Arc<AtomicBool>,
    thread: Option<NetnsThread<OutageReport>>,
}

impl Host {
    /// Starts connecting to `target` from this host every `interval` (each attempt bounded by
    /// `timeout`), until stopped.
    pub fn start_outage_probe(
        &self,
        target: SocketAddr,
        interval: Duration,
        timeout: Duration,
    ) -> Result<OutageProbe, LabError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = self.spawn_thread(move || run(target, interval, timeout, &flag))?;
        Ok(OutageProbe {
            stop,
            thread: Some(thread),
        })
    }
}

impl OutageProbe {
    /// Stops the probe and returns what it saw.
    pub fn stop(mut self) -> OutageReport {
        self.stop.store(true, Ordering::Relaxed);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for OutageProbe {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn run(
    target: SocketAddr,
    interval: Duration,
    timeout: Duration,
    stop: &AtomicBool,
) -> OutageReport {
    let mut report = OutageReport::default();
    let mut last_served = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let started = Instant::now();
        let probe = tcp_probe_here(target, timeout);
        if probe.ok {
            let now = Instant::now();
            report.longest_gap = report.longest_gap.max(now - last_served);
            last_served = now;
            report.served += 1;
            let who = probe
                .response
                .split_whitespace()
                .next()
                .unwrap_or("")
                .to_string();
            *report.served_by.entry(who).or_default() += 1;
        } else {
            report.failed += 1;
        }
        if let Some(rest) = interval.checked_sub(started.elapsed()) {
            thread::sleep(rest);
        }
    }
    report.longest_gap = report.longest_gap.max(last_served.elapsed());
    report
}
