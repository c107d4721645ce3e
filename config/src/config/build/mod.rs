//! [`build`]: the one pure function from raw objects to a validated [`Config`]. It checks every
//! object, collects every error (it does not stop at the first), and never panics.

use std::collections::{BTreeMap, BTreeSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use k8s_openapi::api::core::v1::Secret;
use kube::ResourceExt;

mod advertisements;
mod last_good;
mod peers;
mod pools;
mod profiles;

use last_good::oldest_first;
pub use last_good::{Built, LastGood};

use super::error::{ConfigError, ConfigErrors, Kind, MAX_NAME_LEN, ObjectRef, Reason, clip};
use super::model::*;
use super::parse;
use crate::api::{self, LabelSelector, bfdprofile};
use crate::selector::Selector;

/// Hold time when neither holdTime nor keepaliveTime is set (RFC 4271's suggestion).
pub const DEFAULT_HOLD_TIME: Duration = Duration::from_secs(90);
/// First connect-retry interval when connectTime is unset; the speaker backs off from it.
pub const DEFAULT_CONNECT_TIME: Duration = Duration::from_secs(5);

/// Everything the config is made of, as read from the API server or from files.
#[derive(Clone, Debug, Default)]
pub struct RawConfig {
    /// IPAddressPools.
    pub pools: Vec<api::IPAddressPool>,
    /// L2Advertisements.
    pub l2_advertisements: Vec<api::L2Advertisement>,
    /// BGPAdvertisements.
    pub bgp_advertisements: Vec<api::BGPAdvertisement>,
    /// BGPPeers.
    pub peers: Vec<api::BGPPeer>,
    /// BFDProfiles.
    pub bfd_profiles: Vec<api::BFDProfile>,
    /// Communities.
    pub communities: Vec<api::Community>,
    /// Secrets that BGPPeers may refer to.
    pub secrets: Vec<Secret>,
}

/// Validates `raw` as a whole and returns the [`Config`], or every error found. Strict: one
/// invalid object refuses everything. The components use [`LastGood`], which refuses each invalid
/// object on its own; this is the same checks, for tools and tests that want them all at once.
pub fn build(raw: &RawConfig) -> Result<Config, ConfigErrors> {
    let mut raw = raw.clone();
    oldest_first(&mut raw, &RawConfig::default());
    let round = Builder::run(&raw);
    if round.errors.is_empty() {
        Ok(round.config)
    } else {
        Err(ConfigErrors(round.errors))
    }
}

/// One pass of every check over a set of objects.
struct Round {
    config: Config,
    errors: Vec<ConfigError>,
    notes: Vec<ConfigError>,
}

#[derive(Default)]
struct Builder {
    errors: Vec<ConfigError>,
    notes: Vec<ConfigError>,
}

fn object_ref<K: kube::Resource>(kind: Kind, obj: &K) -> ObjectRef {
    ObjectRef {
        kind,
        namespace: obj.meta().namespace.clone(),
        name: obj.meta().name.clone().unwrap_or_default(),
    }
}

impl Builder {
    /// Every check over `raw`, whose kinds are sorted oldest first.
    fn run(raw: &RawConfig) -> Round {
        let mut b = Builder::default();
        let pools = b.pools(&raw.pools);
        let bfd_profiles = b.bfd_profiles(&raw.bfd_profiles);
        let aliases = b.community_aliases(&raw.communities);
        let peers = b.peers(&raw.peers, &bfd_profiles, &raw.secrets);
        let l2_advertisements = b.l2_advertisements(&raw.l2_advertisements, &pools);
        let bgp_advertisements =
            b.bgp_advertisements(&raw.bgp_advertisements, &pools, &peers, &aliases);
        b.errors
            .sort_by(|x, y| (&x.object, &x.field).cmp(&(&y.object, &y.field)));
        Round {
            config: Config {
                pools,
                l2_advertisements,
                bgp_advertisements,
                peers,
                bfd_profiles,
            },
            errors: b.errors,
            notes: b.notes,
        }
    }

    fn note(&mut self, object: &ObjectRef, field: impl Into<String>, reason: Reason) {
        let field: String = field.into();
        self.notes.push(ConfigError {
            object: object.clone(),
            field: clip(&field),
            reason: reason.clipped(),
        });
    }

    fn error(&mut self, object: &ObjectRef, field: impl Into<String>, reason: Reason) {
        let field: String = field.into();
        self.errors.push(ConfigError {
            object: object.clone(),
            field: clip(&field),
            reason: reason.clipped(),
        });
    }

    /// Keeps objects with a name that no earlier object of the kind has; reports the others.
    fn unique_names<'a, K: kube::Resource>(
        &mut self,
        kind: Kind,
        objects: &'a [K],
    ) -> Vec<(ObjectRef, &'a K)> {
        let mut seen = BTreeSet::new();
        let mut kept = Vec::new();
        for obj in objects {
            let r = object_ref(kind, obj);
            if r.name.is_empty() {
                self.error(&r, "metadata.name", Reason::MissingName);
            } else if r.name.len() > MAX_NAME_LEN {
                let len = r.name.len();
                self.error(&r, "metadata.name", Reason::NameTooLong { len });
            } else if !seen.insert(r.name.clone()) {
                self.error(&r, "metadata.name", Reason::DuplicateName { kind });
            } else {
                kept.push((r, obj));
            }
        }
        kept
    }

    fn selectors(
        &mut self,
        object: &ObjectRef,
        field: &str,
        selectors: &[LabelSelector],
    ) -> Vec<Selector> {
        let mut compiled = Vec::new();
        let mut seen = BTreeSet::new();
        for (i, s) in selectors.iter().enumerate() {
            // The same selector twice, or a value twice in one expression: a slip that matches
            // the same as once, refused as MetalLB refuses it.
            let text = serde_json::to_string(s).unwrap_or_default();
            if !seen.insert(text.clone()) {
                self.error(
                    object,
                    format!("{field}[{i}]"),
                    Reason::Duplicate { value: text },
                );
            }
            for (j, e) in s.match_expressions.iter().flatten().enumerate() {
                let mut values = BTreeSet::new();
                for v in e.values.iter().flatten() {
                    if !values.insert(v) {
                        self.error(
                            object,
                            format!("{field}[{i}].matchExpressions[{j}].values"),
                            Reason::Duplicate { value: v.clone() },
                        );
                    }
                }
            }
            match Selector::compile(s) {
                Ok(s) => compiled.push(s),
                Err(e) => self.error(object, format!("{field}[{i}]"), Reason::InvalidSelector(e)),
            }
        }
        compiled
    }

    fn no_duplicates(
        &mut self,
        object: &ObjectRef,
        field: &str,
        values: &[String],
    ) -> BTreeSet<String> {
        let mut set = BTreeSet::new();
        for (i, v) in values.iter().enumerate() {
            if !set.insert(v.clone()) {
                self.error(
                    object,
                    format!("{field}[{i}]"),
                    Reason::Duplicate { value: v.clone() },
                );
            }
        }
        set
    }

    pub(super) fn ip(&mut self, r: &ObjectRef, field: &str, text: &str) -> Option<IpAddr> {
        match text.parse() {
            Ok(ip) => Some(ip),
            Err(_) => {
                self.error(
                    r,
                    field,
                    Reason::InvalidIp {
                        value: text.to_string(),
                        expected: "an IP address",
                    },
                );
                None
            }
        }
    }

    /// A BGP timer: a duration that is a whole number of seconds from `min_secs` to 65535.
    pub(super) fn whole_seconds(
        &mut self,
        r: &ObjectRef,
        field: &str,
        text: &str,
        min_secs: u64,
    ) -> Option<Duration> {
        let d = match parse::duration(text) {
            Ok(d) => d,
            Err(reason) => {
                self.error(r, field, reason);
                return None;
            }
        };
        if d.subsec_nanos() != 0 || d.as_secs() < min_secs || d.as_secs() > 65535 {
            self.error(
                r,
                field,
                Reason::TimerNotWholeSeconds {
                    value: text.to_string(),
                    min_secs,
                },
            );
            return None;
        }
        Some(d)
    }
}
