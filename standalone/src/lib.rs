//! ferrolb's standalone mode: the allocator (and, as they land, the announcers) on plain Linux
//! hosts, configured by a directory of the same YAML a cluster would hold.
//!
//! - [`config_dir`]: reads the directory, file by file, keeping each file's last good content
//!   when an edit breaks it.
//! - [`state`]: the assignments, persisted atomically so a restart moves no address.
//! - [`engine`]: one pure step from (objects, held assignments) to (assignments, refusals).
//! - [`explain`]: pure; why a Service's address is pending, stale or announced, and by whom
//!   (`ferrolb explain`), from a cluster's objects ([`kubectl`] reads them) or a directory.

pub mod announce;
pub mod config_dir;
pub mod engine;
pub mod explain;
pub mod kubectl;
pub mod migrate;
pub mod state;
