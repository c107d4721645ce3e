//! BGPPeers: addresses, ASNs, timers, passwords (inline or from Secrets), BFD profile.

use super::*;

impl Builder {
    pub(super) fn peers(
        &mut self,
        raw: &[api::BGPPeer],
        bfd_profiles: &BTreeMap<String, BfdProfile>,
        secrets: &[Secret],
    ) -> BTreeMap<String, Peer> {
        let mut peers: BTreeMap<String, Peer> = BTreeMap::new();
        // (address, port, node selectors as given) -> peer name, to find duplicates.
        let mut sessions: BTreeMap<(PeerAddress, u16, String), String> = BTreeMap::new();
        for (r, obj) in self.unique_names(Kind::BGPPeer, raw) {
            let s = &obj.spec;
            let before = self.errors.len();
            let named = [("spec.myASN", Some(s.my_asn)), ("spec.peerASN", s.peer_asn)];
            for (field, asn) in named.into_iter().filter_map(|(f, a)| Some((f, a?))) {
                if asn == 0 || asn == u32::MAX {
                    self.error(&r, field, Reason::ReservedAsn { asn });
                }
            }
            let peer_asn = match (s.peer_asn, s.dynamic_asn) {
                (Some(asn), None) => PeerAsn::Is(asn),
                (None, Some(api::DynamicAsn::Internal)) => PeerAsn::Internal,
                (None, Some(api::DynamicAsn::External)) => PeerAsn::External,
                (Some(_), Some(_)) | (None, None) => {
                    let both = s.peer_asn.is_some();
                    self.error(&r, "spec.peerASN", Reason::PeerAsnChoice { both });
                    PeerAsn::Internal
                }
            };
            let address = match (&s.peer_address, &s.interface) {
                (Some(a), None) => self.ip(&r, "spec.peerAddress", a).map(PeerAddress::Ip),
                (None, Some(name)) => {
                    if !parse::is_interface_name(name) {
                        let value = name.clone();
                        self.error(&r, "spec.interface", Reason::InvalidInterface { value });
                    }
                    self.unnumbered_limits(&r, s);
                    Some(PeerAddress::Interface(name.clone()))
                }
                (Some(_), Some(_)) | (None, None) => {
                    let both = s.peer_address.is_some();
                    self.error(&r, "spec.peerAddress", Reason::PeerAddressChoice { both });
                    None
                }
            };
            let port = s
                .peer_port
                .unwrap_or(api::bgppeer::DEFAULT_PEER_PORT.into());
            if !(1..=65535).contains(&port) {
                self.error(
                    &r,
                    "spec.peerPort",
                    Reason::OutOfRange {
                        value: port.into(),
                        min: 1,
                        max: 65535,
                    },
                );
            }
            let source_address = s
                .source_address
                .as_ref()
                .and_then(|a| self.ip(&r, "spec.sourceAddress", a));
            if let (Some(src), Some(PeerAddress::Ip(dst))) = (source_address, &address)
                && src.is_ipv4() != dst.is_ipv4()
            {
                self.error(
                    &r,
                    "spec.sourceAddress",
                    Reason::SourceFamilyMismatch {
                        source_address: src.to_string(),
                        peer_address: dst.to_string(),
                    },
                );
            }
            let router_id = s
                .router_id
                .as_ref()
                .and_then(|id| match id.parse::<Ipv4Addr>() {
                    Ok(id) => Some(id),
                    Err(_) => {
                        self.error(
                            &r,
                            "spec.routerID",
                            Reason::InvalidIp {
                                value: id.clone(),
                                expected: "an IPv4 address",
                            },
                        );
                        None
                    }
                });
            let (hold_time, keepalive_time) =
                self.timers(&r, s.hold_time.as_deref(), s.keepalive_time.as_deref());
            let connect_time = match s.connect_time.as_deref() {
                None => DEFAULT_CONNECT_TIME,
                Some(text) => self
                    .whole_seconds(&r, "spec.connectTime", text, 1)
                    .unwrap_or(DEFAULT_CONNECT_TIME),
            };
            let password = self.password(&r, obj, secrets);
            if s.ebgp_multi_hop == Some(true) && peer_asn.is_ibgp(s.my_asn) {
                self.error(
                    &r,
                    "spec.ebgpMultiHop",
                    Reason::EbgpMultiHopOnIbgp { asn: s.my_asn },
                );
            }
            if s.bfd_profile.is_some() && s.vrf.is_some() {
                self.error(
                    &r,
                    "spec.bfdProfile",
                    Reason::NotSupported {
                        why: "BFD for a peer in a VRF is not supported yet",
                    },
                );
            }
            if let Some(name) = &s.bfd_profile
                && !bfd_profiles.contains_key(name)
            {
                self.error(
                    &r,
                    "spec.bfdProfile",
                    Reason::UnknownReference {
                        kind: Kind::BFDProfile,
                        name: name.clone(),
                    },
                );
            }
            if let Some(vrf) = &s.vrf
                && !parse::is_interface_name(vrf)
            {
                self.error(
                    &r,
                    "spec.vrf",
                    Reason::InvalidInterface { value: vrf.clone() },
                );
            }
            let node_selectors = self.selectors(&r, "spec.nodeSelectors", &s.node_selectors);
            if let Some(address) = &address {
                // One address in two VRFs is two routers.
                let key = (
                    address.clone(),
                    port as u16,
                    serde_json::to_string(&(&s.node_selectors, &s.vrf)).unwrap_or_default(),
                );
                if let Some(other) = sessions.get(&key) {
                    self.error(
                        &r,
                        "spec.peerAddress",
                        Reason::DuplicatePeer {
                            other: other.clone(),
                            address: address.to_string(),
                            port: port as u16,
                        },
                    );
                } else {
                    sessions.insert(key, r.name.clone());
                }
            }
            if self.errors.len() > before {
                continue;
            }
            let (Some(address), Ok(port)) = (address, u16::try_from(port)) else {
                continue;
            };
            peers.insert(
                r.name.clone(),
                Peer {
                    name: r.name.clone(),
                    my_asn: s.my_asn,
                    peer_asn,
                    address,
                    port,
                    source_address,
                    hold_time,
                    keepalive_time,
                    connect_time,
                    router_id,
                    node_selectors,
                    password,
                    bfd_profile: s.bfd_profile.clone(),
                    graceful_restart: s.enable_graceful_restart.unwrap_or(false),
                    ebgp_multihop: s.ebgp_multi_hop.unwrap_or(false),
                    dual_stack: s.dual_stack_address_family.unwrap_or(false),
                    vrf: s.vrf.clone(),
                },
            );
        }
        peers
    }

    /// Hold and keepalive, each derived from the other when only one is set (hold = 3 x keepalive).
    pub(super) fn timers(
        &mut self,
        r: &ObjectRef,
        hold: Option<&str>,
        keepalive: Option<&str>,
    ) -> (Duration, Duration) {
        let hold = hold.map(|t| self.whole_seconds(r, "spec.holdTime", t, 0));
        let keepalive = keepalive.map(|t| self.whole_seconds(r, "spec.keepaliveTime", t, 0));
        let (hold, keepalive) = match (hold, keepalive) {
            (Some(None), _) | (_, Some(None)) => return (DEFAULT_HOLD_TIME, DEFAULT_HOLD_TIME / 3),
            (None, None) => (DEFAULT_HOLD_TIME, DEFAULT_HOLD_TIME / 3),
            (Some(Some(h)), None) => (h, Duration::from_secs(h.as_secs() / 3)),
            (None, Some(Some(k))) => (k.saturating_mul(3), k),
            (Some(Some(h)), Some(Some(k))) => (h, k),
        };
        if !hold.is_zero() && hold < Duration::from_secs(3) {
            self.error(r, "spec.holdTime", Reason::HoldTimeTooShort { hold });
        } else if hold.as_secs() > 65535 {
            self.error(
                r,
                "spec.keepaliveTime",
                Reason::TimerNotWholeSeconds {
                    value: format!("{}s (3 x keepaliveTime)", hold.as_secs()),
                    min_secs: 0,
                },
            );
        }
        if keepalive > hold {
            self.error(
                r,
                "spec.keepaliveTime",
                Reason::KeepaliveExceedsHold { keepalive, hold },
            );
        }
        (hold, keepalive)
    }

    pub(super) fn password(
        &mut self,
        r: &ObjectRef,
        peer: &api::BGPPeer,
        secrets: &[Secret],
    ) -> Option<String> {
        let s = &peer.spec;
        let password = match (&s.password, &s.password_secret) {
            (Some(_), Some(_)) => {
                self.error(r, "spec.passwordSecret", Reason::PasswordConflict);
                return None;
            }
            (None, None) => return None,
            (Some(p), None) => p.clone(),
            (None, Some(reference)) => {
                let namespace = reference
                    .namespace
                    .clone()
                    .or_else(|| peer.metadata.namespace.clone())
                    .unwrap_or_default();
                let problem = |problem: &str| Reason::BadSecret {
                    namespace: namespace.clone(),
                    name: reference.name.clone(),
                    problem: problem.to_string(),
                };
                let secret = secrets.iter().find(|sec| {
                    sec.metadata.name.as_deref() == Some(reference.name.as_str())
                        && sec.metadata.namespace.clone().unwrap_or_default() == namespace
                });
                let Some(secret) = secret else {
                    self.error(r, "spec.passwordSecret", problem("not found"));
                    return None;
                };
                if secret.type_.as_deref() != Some("kubernetes.io/basic-auth") {
                    let found = secret.type_.clone().unwrap_or_else(|| "Opaque".into());
                    self.error(
                        r,
                        "spec.passwordSecret",
                        problem(&format!(
                            "type is {found:?}, want \"kubernetes.io/basic-auth\""
                        )),
                    );
                    return None;
                }
                let value = secret
                    .data
                    .as_ref()
                    .and_then(|d| d.get("password"))
                    .map(|b| String::from_utf8(b.0.clone()).map_err(|_| ()))
                    .or_else(|| {
                        secret
                            .string_data
                            .as_ref()
                            .and_then(|d| d.get("password"))
                            .cloned()
                            .map(Ok)
                    });
                match value {
                    None => {
                        self.error(r, "spec.passwordSecret", problem("has no \"password\" key"));
                        return None;
                    }
                    Some(Err(())) => {
                        self.error(
                            r,
                            "spec.passwordSecret",
                            problem("\"password\" is not UTF-8 text"),
                        );
                        return None;
                    }
                    Some(Ok(p)) => p,
                }
            }
        };
        if !(1..=80).contains(&password.len()) {
            let field = if s.password.is_some() {
                "spec.password"
            } else {
                "spec.passwordSecret"
            };
            self.error(
                r,
                field,
                Reason::PasswordLength {
                    len: password.len(),
                },
            );
            return None;
        }
        Some(password)
    }
}

/// A peer that exists but was refused is not also "unknown": its own errors say why.
pub(super) fn peer_was_refused(name: &str, errors: &[ConfigError]) -> bool {
    errors
        .iter()
        .any(|e| e.object.kind == Kind::BGPPeer && e.object.name == name)
}

impl Builder {
    /// What an unnumbered session does not take: a source address or multi-hop (it is one
    /// link-local hop by nature), and, not yet, a password or a VRF.
    fn unnumbered_limits(&mut self, r: &ObjectRef, s: &api::BGPPeerSpec) {
        let refuse = [
            (
                s.source_address.is_some(),
                "spec.sourceAddress",
                "the session's link-local address is its source",
            ),
            (
                s.ebgp_multi_hop == Some(true),
                "spec.ebgpMultiHop",
                "an unnumbered peer is one link away",
            ),
            (
                s.password.is_some() || s.password_secret.is_some(),
                "spec.password",
                "TCP MD5 over link-local addresses is not supported yet",
            ),
            (
                s.vrf.is_some(),
                "spec.vrf",
                "an unnumbered session in a VRF is not supported yet",
            ),
            (
                s.dual_stack_address_family == Some(true),
                "spec.dualStackAddressFamily",
                "an unnumbered session carries both families already",
            ),
            (
                s.bfd_profile.is_some(),
                "spec.bfdProfile",
                "BFD over an unnumbered session is not supported yet",
            ),
        ];
        for (set, field, why) in refuse {
            if set {
                self.error(r, field, Reason::NotWithInterface { why });
            }
        }
    }
}
