//! The Aggregated Discovery Service: state-of-the-world and delta xDS, one
//! gRPC stream per Envoy, one make-before-break ordering for both.
//!
//! Each stream runs as one task that owns its per-type state and reads both the
//! client's requests and the cache's snapshot watch, so its state has a single
//! writer. The rules followed (Envoy's xDS protocol):
//!
//! - Nonces and versions are per type. A request whose `response_nonce` is the
//!   last nonce sent for its type answers that response: an ACK if it has no
//!   `error_detail`, a NACK if it has one (NACKs are never inferred from
//!   versions). A request carrying an older nonce is stale and ignored. A
//!   request with an empty nonce (or for a type this stream never served)
//!   starts a subscription.
//! - `resource_names` are honoured: an empty list on a type's first request, or
//!   `"*"`, means wildcard (how Envoy subscribes to CDS and LDS); named
//!   subscriptions (EDS, RDS, ECDS) get only the resources they name. An empty
//!   list after a named one unsubscribes from everything.
//! - A response is recorded (stream state and the cache's node status) before
//!   it is written, so a fast ACK is never mistaken for a stale one.
//! - A NACKed version is not re-sent; the next snapshot or a change of
//!   requested names triggers a new response (carrying the NACKed resources
//!   again).
//! - A new snapshot that changes nothing of a type (the same resources, byte
//!   for byte) sends nothing for it, in both protocols: the Envoy already has
//!   that version's resources, so once its last response of the type is ACKed
//!   it is recorded as ACKed at the new version (`switchyard status` and the
//!   CLI's `live` wait see every type at the new version). A per-type digest
//!   of the snapshot finds this without comparing resources one by one. A
//!   release usually changes only the filter's table (ECDS) and perhaps
//!   clusters.
//! - Make-before-break, per stream. A stream has a *target* snapshot (the
//!   newest) and a *routable* one (the newest whose clusters this Envoy can
//!   use). CDS and EDS are served from the target; ECDS, LDS and RDS — the
//!   types that route requests to clusters — only from the routable snapshot.
//!   The target becomes routable once Envoy has ACKed the target's CDS and an
//!   EDS response carrying every EDS cluster of the target (that is when Envoy
//!   1.40 ends a new cluster's warming and hands it to the worker threads, see
//!   below), and, for clusters of DNS names, a further [`DNS_WARMUP`]. Pushes go
//!   CDS → EDS, then (once routable) ECDS → LDS → RDS.
//!
//! The two filter tables in order: when one ECDS response would change both
//! the internal listener's table and the genesis table (a publish and its
//! release in one push), the internal table goes alone first and the genesis
//! table only once that response is ACKed ([`AdsStream::internal_first`]), in
//! both protocols. Envoy's workers take ECDS updates at their own pace, so
//! otherwise a request could be routed by the new genesis table to a new
//! deployment whose calls meet an internal table from before the publish (403
//! `component_not_in_deployment`). The first response's version is
//! `<v>+internal-first`.
//!
//! When a cluster is routable in Envoy 1.40: a new EDS cluster is added to the
//! *warming* set when its CDS response is processed (Envoy pauses EDS while it
//! does, then asks for the new names in one EDS request, and ACKs CDS); it
//! leaves warming when its first `ClusterLoadAssignment` is applied, and the
//! cluster manager then posts it to every worker thread. A request routed to it
//! before that finds no cluster (`no_cluster`, an empty 503). Envoy ACKs that
//! EDS response after applying it, and an ECDS or RDS response sent after the
//! ACK is applied after it — also on the workers, whose queues keep the order.
//! A STRICT_DNS cluster warms after its first resolution, which xDS does not
//! report: hence the fixed wait. A NACKed CDS or EDS keeps the routable
//! snapshot where it was.
//!
//! Cluster removal: with state-of-the-world CDS a response without a cluster
//! removes it, which would remove it before the listeners and routes that still
//! use it are updated. So when a new snapshot drops clusters this stream sent,
//! CDS responses carry the new clusters *plus* the dropped ones (unchanged
//! bytes, version `<v>+retiring`); once the target is routable and Envoy has
//! ACKed every type of it, a final CDS response with only the new clusters
//! (version `<v>`) removes them.
//!
//! Delta xDS (`DeltaAggregatedResources`, Envoy's `DELTA_GRPC`) runs the same
//! stream task — the same ordering, retiring and ACK/NACK bookkeeping — and
//! differs only on the wire ([`Wire`]): subscriptions change by
//! `resource_names_subscribe`/`_unsubscribe` (a type's first request without
//! names, or `"*"`, is wildcard: CDS and LDS), a resource's version is a hash
//! of its bytes ([`super::snapshot::resource_version`]), and a response carries
//! only the resources whose version the Envoy lacks plus, for wildcard types,
//! `removed_resources`. A reconnecting Envoy's `initial_resource_versions` are
//! what it has. A delta ACK carries no version: it ACKs the version sent with
//! its nonce. A delta request with a stale nonce still changes the
//! subscription (Envoy sends subscription changes along with ACKs); only a
//! type's first request is a new subscription, answered even when the Envoy
//! already has everything. Retiring clusters in delta: they are kept
//! out of `removed_resources` until the same point, then one response removes
//! them. Named types (EDS, ECDS, RDS) never get removals: Envoy drops them when
//! it unsubscribes.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
    Resource as DeltaResource,
};
use envoy_types::pb::google::protobuf::Any;
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::cache::{now_unix_ms, Nack, Served, SnapshotCache};
use super::snapshot::{ResourceType, Snapshot};
use crate::topology::{GENESIS_FILTER, INTERNAL_FILTER};

/// Nonces are unique across all streams, so a nonce from an earlier stream can
/// never match a response of a later one.
static NEXT_NONCE: AtomicU64 = AtomicU64::new(1);

/// Responses buffered per stream before the stream task waits for the client.
const STREAM_BUFFER: usize = 16;

/// Why the server stopped.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// The listening address could not be bound.
    #[error("cannot listen for xDS on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("xDS server failed: {0}")]
    Transport(#[from] tonic::transport::Error),
}

/// The ADS gRPC service, serving the cache's snapshot to every Envoy.
#[derive(Debug, Clone)]
pub struct AdsServer {
    cache: SnapshotCache,
}

impl AdsServer {
    /// A server for `cache`'s snapshots; node status is recorded into `cache`.
    pub fn new(cache: SnapshotCache) -> Self {
        Self { cache }
    }

    /// The tonic service, to mount on a `tonic::transport::Server` yourself.
    pub fn into_service(self) -> AggregatedDiscoveryServiceServer<Self> {
        AggregatedDiscoveryServiceServer::new(self)
    }

    /// Binds `addr` and serves until `shutdown` completes.
    pub async fn serve(
        self,
        addr: SocketAddr,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::Bind { addr, source })?;
        self.serve_listener(listener, shutdown).await
    }

    /// Serves on an already bound listener (e.g. `127.0.0.1:0` in tests) until
    /// `shutdown` completes.
    pub async fn serve_listener(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError> {
        tonic::transport::Server::builder()
            .tcp_nodelay(true)
            .add_service(self.into_service())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), shutdown)
            .await?;
        Ok(())
    }

    /// Serves the connections of `incoming` (e.g. TLS connections whose
    /// handshake is done, [`crate::tls::incoming`]) until `shutdown` completes.
    pub async fn serve_incoming<IO>(
        self,
        incoming: impl Stream<Item = std::io::Result<IO>>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), ServeError>
    where
        IO: tokio::io::AsyncRead
            + tokio::io::AsyncWrite
            + tonic::transport::server::Connected
            + Unpin
            + Send
            + 'static,
    {
        tonic::transport::Server::builder()
            .add_service(self.into_service())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }
}

type ResponseStream = Pin<Box<dyn Stream<Item = Result<DiscoveryResponse, Status>> + Send>>;
type DeltaStream = Pin<Box<dyn Stream<Item = Result<DeltaDiscoveryResponse, Status>> + Send>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsServer {
    type StreamAggregatedResourcesStream = ResponseStream;
    type DeltaAggregatedResourcesStream = DeltaStream;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let inbound = request.into_inner().map(|r| r.map(Incoming::from));
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let cache = self.cache.clone();
        tokio::spawn(async move { run_stream(cache, inbound, Wire::Sotw(tx)).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        let inbound = request.into_inner().map(|r| r.map(Incoming::from));
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let cache = self.cache.clone();
        tokio::spawn(async move { run_stream(cache, inbound, Wire::Delta(tx)).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// The client went away or the stream broke; the stream task ends.
struct Closed;

/// How responses go out: the protocol the stream speaks.
enum Wire {
    /// State of the world: every response carries every subscribed resource.
    Sotw(mpsc::Sender<Result<DiscoveryResponse, Status>>),
    /// Delta: a response carries the resources whose version the Envoy lacks
    /// and the names it should remove.
    Delta(mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>),
}

impl Wire {
    fn protocol(&self) -> &'static str {
        match self {
            Wire::Sotw(_) => "sotw",
            Wire::Delta(_) => "delta",
        }
    }

    async fn fail(&self, status: Status) {
        let _ = match self {
            Wire::Sotw(tx) => tx.send(Err(status)).await.is_ok(),
            Wire::Delta(tx) => tx.send(Err(status)).await.is_ok(),
        };
    }
}

/// What a request asks about its subscription.
#[derive(Debug)]
enum Names {
    /// State of the world: the complete list of names wanted.
    Replace(Vec<String>),
    /// Delta: names added and removed, and on a type's first request the
    /// versions the Envoy already has (after a reconnect).
    Change {
        subscribe: Vec<String>,
        unsubscribe: Vec<String>,
        initial_versions: BTreeMap<String, String>,
    },
}

/// One discovery request of either protocol, as the stream handles it.
#[derive(Debug)]
struct Incoming {
    node: Option<Node>,
    type_url: String,
    /// The nonce of the response this request answers ("" if none).
    response_nonce: String,
    error_detail: Option<RpcStatus>,
    names: Names,
}

impl From<DiscoveryRequest> for Incoming {
    fn from(r: DiscoveryRequest) -> Self {
        Incoming {
            node: r.node,
            type_url: r.type_url,
            response_nonce: r.response_nonce,
            error_detail: r.error_detail,
            names: Names::Replace(r.resource_names),
        }
    }
}

impl From<DeltaDiscoveryRequest> for Incoming {
    fn from(r: DeltaDiscoveryRequest) -> Self {
        Incoming {
            node: r.node,
            type_url: r.type_url,
            response_nonce: r.response_nonce,
            error_detail: r.error_detail,
            names: Names::Change {
                subscribe: r.resource_names_subscribe,
                unsubscribe: r.resource_names_unsubscribe,
                initial_versions: r.initial_resource_versions.into_iter().collect(),
            },
        }
    }
}

async fn run_stream<S>(cache: SnapshotCache, mut inbound: S, wire: Wire)
where
    S: Stream<Item = Result<Incoming, Status>> + Unpin,
{
    let first = match inbound.next().await {
        Some(Ok(first)) => first,
        Some(Err(_)) | None => return,
    };
    let Some(node) = first.node.clone().filter(|n| !n.id.is_empty()) else {
        wire.fail(Status::invalid_argument(
            "the first discovery request must carry node.id",
        ))
        .await;
        return;
    };
    cache.stream_opened(&node.id, &node.cluster);
    let protocol = wire.protocol();
    tracing::info!(node = %node.id, cluster = %node.cluster, protocol, "ADS stream opened");
    let scope = crate::scope::scope_of(&node);
    if let Some(scope) = &scope {
        tracing::info!(node = %node.id, ?scope, "node serves a scope");
    }
    let mut snapshots = cache.watch();
    let target = snapshots
        .borrow_and_update()
        .as_ref()
        .map(|s| s.for_scope(scope.as_ref()));
    let mut stream = AdsStream {
        node: node.id.clone(),
        scope,
        cache: cache.clone(),
        wire,
        target,
        routable: None,
        types: BTreeMap::new(),
        sent_clusters: Picked::empty(ResourceType::Cluster),
        retiring: false,
        warm_dns: BTreeSet::new(),
        dns_hold: None,
    };
    let _ = stream.serve(first, &mut inbound, &mut snapshots).await;
    cache.stream_closed(&node.id);
    tracing::info!(node = %node.id, protocol, "ADS stream closed");
}

/// How long a new STRICT_DNS cluster is given to warm (its first resolution)
/// after Envoy ACKed it, before config that routes to it is sent. xDS does not
/// report DNS warming; clusters of IP endpoints (EDS) need no such wait.
pub const DNS_WARMUP: Duration = Duration::from_millis(500);

/// What a stream subscribed to for one type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subscription {
    Wildcard,
    Named(Arc<BTreeSet<String>>),
}

impl Subscription {
    /// State of the world: the subscription after a request, given the one
    /// before (if any).
    fn after(previous: Option<&Subscription>, names: &[String]) -> Subscription {
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
    fn after_delta(
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
    fn wants(&self, name: &str) -> bool {
        match self {
            Subscription::Wildcard => true,
            Subscription::Named(names) => names.contains(name),
        }
    }
}

/// One type's state on one stream.
#[derive(Debug)]
struct TypeState {
    subscription: Subscription,
    /// Snapshot version of the last response sent (without `+retiring`); in
    /// delta also a version whose resources equal what was last sent, for
    /// which no response was needed.
    sent_version: Option<String>,
    /// Wire version and nonce of the last response sent.
    sent_wire_version: String,
    sent_nonce: Option<String>,
    /// Per resource name, the version Envoy has once it applies the last
    /// response sent (state of the world: the resources in it; delta: also
    /// what Envoy declared in `initial_resource_versions`).
    have: BTreeMap<String, String>,
    /// Delta: names of the resources in the last response sent; on a NACK
    /// they are taken out of `have`, so the next push sends them again.
    last_names: Vec<String>,
    /// The digest of the snapshot resources the last response was computed
    /// from, while the subscription is unchanged and nothing was NACKed: a
    /// snapshot with the same digest has nothing new for this stream, found
    /// without comparing resource by resource.
    basis: Option<u64>,
    /// The last response sent has not been ACKed or NACKed yet.
    outstanding: bool,
    /// Envoy NACKed the last response sent.
    nacked: bool,
}

impl TypeState {
    fn new(subscription: Subscription) -> Self {
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
    fn acked(&self, version: &str) -> bool {
        self.sent_version.as_deref() == Some(version) && !self.outstanding && !self.nacked
    }
}

/// A wait for new DNS clusters to resolve before the target becomes routable.
struct DnsHold {
    /// The target version the wait is for.
    version: String,
    until: Instant,
}

/// Resources of one type picked for a response, nothing copied until it goes
/// on the wire: a snapshot's resources (all, or the named ones), plus, for CDS,
/// clusters being retired, each with the older snapshot that holds it.
#[derive(Clone)]
struct Picked {
    kind: ResourceType,
    from: Option<Arc<Snapshot>>,
    /// Only these names of `from` (`None`: all of them).
    only: Option<Arc<BTreeSet<String>>>,
    retired: BTreeMap<String, Arc<Snapshot>>,
}

impl Picked {
    fn empty(kind: ResourceType) -> Self {
        Picked {
            kind,
            from: None,
            only: None,
            retired: BTreeMap::new(),
        }
    }

    /// Every picked name with the snapshot that holds it.
    fn iter(&self) -> impl Iterator<Item = (&String, &Arc<Snapshot>)> + '_ {
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

    fn contains(&self, name: &str) -> bool {
        self.retired.contains_key(name)
            || self.from.as_ref().is_some_and(|s| {
                s.resources(self.kind).items.contains_key(name)
                    && self.only.as_ref().is_none_or(|o| o.contains(name))
            })
    }
}

/// A picked resource's bytes and version in the snapshot that holds it.
fn resource_in<'a>(
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

struct AdsStream {
    node: String,
    /// The environments this node serves (`None`: all).
    scope: Option<BTreeSet<String>>,
    cache: SnapshotCache,
    wire: Wire,
    /// The newest snapshot: CDS and EDS are served from it. It changes only
    /// through the watch, so every new snapshot is pushed in order before any
    /// request sees it.
    target: Option<Arc<Snapshot>>,
    /// The newest snapshot whose clusters this Envoy can use: ECDS, LDS and RDS
    /// are served from it.
    routable: Option<Arc<Snapshot>>,
    types: BTreeMap<ResourceType, TypeState>,
    /// Clusters in the last CDS response (delta: that Envoy has), to keep
    /// dropped ones until nothing routes to them.
    sent_clusters: Picked,
    /// The last CDS response still carries clusters the target dropped.
    retiring: bool,
    /// DNS clusters this Envoy has had [`DNS_WARMUP`] to resolve.
    warm_dns: BTreeSet<String>,
    dns_hold: Option<DnsHold>,
}

impl AdsStream {
    async fn serve<S>(
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
    fn source(&self, kind: ResourceType) -> Option<Arc<Snapshot>> {
        if kind.routes_to_clusters() {
            self.routable.clone()
        } else {
            self.target.clone()
        }
    }

    /// Handles one discovery request: ACK/NACK bookkeeping, subscription
    /// changes, and a response if the client lacks the version it should have.
    async fn handle(&mut self, request: Incoming) -> Result<(), Closed> {
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
        let outstanding = state.outstanding;
        if let Some(snapshot) = self.source(kind) {
            // A response still unanswered is followed up when its answer comes
            // (delta: a stale nonce does not count as one).
            let behind = sent_version.as_deref() != Some(snapshot.version(kind)) && !outstanding;
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
    fn answered(&mut self, kind: ResourceType, request: &Incoming) {
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

    /// Pushes a new target: CDS and EDS now, the rest once it is routable.
    async fn push(&mut self, snapshot: Option<Arc<Snapshot>>) -> Result<(), Closed> {
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
    async fn send_behind(
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
    async fn progress(&mut self) -> Result<(), Closed> {
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
    fn clusters_ready(&mut self, target: &Snapshot) -> bool {
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
    async fn finish_retiring(&mut self) -> Result<(), Closed> {
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

    /// The resources of `kind` in `snapshot` this stream subscribed to.
    fn selected(&self, kind: ResourceType, snapshot: &Arc<Snapshot>) -> Picked {
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
    async fn send(
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
        let genesis_had = self
            .types
            .get(&kind)
            .and_then(|s| s.have.get(GENESIS_FILTER).cloned());
        if self.internal_first(kind, &mut resources) {
            let staged = format!("{version}+internal-first");
            self.respond(kind, staged.clone(), staged, &resources, forced)
                .await?;
            // Envoy keeps the genesis table it has (state of the world's
            // bookkeeping dropped it), and the next response is computed afresh.
            if let Some(state) = self.types.get_mut(&kind) {
                state.basis = None;
                if let Some(old) = genesis_had {
                    state.have.insert(GENESIS_FILTER.to_string(), old);
                }
            }
            return Ok(());
        }
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

    /// Whether `resources` (of `kind`) would change both filter tables that
    /// Envoy already has; if so, leaves only the internal one in them: it goes
    /// first, and the genesis table follows once Envoy ACKs it (the response's
    /// version is not the snapshot's, so the ACK finds this type behind).
    /// Envoy's named ECDS watches keep a table a response does not carry.
    fn internal_first(&self, kind: ResourceType, resources: &mut Picked) -> bool {
        if kind != ResourceType::ExtensionConfig {
            return false;
        }
        let Some(state) = self.types.get(&kind) else {
            return false;
        };
        let changes = |name: &str| {
            let new = resources
                .iter()
                .find(|(n, _)| n.as_str() == name)
                .map(|(n, from)| resource_in(kind, n, from).1);
            match (new, state.have.get(name)) {
                (Some(new), Some(old)) => new != old,
                _ => false,
            }
        };
        if state.nacked || !changes(GENESIS_FILTER) || !changes(INTERNAL_FILTER) {
            return false;
        }
        let only: BTreeSet<String> = resources
            .iter()
            .map(|(n, _)| n.clone())
            .filter(|n| n != GENESIS_FILTER)
            .collect();
        resources.only = Some(Arc::new(only));
        true
    }

    /// Records, then writes, one response. State of the world: every resource
    /// picked. Delta: those whose version Envoy lacks, and (wildcard types) the
    /// names it has that were not picked as removed. When the response would
    /// change nothing Envoy has (state of the world: the same resources at the
    /// same versions as the last response; delta: nothing to add, change or
    /// remove) and it is not `forced`, nothing is written: Envoy already has
    /// this version's resources and counts as at `version` once its last
    /// response of the type is ACKed.
    async fn respond(
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
}

/// A response of either protocol.
enum Outgoing {
    Sotw(DiscoveryResponse),
    Delta(DeltaDiscoveryResponse),
}

/// Completes at `deadline`, or never without one.
async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
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
