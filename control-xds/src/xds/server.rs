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

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::mpsc;
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::{Stream, StreamExt};
use tonic::{Request, Response, Status, Streaming};

use super::cache::SnapshotCache;
use super::request::{Incoming, Wire};
use super::snapshot::ResourceType;
use super::stream::AdsStream;
use super::subscription::Picked;

pub use super::stream::DNS_WARMUP;

/// Responses buffered per stream before the stream task waits for the client.
const STREAM_BUFFER: usize = 16;

/// Which scope a node serves (a set of names it declared, `None`: all): the
/// cache gives a node with a scope the snapshot built for it. The server knows
/// nothing of what a scope means; whoever builds it says how to read one.
pub type NodeScope = fn(&Node) -> Option<BTreeSet<String>>;

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
    scope_of: NodeScope,
}

impl AdsServer {
    /// A server for `cache`'s snapshots; node status is recorded into `cache`.
    pub fn new(cache: SnapshotCache) -> Self {
        Self {
            cache,
            scope_of: |_| None,
        }
    }

    /// Gives each node the snapshot of the scope `scope_of` reads from it.
    pub fn scoped_by(self, scope_of: NodeScope) -> Self {
        Self { scope_of, ..self }
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
        let scope_of = self.scope_of;
        tokio::spawn(async move { run_stream(cache, scope_of, inbound, Wire::Sotw(tx)).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        let inbound = request.into_inner().map(|r| r.map(Incoming::from));
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let cache = self.cache.clone();
        let scope_of = self.scope_of;
        tokio::spawn(async move { run_stream(cache, scope_of, inbound, Wire::Delta(tx)).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }
}

/// One stream, from its first request (which must name the node) to its end.
async fn run_stream<S>(cache: SnapshotCache, scope_of: NodeScope, mut inbound: S, wire: Wire)
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
    let scope = scope_of(&node);
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
