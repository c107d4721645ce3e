//! Layer 2 mode: answering ARP and NDP for owned LoadBalancer IPs from user space.
//!
//! - [`packet`]: pure codecs (parse requests, build replies and announcements).

pub mod packet;
