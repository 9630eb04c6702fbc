//! A stream's per-type state: what it subscribed to ([`Subscription`], by
//! the wildcard and named rules of state-of-the-world and delta xDS), what
//! was sent, ACKed and NACKed ([`TypeState`]), and the resources picked for a
//! response ([`Picked`]).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::google::protobuf::Any;

use super::snapshot::{ResourceType, Snapshot};

/// What a stream subscribed to for one type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Subscription {
    Wildcard,
    Named(Arc<BTreeSet<String>>),
}

impl Subscription {
    /// State of the world: the subscription after a request, given the one
    /// before (if any).
    pub(super) fn after(previous: Option<&Subscription>, names: &[String]) -> Subscription {
        if names.iter().any(|n| n == "*") {
            return Subscription::Wildcard;
        }
        match previous {
            None | Some(Subscription::Wildcard) if names.is_empty() => Subscription::Wildcard,
            _ => Subscription::Named(Arc::new(names.iter().cloned().collect())),
        }
    }

    /// Delta: the subscription after a request that subscribes and
    /// unsubscribes names, given the one before (`None`: the type's first
    /// request, where no names at all means wildcard).
    pub(super) fn after_delta(
        previous: Option<&Subscription>,
        subscribe: &[String],
        unsubscribe: &[String],
    ) -> Subscription {
        let star = |names: &[String]| names.iter().any(|n| n == "*");
        let named = |names: &[String]| -> BTreeSet<String> {
            names.iter().filter(|n| *n != "*").cloned().collect()
        };
        match previous {
            None if subscribe.is_empty() || star(subscribe) => Subscription::Wildcard,
            None => Subscription::Named(Arc::new(named(subscribe))),
            Some(Subscription::Wildcard) if star(unsubscribe) => {
                Subscription::Named(Arc::new(named(subscribe)))
            }
            Some(Subscription::Wildcard) => Subscription::Wildcard,
            Some(Subscription::Named(_)) if star(subscribe) => Subscription::Wildcard,
            Some(Subscription::Named(names)) => {
                let mut names = (**names).clone();
                names.extend(named(subscribe));
                for n in unsubscribe {
                    names.remove(n);
                }
                Subscription::Named(Arc::new(names))
            }
        }
    }

    #[cfg(test)]
    pub(super) fn wants(&self, name: &str) -> bool {
        match self {
            Subscription::Wildcard => true,
            Subscription::Named(names) => names.contains(name),
        }
    }
}

/// One type's state on one stream.
#[derive(Debug)]
pub(super) struct TypeState {
    pub(super) subscription: Subscription,
    /// Snapshot version of the last response sent (without `+retiring`); in
    /// delta also a version whose resources equal what was last sent, for
    /// which no response was needed.
    pub(super) sent_version: Option<String>,
    /// Wire version and nonce of the last response sent.
    pub(super) sent_wire_version: String,
    pub(super) sent_nonce: Option<String>,
    /// Per resource name, the version Envoy has once it applies the last
    /// response sent (state of the world: the resources in it; delta: also
    /// what Envoy declared in `initial_resource_versions`).
    pub(super) have: BTreeMap<String, String>,
    /// Delta: names of the resources in the last response sent; on a NACK
    /// they are taken out of `have`, so the next push sends them again.
    pub(super) last_names: Vec<String>,
    /// The digest of the snapshot resources the last response was computed
    /// from, while the subscription is unchanged and nothing was NACKed: a
    /// snapshot with the same digest has nothing new for this stream, found
    /// without comparing resource by resource.
    pub(super) basis: Option<u64>,
    /// The last response sent has not been ACKed or NACKed yet.
    pub(super) outstanding: bool,
    /// Envoy NACKed the last response sent.
    pub(super) nacked: bool,
}

impl TypeState {
    pub(super) fn new(subscription: Subscription) -> Self {
        TypeState {
            subscription,
            sent_version: None,
            sent_wire_version: String::new(),
            sent_nonce: None,
            have: BTreeMap::new(),
            last_names: Vec::new(),
            basis: None,
            outstanding: false,
            nacked: false,
        }
    }

    /// Envoy ACKed the last response, which had snapshot version `version`.
    pub(super) fn acked(&self, version: &str) -> bool {
        self.sent_version.as_deref() == Some(version) && !self.outstanding && !self.nacked
    }
}

/// Resources of one type picked for a response, nothing copied until it goes
/// on the wire: a snapshot's resources (all, or the named ones), plus, for CDS,
/// clusters being retired, each with the older snapshot that holds it.
#[derive(Clone)]
pub(super) struct Picked {
    pub(super) kind: ResourceType,
    pub(super) from: Option<Arc<Snapshot>>,
    /// Only these names of `from` (`None`: all of them).
    pub(super) only: Option<Arc<BTreeSet<String>>>,
    pub(super) retired: BTreeMap<String, Arc<Snapshot>>,
}

impl Picked {
    pub(super) fn empty(kind: ResourceType) -> Self {
        Picked {
            kind,
            from: None,
            only: None,
            retired: BTreeMap::new(),
        }
    }

    /// Every picked name with the snapshot that holds it.
    pub(super) fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Snapshot>)> + '_ {
        let base = self.from.iter().flat_map(move |snap| {
            let items = &snap.resources(self.kind).items;
            let names: Box<dyn Iterator<Item = &String> + '_> = match &self.only {
                None => Box::new(items.keys()),
                Some(only) => Box::new(only.iter().filter(|n| items.contains_key(*n))),
            };
            names.map(move |n| (n, snap))
        });
        base.chain(self.retired.iter())
    }

    pub(super) fn contains(&self, name: &str) -> bool {
        self.retired.contains_key(name)
            || self.from.as_ref().is_some_and(|s| {
                s.resources(self.kind).items.contains_key(name)
                    && self.only.as_ref().is_none_or(|o| o.contains(name))
            })
    }
}

/// A picked resource's bytes and version in the snapshot that holds it.
pub(super) fn resource_in<'a>(
    kind: ResourceType,
    name: &str,
    from: &'a Snapshot,
) -> (Option<&'a Any>, &'a str) {
    let r = from.resources(kind);
    (
        r.items.get(name),
        r.versions.get(name).map_or("", String::as_str),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn delta_subscriptions_add_and_remove_names() {
        let wild = Subscription::after_delta(None, &[], &[]);
        assert_eq!(wild, Subscription::Wildcard);
        assert_eq!(
            Subscription::after_delta(None, &names(&["*"]), &[]),
            Subscription::Wildcard
        );
        // a later request without names keeps the wildcard
        assert_eq!(
            Subscription::after_delta(Some(&wild), &[], &[]),
            Subscription::Wildcard
        );
        let named = Subscription::after_delta(None, &names(&["a", "b"]), &[]);
        let named = Subscription::after_delta(Some(&named), &names(&["c"]), &names(&["a"]));
        assert!(!named.wants("a") && named.wants("b") && named.wants("c"));
        assert_eq!(
            Subscription::after_delta(Some(&named), &names(&["*"]), &[]),
            Subscription::Wildcard
        );
        let unwild = Subscription::after_delta(Some(&wild), &names(&["x"]), &names(&["*"]));
        assert!(unwild.wants("x") && !unwild.wants("y"));
    }

    #[test]
    fn subscriptions_follow_the_wildcard_rules() {
        let wild = Subscription::after(None, &[]);
        assert_eq!(wild, Subscription::Wildcard);
        assert_eq!(
            Subscription::after(Some(&wild), &[]),
            Subscription::Wildcard
        );
        let named = Subscription::after(None, &names(&["a"]));
        assert!(named.wants("a") && !named.wants("b"));
        assert_eq!(
            Subscription::after(Some(&named), &[]),
            Subscription::Named(Arc::default())
        );
        assert_eq!(
            Subscription::after(Some(&named), &names(&["*", "a"])),
            Subscription::Wildcard
        );
    }
}
