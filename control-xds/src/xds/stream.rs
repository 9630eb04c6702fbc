//! One ADS stream's task: it reads the client's requests and the cache's
//! snapshot watch, keeps the ACK/NACK bookkeeping per type, and writes
//! responses of either protocol, make-before-break: CDS and EDS are pushed
//! from the newest snapshot (the *target*), the types that route to clusters
//! (ECDS, LDS, RDS, in [`ResourceType::PUSH_ORDER`]) only once the target is
//! *routable* ([`AdsStream::progress`]); see [`super::server`] for the rules.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryResponse, DiscoveryResponse, Resource as DeltaResource,
};
use tokio::sync::watch;
use tokio_stream::{Stream, StreamExt};
use tonic::Status;

use super::cache::{Nack, Served, SnapshotCache};
use super::request::{Closed, Incoming, Names, Outgoing, Wire};
use super::snapshot::{ResourceType, Snapshot};
use super::subscription::{resource_in, Picked, Subscription, TypeState};
use crate::clock::now_unix_ms;

/// Nonces are unique across all streams, so a nonce from an earlier stream can
/// never match a response of a later one.
pub(super) static NEXT_NONCE: AtomicU64 = AtomicU64::new(1);

/// How long a new STRICT_DNS cluster is given to warm (its first resolution)
/// after Envoy ACKed it, before config that routes to it is sent. xDS does not
/// report DNS warming; clusters of IP endpoints (EDS) need no such wait.
pub const DNS_WARMUP: Duration = Duration::from_millis(500);

/// A wait for new DNS clusters to resolve before the target becomes routable.
pub(super) struct DnsHold {
    /// The target version the wait is for.
    pub(super) version: String,
    pub(super) until: Instant,
}

pub(super) struct AdsStream {
    pub(super) node: String,
    /// The environments this node serves (`None`: all).
    pub(super) scope: Option<BTreeSet<String>>,
    pub(super) cache: SnapshotCache,
    pub(super) wire: Wire,
    /// The newest snapshot: CDS and EDS are served from it. It changes only
    /// through the watch, so every new snapshot is pushed in order before any
    /// request sees it.
    pub(super) target: Option<Arc<Snapshot>>,
    /// The newest snapshot whose clusters this Envoy can use: ECDS, LDS and RDS
    /// are served from it.
    pub(super) routable: Option<Arc<Snapshot>>,
    pub(super) types: BTreeMap<ResourceType, TypeState>,
    /// Clusters in the last CDS response (delta: that Envoy has), to keep
    /// dropped ones until nothing routes to them.
    pub(super) sent_clusters: Picked,
    /// The last CDS response still carries clusters the target dropped.
    pub(super) retiring: bool,
    /// DNS clusters this Envoy has had [`DNS_WARMUP`] to resolve.
    pub(super) warm_dns: BTreeSet<String>,
    pub(super) dns_hold: Option<DnsHold>,
}

impl AdsStream {
    pub(super) async fn serve<S>(
        &mut self,
        first: Incoming,
        inbound: &mut S,
        snapshots: &mut watch::Receiver<Option<Arc<Served>>>,
    ) -> Result<(), Closed>
    where
        S: Stream<Item = Result<Incoming, Status>> + Unpin,
    {
        self.handle(first).await?;
        loop {
            let dns_deadline = self.dns_hold.as_ref().map(|h| h.until);
            tokio::select! {
                request = inbound.next() => match request {
                    Some(Ok(request)) => self.handle(request).await?,
                    None => return Ok(()),
                    Some(Err(status)) => {
                        tracing::debug!(node = %self.node, %status, "ADS stream error");
                        return Err(Closed);
                    }
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let served = snapshots.borrow_and_update().clone();
                    let snapshot = served.map(|s| s.for_scope(self.scope.as_ref()));
                    self.push(snapshot).await?;
                }
                () = sleep_until(dns_deadline) => self.progress().await?,
            }
        }
    }

    /// The snapshot `kind` is served from.
    pub(super) fn source(&self, kind: ResourceType) -> Option<Arc<Snapshot>> {
        if kind.routes_to_clusters() {
            self.routable.clone()
        } else {
            self.target.clone()
        }
    }

    /// Handles one discovery request: ACK/NACK bookkeeping, subscription
    /// changes, and a response if the client lacks the version it should have.
    pub(super) async fn handle(&mut self, request: Incoming) -> Result<(), Closed> {
        self.cache.touch(&self.node);
        let Some(kind) = ResourceType::from_type_url(&request.type_url) else {
            tracing::debug!(node = %self.node, type_url = %request.type_url, "ignoring unserved type");
            return Ok(());
        };
        let delta = matches!(request.names, Names::Change { .. });
        let known = self.types.contains_key(&kind);
        let answers = match self.types.get_mut(&kind) {
            Some(state) if !request.response_nonce.is_empty() => {
                if state.sent_nonce.as_deref() == Some(request.response_nonce.as_str()) {
                    true
                } else {
                    tracing::debug!(node = %self.node, %kind, nonce = %request.response_nonce, "stale nonce ignored");
                    if !delta {
                        return Ok(());
                    }
                    false
                }
            }
            _ => false,
        };
        if answers {
            self.answered(kind, &request);
        }
        // State of the world: a request without a nonce (re)starts the
        // subscription. Delta: only a type's first request does.
        let fresh = if delta {
            !known
        } else {
            !known || request.response_nonce.is_empty()
        };
        let previous = self.types.get(&kind).map(|s| s.subscription.clone());
        let subscription = match &request.names {
            Names::Replace(names) => {
                let basis = if fresh { None } else { previous.as_ref() };
                Subscription::after(basis, names)
            }
            Names::Change {
                subscribe,
                unsubscribe,
                ..
            } => Subscription::after_delta(previous.as_ref(), subscribe, unsubscribe),
        };
        let names_changed = previous.as_ref() != Some(&subscription);
        let state = self
            .types
            .entry(kind)
            .or_insert_with(|| TypeState::new(subscription.clone()));
        state.subscription = subscription;
        if names_changed {
            state.basis = None;
        }
        if let Names::Change {
            unsubscribe,
            initial_versions,
            ..
        } = request.names
        {
            for name in &unsubscribe {
                state.have.remove(name);
            }
            if fresh {
                state.have = initial_versions;
                state.basis = None;
            }
        }
        let sent_version = state.sent_version.clone();
        if let Some(snapshot) = self.source(kind) {
            let behind = sent_version.as_deref() != Some(snapshot.version(kind));
            if fresh || names_changed || behind {
                // a state-of-the-world request that changes names is answered
                // even when nothing changed; delta only answers what changed
                let forced = fresh || (names_changed && !delta);
                self.send(kind, &snapshot, forced).await?;
            }
        }
        self.progress().await
    }

    /// Records an ACK or NACK of the last response sent for `kind`.
    pub(super) fn answered(&mut self, kind: ResourceType, request: &Incoming) {
        let Some(state) = self.types.get_mut(&kind) else {
            return;
        };
        state.outstanding = false;
        state.nacked = request.error_detail.is_some();
        match &request.error_detail {
            None => {
                // The version sent with the nonce (delta ACKs carry none), or
                // a newer one whose resources are the same, not re-sent.
                self.cache
                    .record_ack(&self.node, kind, &state.sent_wire_version);
            }
            Some(error) => {
                // Envoy did not take them: the next push sends them again
                // (state of the world: the whole response).
                match self.wire {
                    Wire::Sotw(_) => state.have.clear(),
                    Wire::Delta(_) => {
                        for name in &state.last_names {
                            state.have.remove(name);
                        }
                    }
                }
                state.basis = None;
                tracing::warn!(node = %self.node, %kind, version = %state.sent_wire_version, message = %error.message, "NACK");
                self.cache.record_nack(
                    &self.node,
                    kind,
                    Nack {
                        version: state.sent_wire_version.clone(),
                        nonce: request.response_nonce.clone(),
                        message: error.message.clone(),
                        code: error.code,
                        at_unix_ms: now_unix_ms(),
                    },
                );
            }
        }
    }

    /// The resources of `kind` in `snapshot` this stream subscribed to.
    pub(super) fn selected(&self, kind: ResourceType, snapshot: &Arc<Snapshot>) -> Picked {
        let Some(state) = self.types.get(&kind) else {
            return Picked::empty(kind);
        };
        Picked {
            kind,
            from: Some(snapshot.clone()),
            only: match &state.subscription {
                Subscription::Wildcard => None,
                Subscription::Named(names) => Some(names.clone()),
            },
            retired: BTreeMap::new(),
        }
    }

    /// Sends `kind` from `snapshot`, keeping clusters being retired in CDS.
    /// `forced`: answered even when Envoy has everything (a new subscription).
    pub(super) async fn send(
        &mut self,
        kind: ResourceType,
        snapshot: &Arc<Snapshot>,
        forced: bool,
    ) -> Result<(), Closed> {
        let version = snapshot.version(kind).to_string();
        let digest = snapshot.resources(kind).digest;
        let retiring = kind == ResourceType::Cluster && self.retiring;
        if let Some(state) = self.types.get_mut(&kind) {
            let same = state.basis == Some(digest) && !retiring;
            if same && !forced && !state.nacked && state.sent_nonce.is_some() {
                state.sent_version = Some(version.clone());
                state.sent_wire_version = version.clone();
                if !state.outstanding {
                    self.cache.record_ack(&self.node, kind, &version);
                }
                return Ok(());
            }
        }
        let mut resources = self.selected(kind, snapshot);
        let mut wire_version = version.clone();
        if kind == ResourceType::Cluster {
            let dropped: BTreeMap<String, Arc<Snapshot>> = self
                .sent_clusters
                .iter()
                .filter(|(name, _)| !resources.contains(name))
                .map(|(name, from)| (name.clone(), from.clone()))
                .collect();
            self.retiring = !dropped.is_empty();
            if self.retiring {
                wire_version = format!("{version}+retiring");
                resources.retired = dropped;
            }
        }
        self.respond(kind, version, wire_version, &resources, forced)
            .await?;
        if kind == ResourceType::Cluster {
            self.sent_clusters = resources;
        }
        if !self.retiring || kind != ResourceType::Cluster {
            if let Some(state) = self.types.get_mut(&kind) {
                state.basis = (!state.nacked).then_some(digest);
            }
        }
        Ok(())
    }

    /// Records, then writes, one response. State of the world: every resource
    /// picked. Delta: those whose version Envoy lacks, and (wildcard types) the
    /// names it has that were not picked as removed. When the response would
    /// change nothing Envoy has (state of the world: the same resources at the
    /// same versions as the last response; delta: nothing to add, change or
    /// remove) and it is not `forced`, nothing is written: Envoy already has
    /// this version's resources and counts as at `version` once its last
    /// response of the type is ACKed.
    pub(super) async fn respond(
        &mut self,
        kind: ResourceType,
        version: String,
        wire_version: String,
        resources: &Picked,
        forced: bool,
    ) -> Result<(), Closed> {
        let Some(state) = self.types.get_mut(&kind) else {
            return Ok(());
        };
        let delta = matches!(self.wire, Wire::Delta(_));
        let changed: Vec<(&String, &Arc<Snapshot>)> = resources
            .iter()
            .filter(|(name, from)| {
                state.have.get(*name).map(String::as_str) != Some(resource_in(kind, name, from).1)
            })
            .collect();
        let removed: Vec<String> = if !delta || state.subscription == Subscription::Wildcard {
            state
                .have
                .keys()
                .filter(|name| !resources.contains(name))
                .cloned()
                .collect()
        } else {
            Vec::new()
        };
        let unchanged = changed.is_empty() && removed.is_empty();
        if unchanged && !forced && !state.nacked && state.sent_nonce.is_some() {
            state.sent_version = Some(version);
            state.sent_wire_version = wire_version.clone();
            if !state.outstanding && !state.nacked {
                self.cache.record_ack(&self.node, kind, &wire_version);
            }
            tracing::debug!(node = %self.node, %kind, version = %wire_version, "nothing changed");
            return Ok(());
        }
        let nonce = NEXT_NONCE.fetch_add(1, Ordering::Relaxed).to_string();
        let count;
        let message = if delta {
            let message = DeltaDiscoveryResponse {
                system_version_info: wire_version.clone(),
                resources: changed
                    .iter()
                    .map(|(name, from)| {
                        let (any, version) = resource_in(kind, name, from);
                        DeltaResource {
                            name: (*name).clone(),
                            version: version.to_string(),
                            resource: any.cloned(),
                            ..Default::default()
                        }
                    })
                    .collect(),
                type_url: kind.type_url().to_string(),
                removed_resources: removed.clone(),
                nonce: nonce.clone(),
                ..Default::default()
            };
            state.last_names = changed.iter().map(|(n, _)| (*n).clone()).collect();
            for r in &message.resources {
                state.have.insert(r.name.clone(), r.version.clone());
            }
            for name in &removed {
                state.have.remove(name);
            }
            count = message.resources.len();
            Outgoing::Delta(message)
        } else {
            for (name, from) in &changed {
                let version = resource_in(kind, name, from).1.to_string();
                state.have.insert((*name).clone(), version);
            }
            for name in &removed {
                state.have.remove(name);
            }
            let mut picked: Vec<(&String, &Arc<Snapshot>)> = resources.iter().collect();
            if !resources.retired.is_empty() {
                picked.sort_by(|a, b| a.0.cmp(b.0));
            }
            count = picked.len();
            Outgoing::Sotw(DiscoveryResponse {
                version_info: wire_version.clone(),
                resources: picked
                    .iter()
                    .filter_map(|(name, from)| resource_in(kind, name, from).0.cloned())
                    .collect(),
                type_url: kind.type_url().to_string(),
                nonce: nonce.clone(),
                ..Default::default()
            })
        };
        state.sent_version = Some(version);
        state.sent_wire_version = wire_version.clone();
        state.sent_nonce = Some(nonce.clone());
        state.outstanding = true;
        state.nacked = false;
        self.cache
            .record_sent(&self.node, kind, &wire_version, &nonce);
        tracing::debug!(node = %self.node, %kind, version = %wire_version, %nonce, count, "sending");
        let sent = match (&self.wire, message) {
            (Wire::Sotw(tx), Outgoing::Sotw(m)) => tx.send(Ok(m)).await.is_ok(),
            (Wire::Delta(tx), Outgoing::Delta(m)) => tx.send(Ok(m)).await.is_ok(),
            _ => false,
        };
        if sent {
            Ok(())
        } else {
            Err(Closed)
        }
    }

    // Make-before-break: CDS and EDS from the target; the types that route
    // to clusters (ECDS, LDS, RDS) once the target is routable.

    /// Pushes a new target: CDS and EDS now, the rest once it is routable.
    pub(super) async fn push(&mut self, snapshot: Option<Arc<Snapshot>>) -> Result<(), Closed> {
        self.target = snapshot;
        let Some(target) = self.target.clone() else {
            return Ok(());
        };
        self.send_behind(&[ResourceType::Cluster, ResourceType::Endpoint], &target)
            .await?;
        self.progress().await
    }

    /// Sends each of `kinds` this stream subscribed to and was not sent at
    /// `snapshot`'s version, in the order given.
    pub(super) async fn send_behind(
        &mut self,
        kinds: &[ResourceType],
        snapshot: &Arc<Snapshot>,
    ) -> Result<(), Closed> {
        for &kind in kinds {
            let behind = self
                .types
                .get(&kind)
                .is_some_and(|s| s.sent_version.as_deref() != Some(snapshot.version(kind)));
            if behind {
                self.send(kind, snapshot, false).await?;
            }
        }
        Ok(())
    }

    /// Makes the target routable once its clusters are, sends the types that
    /// route to clusters, and retires dropped clusters once nothing uses them.
    pub(super) async fn progress(&mut self) -> Result<(), Closed> {
        let Some(target) = self.target.clone() else {
            return Ok(());
        };
        let routable_version = self
            .routable
            .as_ref()
            .map(|r| r.version(ResourceType::Cluster));
        if routable_version != Some(target.version(ResourceType::Cluster))
            && self.clusters_ready(&target)
        {
            tracing::debug!(node = %self.node, version = %target.version(ResourceType::Cluster), "clusters ready: routable");
            self.routable = Some(target.clone());
            let routing: Vec<ResourceType> = ResourceType::PUSH_ORDER
                .into_iter()
                .filter(|k| k.routes_to_clusters())
                .collect();
            self.send_behind(&routing, &target).await?;
        }
        self.finish_retiring().await
    }

    /// Whether this Envoy can use every cluster of `target`: it ACKed the
    /// target's CDS and an EDS response carrying each of its EDS clusters, and
    /// new DNS clusters have had [`DNS_WARMUP`]. A stream that never subscribed
    /// to CDS has nothing to wait for.
    pub(super) fn clusters_ready(&mut self, target: &Snapshot) -> bool {
        let Some(cds) = self.types.get(&ResourceType::Cluster) else {
            return true;
        };
        if !cds.acked(target.version(ResourceType::Cluster)) {
            return false;
        }
        let eds_names = &target.resources(ResourceType::Endpoint).items;
        if !eds_names.is_empty() {
            let Some(eds) = self.types.get(&ResourceType::Endpoint) else {
                return false;
            };
            if !eds.acked(target.version(ResourceType::Endpoint))
                || !eds_names.keys().all(|n| eds.have.contains_key(n))
            {
                return false;
            }
        }
        let new_dns: Vec<String> = target
            .resources(ResourceType::Cluster)
            .items
            .keys()
            .filter(|n| !eds_names.contains_key(*n) && !self.warm_dns.contains(*n))
            .cloned()
            .collect();
        if new_dns.is_empty() {
            return true;
        }
        let version = target.version(ResourceType::Cluster);
        match &self.dns_hold {
            Some(hold) if hold.version == version && Instant::now() >= hold.until => {
                self.dns_hold = None;
                self.warm_dns.extend(new_dns);
                true
            }
            Some(hold) if hold.version == version => false,
            _ => {
                self.dns_hold = Some(DnsHold {
                    version: version.to_string(),
                    until: Instant::now() + DNS_WARMUP,
                });
                false
            }
        }
    }

    /// Sends the final CDS response (without dropped clusters; delta: their
    /// removal) once the target is routable and Envoy ACKed every type of it:
    /// nothing routes to the dropped clusters any more.
    pub(super) async fn finish_retiring(&mut self) -> Result<(), Closed> {
        if !self.retiring {
            return Ok(());
        }
        let (Some(target), Some(routable)) = (self.target.clone(), self.routable.clone()) else {
            return Ok(());
        };
        let settled = Arc::ptr_eq(&target, &routable)
            && self
                .types
                .iter()
                .all(|(kind, s)| s.acked(target.version(*kind)));
        if !settled {
            return Ok(());
        }
        self.retiring = false;
        let resources = self.selected(ResourceType::Cluster, &target);
        let version = target.version(ResourceType::Cluster).to_string();
        self.respond(
            ResourceType::Cluster,
            version.clone(),
            version,
            &resources,
            true,
        )
        .await?;
        self.sent_clusters = resources;
        if let Some(state) = self.types.get_mut(&ResourceType::Cluster) {
            state.basis = Some(target.resources(ResourceType::Cluster).digest);
        }
        Ok(())
    }
}

/// Completes at `deadline`, or never without one.
pub(super) async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}
