//! Why the allocator refused a request: [`Refusal`], one variant per cause, each naming the pool,
//! address, port or service involved. There is deliberately no generic "no IPs available": when
//! several pools were tried, [`Refusal::NoPoolCouldServe`] lists what went wrong in each.

use std::fmt;
use std::net::IpAddr;

use ferrolb_config::Family;

use super::service::{Protocol, ServiceKey, TrafficPolicy};

/// A typed refusal. `Display` gives a message fit for a Kubernetes event.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Every usable address of the family in the pool is taken.
    #[error("pool {pool} is exhausted for {family}: {in_use} of {total} usable addresses in use")]
    PoolExhausted {
        /// The pool.
        pool: String,
        /// The family asked for.
        family: Family,
        /// Addresses in use (saturating).
        in_use: u64,
        /// Usable addresses (saturating).
        total: u64,
    },
    /// The pool has no range of the family.
    #[error("pool {pool} offers no {family} addresses")]
    FamilyNotOffered {
        /// The pool.
        pool: String,
        /// The family asked for.
        family: Family,
    },
    /// A requested (or held) address lies in no pool.
    #[error("IP {ip} is outside every address pool")]
    OutsidePools {
        /// The address.
        ip: IpAddr,
    },
    /// The address is `.0` or `.255` in a pool with avoidBuggyIPs.
    #[error("IP {ip} ends in .0 or .255 and pool {pool} avoids buggy IPs")]
    BuggyIp {
        /// The address.
        ip: IpAddr,
        /// Its pool.
        pool: String,
    },
    /// `ferrolb.io/address-pool` names a pool that does not exist.
    #[error("pool {pool} does not exist")]
    UnknownPool {
        /// The requested pool.
        pool: String,
    },
    /// The address is in a different pool from the one the Service asks for.
    #[error("IP {ip} belongs to pool {actual}, but the service asks for pool {requested}")]
    PoolMismatch {
        /// The address.
        ip: IpAddr,
        /// The pool the service asks for.
        requested: String,
        /// The pool holding the address.
        actual: String,
    },
    /// Two addresses of one service lie in different pools.
    #[error(
        "IPs {first} (pool {first_pool}) and {second} (pool {second_pool}) are in different pools; a service's addresses come from one pool"
    )]
    DifferentPools {
        /// One address.
        first: IpAddr,
        /// Its pool.
        first_pool: String,
        /// The other address.
        second: IpAddr,
        /// Its pool.
        second_pool: String,
    },
    /// The pool's serviceAllocation does not admit the Service's namespace.
    #[error("pool {pool} does not allow namespace {namespace}")]
    NamespaceNotAllowed {
        /// The pool.
        pool: String,
        /// The Service's namespace.
        namespace: String,
    },
    /// The pool's serviceAllocation selectors do not match the Service's labels.
    #[error("pool {pool}'s service selectors do not match service {service}")]
    ServiceNotSelected {
        /// The pool.
        pool: String,
        /// The Service.
        service: ServiceKey,
    },
    /// The pool is only used when asked for by name or address.
    #[error("pool {pool} has autoAssign: false (ask for it with ferrolb.io/address-pool)")]
    AutoAssignDisabled {
        /// The pool.
        pool: String,
    },
    /// The address is held by a service that does not share it (or we have no sharing key).
    #[error("IP {ip} is held by service {holder}{}", if *.shareable { " (set the same ferrolb.io/allow-shared-ip key on both to share it)" } else { "" })]
    IpInUse {
        /// The address.
        ip: IpAddr,
        /// Who holds it.
        holder: ServiceKey,
        /// Whether the holder has a sharing key (so setting the same one would allow sharing).
        shareable: bool,
    },
    /// Both have sharing keys, but they differ.
    #[error("IP {ip} is held by service {holder} {}, not {ours:?}", match .theirs { Some(k) => format!("with sharing key {k:?}"), None => "without a sharing key".to_string() })]
    SharingKeyMismatch {
        /// The address.
        ip: IpAddr,
        /// Who holds it.
        holder: ServiceKey,
        /// Our key.
        ours: String,
        /// Theirs (`None`: the holder does not share).
        theirs: Option<String>,
    },
    /// Same key, but a (protocol, port) is used by both.
    #[error("port {protocol}/{port} on IP {ip} is already used by service {holder}")]
    PortConflict {
        /// The address.
        ip: IpAddr,
        /// The protocol.
        protocol: Protocol,
        /// The port.
        port: u16,
        /// Who uses it.
        holder: ServiceKey,
    },
    /// Same key, but the traffic policies (or Local selectors) are incompatible.
    #[error("IP {ip} is shared by service {holder} with externalTrafficPolicy {theirs}, incompatible with {ours}{}", if *.selectors_differ { " (Local services share only with an identical pod selector)" } else { "" })]
    TrafficPolicyMismatch {
        /// The address.
        ip: IpAddr,
        /// Who holds it.
        holder: ServiceKey,
        /// Our policy.
        ours: TrafficPolicy,
        /// Theirs.
        theirs: TrafficPolicy,
        /// Both Local, with different selectors.
        selectors_differ: bool,
    },
    /// The request itself is malformed (families, requested IPs).
    #[error("invalid request: {detail}")]
    InvalidRequest {
        /// What is wrong.
        detail: String,
    },
    /// The addresses a service holds no longer fit its request (families or requested IPs changed).
    #[error("held IPs no longer match the request: {detail}")]
    HeldMismatch {
        /// What differs.
        detail: String,
    },
    /// A held address was removed from every pool, and the stale policy is to reassign.
    #[error("IP {ip} was removed from every address pool")]
    RemovedFromPools {
        /// The address.
        ip: IpAddr,
    },
    /// No pool is configured at all.
    #[error("no address pools are configured")]
    NoPools,
    /// Several pools were considered; each refused for its own reason, listed in pool order.
    #[error("no pool could serve the service: {}", DisplayAttempts(.attempts))]
    NoPoolCouldServe {
        /// Each pool's reason, in the order the pools were considered.
        attempts: Vec<PoolAttempt>,
    },
}

/// One pool's reason inside [`Refusal::NoPoolCouldServe`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolAttempt {
    /// The pool.
    pub pool: String,
    /// Why it could not serve.
    pub reason: Refusal,
}

struct DisplayAttempts<'a>(&'a [PoolAttempt]);

impl fmt::Display for DisplayAttempts<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, a) in self.0.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{}", a.reason)?;
        }
        Ok(())
    }
}

impl Refusal {
    /// This reason and, for [`Refusal::NoPoolCouldServe`], every inner one (depth first).
    pub fn causes(&self) -> Vec<&Refusal> {
        match self {
            Refusal::NoPoolCouldServe { attempts } => {
                attempts.iter().flat_map(|a| a.reason.causes()).collect()
            }
            other => vec![other],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_cause() {
        let holder = ServiceKey::new("web", "front");
        let ip: IpAddr = "10.0.0.1".parse().unwrap();
        let cases = [
            (
                Refusal::PoolExhausted {
                    pool: "small".into(),
                    family: Family::V4,
                    in_use: 2,
                    total: 2,
                },
                "pool small is exhausted for IPv4: 2 of 2 usable addresses in use",
            ),
            (
                Refusal::PortConflict {
                    ip,
                    protocol: Protocol::Tcp,
                    port: 80,
                    holder: holder.clone(),
                },
                "port TCP/80 on IP 10.0.0.1 is already used by service web/front",
            ),
            (
                Refusal::IpInUse {
                    ip,
                    holder: holder.clone(),
                    shareable: false,
                },
                "IP 10.0.0.1 is held by service web/front",
            ),
            (
                Refusal::NoPoolCouldServe {
                    attempts: vec![
                        PoolAttempt {
                            pool: "a".into(),
                            reason: Refusal::NamespaceNotAllowed {
                                pool: "a".into(),
                                namespace: "dev".into(),
                            },
                        },
                        PoolAttempt {
                            pool: "b".into(),
                            reason: Refusal::FamilyNotOffered {
                                pool: "b".into(),
                                family: Family::V6,
                            },
                        },
                    ],
                },
                "no pool could serve the service: pool a does not allow namespace dev; pool b offers no IPv6 addresses",
            ),
        ];
        for (r, want) in cases {
            assert_eq!(r.to_string(), want);
        }
    }
}
