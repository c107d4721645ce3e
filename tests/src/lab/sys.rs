//! The three libc calls the lab needs, declared directly so the crate stays std-only.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;

const CLONE_NEWNET: i32 = 0x4000_0000;
pub(crate) const SIGTERM: i32 = 15;
pub(crate) const SIGKILL: i32 = 9;

unsafe extern "C" {
    fn setns(fd: i32, nstype: i32) -> i32;
    fn kill(pid: i32, sig: i32) -> i32;
    fn geteuid() -> u32;
}

/// Moves the calling thread (only it) into the named network namespace.
pub(crate) fn enter_netns(name: &str) -> io::Result<()> {
    let file = File::open(format!("/run/netns/{name}"))?;
    // SAFETY: setns only reads the descriptor, which stays open for the duration of the call.
    let rc = unsafe { setns(file.as_raw_fd(), CLONE_NEWNET) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Sends a signal; returns false if the process does not exist (or cannot be signalled).
pub(crate) fn signal(pid: u32, sig: i32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    if pid <= 0 {
        return false;
    }
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { kill(pid, sig) == 0 }
}

pub(crate) fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { geteuid() == 0 }
}
