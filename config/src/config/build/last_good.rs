//! [`LastGood`]: the config model over time, where each object is accepted or refused on its
//! own and a refused object's last accepted version stays in force.

use super::*;

/// What [`LastGood::build`] made of one snapshot of the objects.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Built {
    /// The config in force: every valid object, and for each refused object its last accepted
    /// version, if it had one.
    pub config: Config,
    /// Why each refused object (as it is now) was refused. Empty when every object is accepted.
    pub errors: ConfigErrors,
    /// Refused objects whose last accepted version stays in force.
    pub kept: BTreeSet<ObjectRef>,
    /// Remarks on accepted objects: references to objects that do not exist yet.
    pub notes: Vec<ConfigError>,
}

impl Built {
    /// The refused objects, each once.
    pub fn refused(&self) -> BTreeSet<&ObjectRef> {
        self.errors.0.iter().map(|e| &e.object).collect()
    }

    /// What to say on `object`'s Valid condition: accepted (with any notes) or why not, and
    /// whether its last accepted version stays in force.
    pub fn verdict(&self, object: &ObjectRef) -> (bool, String) {
        let said = |list: &mut dyn Iterator<Item = &ConfigError>| -> Vec<String> {
            list.map(|e| format!("{}: {}", e.field, e.reason)).collect()
        };
        let problems = said(&mut self.errors.for_object(object));
        if problems.is_empty() {
            let notes = said(&mut self.notes.iter().filter(|n| &n.object == object));
            if notes.is_empty() {
                return (true, "accepted".into());
            }
            return (true, format!("accepted; {}", notes.join("; ")));
        }
        let effect = if self.kept.contains(object) {
            "its last accepted version stays in force"
        } else {
            "it is not in force"
        };
        (false, format!("{}; {effect}", problems.join("; ")))
    }
}

/// The config model over time: each object is accepted or refused on its own. A refused
/// object never freezes the others; its last accepted version (if any) stays in force, so a
/// typo in an edit takes nothing away; objects can come in any order and converge. Of two
/// objects in conflict (overlapping pools, the same peer twice), the one in force and
/// unchanged wins, then the older by creation time, then by name; a change that would make an
/// unchanged object invalid is refused instead of it. The last accepted version is this
/// value's memory, else the object's `status.acceptedSpec` (the controller writes it; a
/// standalone host keeps it in its state file, see [`RawConfig::with_accepted`]), so a
/// restarted controller, every speaker and a restarted host decide alike.
#[derive(Clone, Debug, Default)]
pub struct LastGood {
    /// The versions in force after the last build.
    in_force: RawConfig,
}

impl LastGood {
    /// The spec of every object in force, by kind and name: for a host that has no object
    /// status to keep them in (standalone), to give back with [`RawConfig::with_accepted`]
    /// after a restart.
    pub fn accepted_specs(&self) -> BTreeMap<(Kind, String), serde_json::Value> {
        let mut out = BTreeMap::new();
        let c = &self.in_force;
        specs_of(Kind::IPAddressPool, &c.pools, &mut out);
        specs_of(Kind::L2Advertisement, &c.l2_advertisements, &mut out);
        specs_of(Kind::BGPAdvertisement, &c.bgp_advertisements, &mut out);
        specs_of(Kind::BGPPeer, &c.peers, &mut out);
        specs_of(Kind::BFDProfile, &c.bfd_profiles, &mut out);
        specs_of(Kind::Community, &c.communities, &mut out);
        out
    }

    /// Builds the config from `raw`, refusing invalid objects one by one.
    pub fn build(&mut self, raw: &RawConfig) -> Built {
        let mut candidates = raw.clone();
        oldest_first(&mut candidates, &self.in_force);
        let mut errors: Vec<ConfigError> = Vec::new();
        let mut kept = BTreeSet::new();
        let mut substituted = BTreeSet::new();
        // Each round puts one object's last version back or leaves one out (an object can
        // take two rounds: put back, then out), so 2n + 1 rounds end it.
        for _ in 0..=2 * candidates.len() {
            let round = Builder::run(&candidates);
            if round.errors.is_empty() {
                self.in_force = candidates;
                errors.sort_by(|x, y| (&x.object, &x.field).cmp(&(&y.object, &y.field)));
                errors.dedup();
                return Built {
                    config: round.config,
                    errors: ConfigErrors(errors),
                    kept,
                    notes: round.notes,
                };
            }
            let refused: BTreeSet<ObjectRef> =
                round.errors.iter().map(|e| e.object.clone()).collect();
            // An object in force and unchanged is never the one to go while a change is
            // refused too: the change goes first, and the rest is judged again.
            let as_in_force =
                |o: &ObjectRef| substituted.contains(o) || candidates.unchanged(&self.in_force, o);
            let changed: BTreeSet<ObjectRef> = refused
                .iter()
                .filter(|o| !as_in_force(o))
                .cloned()
                .collect();
            let (out, said): (BTreeSet<ObjectRef>, Vec<ConfigError>) = if !changed.is_empty() {
                let said = (round.errors.into_iter())
                    .filter(|e| changed.contains(&e.object))
                    .map(|e| refused_reference(e, raw))
                    .collect();
                (changed, said)
            } else if let Some(change) = candidates.youngest_change(&self.in_force, &substituted) {
                // Only objects as they were in force are refused: a change elsewhere made
                // them so (an edited pool no longer fits an advertisement's aggregation, say).
                // The youngest change is taken back, and says why.
                let said = (round.errors.iter())
                    .map(|e| ConfigError {
                        object: change.clone(),
                        field: "spec".into(),
                        reason: Reason::BreaksOther {
                            other: e.object.clone(),
                            detail: clip(&format!("{}: {}", e.field, e.reason)),
                        },
                    })
                    .collect();
                (BTreeSet::from([change]), said)
            } else {
                // Nothing changed that could be taken back (a first build, or after a
                // restart): the refused objects go.
                let said = (round.errors.into_iter())
                    .filter(|e| !substituted.contains(&e.object))
                    .map(|e| refused_reference(e, raw))
                    .collect();
                (refused, said)
            };
            errors.extend(said);
            for object in out {
                let restored =
                    !substituted.contains(&object) && candidates.restore(&self.in_force, &object);
                if restored {
                    substituted.insert(object.clone());
                    kept.insert(object);
                } else {
                    candidates.remove(&object);
                    kept.remove(&object);
                }
            }
        }
        // Not reached (see the bound). Should it be, the last config in force stays.
        let config = Builder::run(&self.in_force).config;
        Built {
            config,
            errors: ConfigErrors(errors),
            kept: BTreeSet::new(),
            notes: Vec::new(),
        }
    }
}

/// Sorts each kind so that the builder, which lets the first of two conflicting objects win,
/// keeps what works: objects in force and unchanged first, then edited ones, then new ones;
/// within each, by creation time (objects without one, as in standalone files, after), then by
/// name. So an edit or a new object that conflicts is refused, never what it conflicts with.
pub(super) fn oldest_first(raw: &mut RawConfig, in_force: &RawConfig) {
    fn sort<K: Object>(objects: &mut [K], in_force: &[K]) {
        objects.sort_by_cached_key(|o| youth(o, in_force));
    }
    sort(&mut raw.pools, &in_force.pools);
    sort(&mut raw.l2_advertisements, &in_force.l2_advertisements);
    sort(&mut raw.bgp_advertisements, &in_force.bgp_advertisements);
    sort(&mut raw.peers, &in_force.peers);
    sort(&mut raw.bfd_profiles, &in_force.bfd_profiles);
    sort(&mut raw.communities, &in_force.communities);
}

impl RawConfig {
    /// How many config objects (not Secrets) there are.
    fn len(&self) -> usize {
        self.pools.len()
            + self.l2_advertisements.len()
            + self.bgp_advertisements.len()
            + self.peers.len()
            + self.bfd_profiles.len()
            + self.communities.len()
    }

    /// The objects, each with `status.acceptedSpec` set from `accepted` where it has none:
    /// what [`LastGood::accepted_specs`] said before a restart.
    pub fn with_accepted(
        &self,
        accepted: &BTreeMap<(Kind, String), serde_json::Value>,
    ) -> RawConfig {
        let mut c = self.clone();
        with_accepted(Kind::IPAddressPool, &mut c.pools, accepted);
        with_accepted(Kind::L2Advertisement, &mut c.l2_advertisements, accepted);
        with_accepted(Kind::BGPAdvertisement, &mut c.bgp_advertisements, accepted);
        with_accepted(Kind::BGPPeer, &mut c.peers, accepted);
        with_accepted(Kind::BFDProfile, &mut c.bfd_profiles, accepted);
        with_accepted(Kind::Community, &mut c.communities, accepted);
        c
    }

    /// Puts `object`'s version from `from` in place of its version here. Refuses (false) when
    /// `from` has none, when it is what is here already (it would be refused again), or when
    /// several objects here share its name (duplicates in standalone files).
    fn restore(&mut self, from: &RawConfig, object: &ObjectRef) -> bool {
        let name = object.name.as_str();
        match object.kind {
            Kind::IPAddressPool => restore(&mut self.pools, &from.pools, name),
            Kind::L2Advertisement => {
                restore(&mut self.l2_advertisements, &from.l2_advertisements, name)
            }
            Kind::BGPAdvertisement => {
                restore(&mut self.bgp_advertisements, &from.bgp_advertisements, name)
            }
            Kind::BGPPeer => restore(&mut self.peers, &from.peers, name),
            Kind::BFDProfile => restore(&mut self.bfd_profiles, &from.bfd_profiles, name),
            Kind::Community => restore(&mut self.communities, &from.communities, name),
            Kind::Secret => false,
        }
    }

    /// Whether `object` here has the content of its version in force.
    fn unchanged(&self, in_force: &RawConfig, object: &ObjectRef) -> bool {
        let name = object.name.as_str();
        match object.kind {
            Kind::IPAddressPool => unchanged(&self.pools, &in_force.pools, name),
            Kind::L2Advertisement => {
                unchanged(&self.l2_advertisements, &in_force.l2_advertisements, name)
            }
            Kind::BGPAdvertisement => {
                unchanged(&self.bgp_advertisements, &in_force.bgp_advertisements, name)
            }
            Kind::BGPPeer => unchanged(&self.peers, &in_force.peers, name),
            Kind::BFDProfile => unchanged(&self.bfd_profiles, &in_force.bfd_profiles, name),
            Kind::Community => unchanged(&self.communities, &in_force.communities, name),
            Kind::Secret => true,
        }
    }

    /// The youngest object that is new or edited (not yet taken back): new before edited, then
    /// the latest created, then the last by name.
    fn youngest_change(
        &self,
        in_force: &RawConfig,
        taken_back: &BTreeSet<ObjectRef>,
    ) -> Option<ObjectRef> {
        let mut changes = Vec::new();
        changes.extend(changes_of(
            Kind::IPAddressPool,
            &self.pools,
            &in_force.pools,
        ));
        changes.extend(changes_of(
            Kind::L2Advertisement,
            &self.l2_advertisements,
            &in_force.l2_advertisements,
        ));
        changes.extend(changes_of(
            Kind::BGPAdvertisement,
            &self.bgp_advertisements,
            &in_force.bgp_advertisements,
        ));
        changes.extend(changes_of(Kind::BGPPeer, &self.peers, &in_force.peers));
        changes.extend(changes_of(
            Kind::BFDProfile,
            &self.bfd_profiles,
            &in_force.bfd_profiles,
        ));
        changes.extend(changes_of(
            Kind::Community,
            &self.communities,
            &in_force.communities,
        ));
        changes
            .into_iter()
            .filter(|(_, o)| !taken_back.contains(o))
            .max_by(|a, b| a.0.cmp(&b.0))
            .map(|(_, o)| o)
    }

    /// Whether an object of `kind` is named `name`.
    fn has(&self, kind: Kind, name: &str) -> bool {
        match kind {
            Kind::IPAddressPool => !named(&self.pools, name).is_empty(),
            Kind::L2Advertisement => !named(&self.l2_advertisements, name).is_empty(),
            Kind::BGPAdvertisement => !named(&self.bgp_advertisements, name).is_empty(),
            Kind::BGPPeer => !named(&self.peers, name).is_empty(),
            Kind::BFDProfile => !named(&self.bfd_profiles, name).is_empty(),
            Kind::Community => !named(&self.communities, name).is_empty(),
            Kind::Secret => self
                .secrets
                .iter()
                .any(|s| s.metadata.name.as_deref() == Some(name)),
        }
    }

    /// Leaves `object` out.
    fn remove(&mut self, object: &ObjectRef) {
        let name = object.name.as_str();
        match object.kind {
            Kind::IPAddressPool => remove(&mut self.pools, name),
            Kind::L2Advertisement => remove(&mut self.l2_advertisements, name),
            Kind::BGPAdvertisement => remove(&mut self.bgp_advertisements, name),
            Kind::BGPPeer => remove(&mut self.peers, name),
            Kind::BFDProfile => remove(&mut self.bfd_profiles, name),
            Kind::Community => remove(&mut self.communities, name),
            Kind::Secret => {}
        }
    }
}

/// A reference to an object that exists but was refused says so, rather than "no such object".
fn refused_reference(mut e: ConfigError, raw: &RawConfig) -> ConfigError {
    // (A Community reference names an alias inside a Community object, not an object.)
    if let Reason::UnknownReference { kind, name } = &e.reason
        && *kind != Kind::Community
        && raw.has(*kind, name)
    {
        e.reason = Reason::RefusedReference {
            kind: *kind,
            name: name.clone(),
        };
    }
    e
}

/// A config object whose content (what the model reads: spec and labels) can be compared.
trait Object: kube::Resource + Clone {
    fn same_content(&self, other: &Self) -> bool;

    /// This object with the spec its status says was last accepted (`acceptedSpec`, written
    /// by the controller), if any: the last version of a process that has no memory of one.
    fn accepted(&self) -> Option<Self>;

    /// Its `status.acceptedSpec`, to set.
    fn accepted_spec_mut(&mut self) -> &mut Option<serde_json::Value>;

    /// Its spec, as JSON.
    fn spec_json(&self) -> Option<serde_json::Value>;
}

macro_rules! object {
    ($($kind:ty),*) => {
        $(impl Object for $kind {
            fn same_content(&self, other: &Self) -> bool {
                self.spec == other.spec && self.metadata.labels == other.metadata.labels
            }

            fn accepted(&self) -> Option<Self> {
                let spec = self.status.as_ref()?.accepted_spec.clone()?;
                let mut o = self.clone();
                o.spec = serde_json::from_value(spec).ok()?;
                Some(o)
            }

            fn accepted_spec_mut(&mut self) -> &mut Option<serde_json::Value> {
                &mut self.status.get_or_insert_with(Default::default).accepted_spec
            }

            fn spec_json(&self) -> Option<serde_json::Value> {
                serde_json::to_value(&self.spec).ok()
            }
        })*
    };
}

/// The last accepted version of `o`: the one in force in this process, else the one its
/// status records.
fn previous<K: Object>(o: &K, in_force: &[K]) -> Option<K> {
    let name = o.meta().name.as_deref();
    (in_force.iter())
        .find(|p| p.meta().name.as_deref() == name)
        .cloned()
        .or_else(|| o.accepted())
}

object!(
    api::IPAddressPool,
    api::L2Advertisement,
    api::BGPAdvertisement,
    api::BGPPeer,
    api::BFDProfile,
    api::Community
);

/// The positions of the objects named `name`.
fn named<K: kube::Resource>(objects: &[K], name: &str) -> Vec<usize> {
    (objects.iter().enumerate())
        .filter(|(_, o)| o.meta().name.as_deref().unwrap_or_default() == name)
        .map(|(i, _)| i)
        .collect()
}

fn restore<K: Object>(mine: &mut [K], from: &[K], name: &str) -> bool {
    match named(mine, name)[..] {
        [i] => match previous(&mine[i], from) {
            Some(previous) if !mine[i].same_content(&previous) => {
                mine[i] = previous;
                true
            }
            _ => false,
        },
        _ => false,
    }
}

/// Of several objects named `name`, leaves out the later ones (the oldest is judged on its
/// own in the next round); of one, that one.
fn remove<K: Object>(objects: &mut Vec<K>, name: &str) {
    let found = named(objects, name);
    let drop = match found[..] {
        [i] => vec![i],
        [_, ref later @ ..] => later.to_vec(),
        [] => Vec::new(),
    };
    for i in drop.into_iter().rev() {
        objects.remove(i);
    }
}

/// Whether the object named `name` here has its in-force content.
fn unchanged<K: Object>(mine: &[K], in_force: &[K], name: &str) -> bool {
    match named(mine, name).as_slice() {
        &[i] => previous(&mine[i], in_force).is_some_and(|p| mine[i].same_content(&p)),
        _ => false,
    }
}

/// How young an object is (greater: younger): its standing (0 in force and unchanged, 1
/// edited, 2 new), then creation time (none counts as the youngest), then name.
type Youth = (u8, bool, Option<k8s_openapi::jiff::Timestamp>, String);

fn youth<K: Object>(o: &K, in_force: &[K]) -> Youth {
    let m = o.meta();
    let standing = match previous(o, in_force) {
        Some(p) if p.same_content(o) => 0,
        Some(_) => 1,
        None => 2,
    };
    let created = m.creation_timestamp.as_ref().map(|t| t.0);
    let name = m.name.clone().unwrap_or_default();
    (standing, created.is_none(), created, name)
}

/// The objects of one kind that are new or edited, with their youth.
fn changes_of<K: Object>(kind: Kind, mine: &[K], in_force: &[K]) -> Vec<(Youth, ObjectRef)> {
    (mine.iter())
        .map(|o| (youth(o, in_force), object_ref(kind, o)))
        .filter(|((standing, ..), _)| *standing > 0)
        .collect()
}

/// The specs of `objects`, as JSON, into `out`.
fn specs_of<K: Object>(
    kind: Kind,
    objects: &[K],
    out: &mut BTreeMap<(Kind, String), serde_json::Value>,
) {
    for o in objects {
        if let (Some(name), Some(spec)) = (o.meta().name.clone(), o.spec_json()) {
            out.insert((kind, name), spec);
        }
    }
}

/// Sets each object's `status.acceptedSpec` from `accepted` where it has none.
fn with_accepted<K: Object>(
    kind: Kind,
    objects: &mut [K],
    accepted: &BTreeMap<(Kind, String), serde_json::Value>,
) {
    for o in objects {
        let name = o.meta().name.clone().unwrap_or_default();
        let slot = o.accepted_spec_mut();
        if slot.is_none() {
            *slot = accepted.get(&(kind, name)).cloned();
        }
    }
}
