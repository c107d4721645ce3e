//! BFDProfiles and Community aliases, which peers and advertisements refer to.

use super::*;

impl Builder {
    pub(super) fn bfd_profiles(&mut self, raw: &[api::BFDProfile]) -> BTreeMap<String, BfdProfile> {
        use bfdprofile::{defaults, limits};
        let mut profiles = BTreeMap::new();
        for (r, obj) in self.unique_names(Kind::BFDProfile, raw) {
            let s = &obj.spec;
            let mut field =
                |name: &str, value: Option<u32>, (min, max): (u32, u32), default: u32| {
                    let v = value.unwrap_or(default);
                    if !(min..=max).contains(&v) {
                        self.error(
                            &r,
                            format!("spec.{name}"),
                            Reason::OutOfRange {
                                value: v.into(),
                                min: min.into(),
                                max: max.into(),
                            },
                        );
                    }
                    v
                };
            let profile = BfdProfile {
                name: r.name.clone(),
                receive_interval_ms: field(
                    "receiveInterval",
                    s.receive_interval,
                    limits::INTERVAL_MS,
                    defaults::INTERVAL_MS,
                ),
                transmit_interval_ms: field(
                    "transmitInterval",
                    s.transmit_interval,
                    limits::INTERVAL_MS,
                    defaults::INTERVAL_MS,
                ),
                detect_multiplier: field(
                    "detectMultiplier",
                    s.detect_multiplier,
                    limits::DETECT_MULTIPLIER,
                    defaults::DETECT_MULTIPLIER,
                ),
                echo_interval_ms: field(
                    "echoInterval",
                    s.echo_interval,
                    limits::INTERVAL_MS,
                    defaults::ECHO_INTERVAL_MS,
                ),
                minimum_ttl: field(
                    "minimumTtl",
                    s.minimum_ttl,
                    limits::MINIMUM_TTL,
                    defaults::MINIMUM_TTL,
                ),
                echo_mode: s.echo_mode.unwrap_or(false),
                passive_mode: s.passive_mode.unwrap_or(false),
            };
            // No field accepted and then ignored: BFD runs in asynchronous mode only.
            if s.echo_mode == Some(true) {
                self.error(
                    &r,
                    "spec.echoMode",
                    Reason::NotSupported {
                        why: "ferrolb does not send BFD echo packets; the asynchronous mode detects a failure within receiveInterval x detectMultiplier",
                    },
                );
            }
            if s.echo_interval.is_some() {
                self.error(
                    &r,
                    "spec.echoInterval",
                    Reason::NotSupported {
                        why: "BFD echo is not run (see echoMode), so an echo interval would do nothing; remove it",
                    },
                );
            }
            profiles.insert(r.name.clone(), profile);
        }
        profiles
    }

    pub(super) fn community_aliases(
        &mut self,
        raw: &[api::Community],
    ) -> BTreeMap<String, CommunityValue> {
        let mut aliases = BTreeMap::new();
        for (r, obj) in self.unique_names(Kind::Community, raw) {
            for (i, alias) in obj.spec.communities.iter().enumerate() {
                let field = format!("spec.communities[{i}]");
                if alias.name.is_empty() {
                    self.error(&r, format!("{field}.name"), Reason::MissingName);
                    continue;
                }
                if aliases.contains_key(&alias.name) {
                    self.error(
                        &r,
                        format!("{field}.name"),
                        Reason::Duplicate {
                            value: alias.name.clone(),
                        },
                    );
                    continue;
                }
                match parse::community_literal(&alias.value) {
                    Ok(Some(value)) => {
                        aliases.insert(alias.name.clone(), value);
                    }
                    Ok(None) => self.error(
                        &r,
                        format!("{field}.value"),
                        Reason::InvalidCommunity {
                            value: alias.value.clone(),
                            detail: "an alias value must be 'a:b' or 'large:a:b:c'".into(),
                        },
                    ),
                    Err(reason) => self.error(&r, format!("{field}.value"), reason),
                }
            }
        }
        aliases
    }
}
