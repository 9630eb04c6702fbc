//! The Aggregated Discovery Service: state-of-the-world xDS over one gRPC stream.
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
//!   requested names triggers a new response.
//! - A new snapshot is pushed to every subscribed type whose version changed,
//!   in make-before-break order CDS → EDS → ECDS → LDS → RDS.
//!
//! Cluster removal: with state-of-the-world CDS a response without a cluster
//! removes it, which would remove it before the listeners and routes that still
//! use it are updated. So when a new snapshot drops clusters this stream sent,
//! the first CDS response carries the new clusters *plus* the dropped ones
//! (unchanged bytes, version `<v>+retiring`); once Envoy has answered every
//! response of that push (EDS, ECDS, LDS, RDS and the CDS itself), a final CDS
//! response with only the new clusters (version `<v>`) removes them.
//!
//! Delta xDS (`DeltaAggregatedResources`) is not implemented: it answers
//! `UNIMPLEMENTED` and Envoy configured for `GRPC` (state of the world) never
//! calls it. Adding it means per-resource versions in [`Snapshot`] and
//! tracking what each stream has per resource instead of per type.

use std::collections::{BTreeMap, BTreeSet};
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::protobuf::Any;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::{ReceiverStream, TcpListenerStream};
use tokio_stream::Stream;
use tonic::{Request, Response, Status, Streaming};

use super::cache::{now_unix_ms, Nack, SnapshotCache};
use super::snapshot::{ResourceType, Snapshot};

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
        let inbound = request.into_inner();
        let (tx, rx) = mpsc::channel(STREAM_BUFFER);
        let cache = self.cache.clone();
        tokio::spawn(async move { run_stream(cache, inbound, tx).await });
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<DeltaStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not supported; configure Envoy's ADS with api_type GRPC",
        ))
    }
}

/// The client went away or the stream broke; the stream task ends.
struct Closed;

type Outbound = mpsc::Sender<Result<DiscoveryResponse, Status>>;

async fn run_stream(cache: SnapshotCache, mut inbound: Streaming<DiscoveryRequest>, tx: Outbound) {
    let first = match inbound.message().await {
        Ok(Some(first)) => first,
        Ok(None) | Err(_) => return,
    };
    let Some(node) = first.node.clone().filter(|n| !n.id.is_empty()) else {
        let _ = tx
            .send(Err(Status::invalid_argument(
                "the first discovery request must carry node.id",
            )))
            .await;
        return;
    };
    cache.stream_opened(&node.id, &node.cluster);
    tracing::info!(node = %node.id, cluster = %node.cluster, "ADS stream opened");
    let mut snapshots = cache.watch();
    let current = snapshots.borrow_and_update().clone();
    let mut stream = AdsStream {
        node: node.id.clone(),
        cache: cache.clone(),
        tx,
        current,
        types: BTreeMap::new(),
        sent_clusters: BTreeMap::new(),
        retiring: false,
    };
    let _ = stream.serve(first, &mut inbound, &mut snapshots).await;
    cache.stream_closed(&node.id);
    tracing::info!(node = %node.id, "ADS stream closed");
}

/// What a stream subscribed to for one type.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Subscription {
    Wildcard,
    Named(BTreeSet<String>),
}

impl Subscription {
    /// The subscription after a request, given the one before (if any).
    fn after(previous: Option<&Subscription>, names: &[String]) -> Subscription {
        if names.iter().any(|n| n == "*") {
            return Subscription::Wildcard;
        }
        match previous {
            None | Some(Subscription::Wildcard) if names.is_empty() => Subscription::Wildcard,
            _ => Subscription::Named(names.iter().cloned().collect()),
        }
    }

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
    /// Snapshot version of the last response sent (without `+retiring`).
    sent_version: Option<String>,
    /// Wire version and nonce of the last response sent.
    sent_wire_version: String,
    sent_nonce: Option<String>,
    /// The last response sent has not been ACKed or NACKed yet.
    outstanding: bool,
}

struct AdsStream {
    node: String,
    cache: SnapshotCache,
    tx: Outbound,
    /// The snapshot this stream serves from; changes only through the watch, so
    /// every new snapshot is pushed in order before any request sees it.
    current: Option<Arc<Snapshot>>,
    types: BTreeMap<ResourceType, TypeState>,
    /// Clusters in the last CDS response, to keep dropped ones until the rest
    /// of a push is answered.
    sent_clusters: BTreeMap<String, Any>,
    /// The last CDS response still carries clusters the snapshot dropped.
    retiring: bool,
}

impl AdsStream {
    async fn serve(
        &mut self,
        first: DiscoveryRequest,
        inbound: &mut Streaming<DiscoveryRequest>,
        snapshots: &mut watch::Receiver<Option<Arc<Snapshot>>>,
    ) -> Result<(), Closed> {
        self.handle(first).await?;
        loop {
            tokio::select! {
                request = inbound.message() => match request {
                    Ok(Some(request)) => self.handle(request).await?,
                    Ok(None) => return Ok(()),
                    Err(status) => {
                        tracing::debug!(node = %self.node, %status, "ADS stream error");
                        return Err(Closed);
                    }
                },
                changed = snapshots.changed() => {
                    if changed.is_err() {
                        return Ok(());
                    }
                    let snapshot = snapshots.borrow_and_update().clone();
                    self.push(snapshot).await?;
                }
            }
        }
    }

    /// Handles one discovery request: ACK/NACK bookkeeping, subscription
    /// changes, and a response if the client lacks the current version.
    async fn handle(&mut self, request: DiscoveryRequest) -> Result<(), Closed> {
        self.cache.touch(&self.node);
        let Some(kind) = ResourceType::from_type_url(&request.type_url) else {
            tracing::debug!(node = %self.node, type_url = %request.type_url, "ignoring unserved type");
            return Ok(());
        };
        let fresh = match self.types.get_mut(&kind) {
            Some(state) if !request.response_nonce.is_empty() => {
                if state.sent_nonce.as_deref() != Some(request.response_nonce.as_str()) {
                    tracing::debug!(node = %self.node, %kind, nonce = %request.response_nonce, "stale nonce ignored");
                    return Ok(());
                }
                state.outstanding = false;
                match &request.error_detail {
                    None => self
                        .cache
                        .record_ack(&self.node, kind, &request.version_info),
                    Some(error) => {
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
                false
            }
            _ => true,
        };
        let previous = self.types.get(&kind).map(|s| s.subscription.clone());
        let basis = if fresh { None } else { previous.as_ref() };
        let subscription = Subscription::after(basis, &request.resource_names);
        let names_changed = previous.as_ref() != Some(&subscription);
        let state = self.types.entry(kind).or_insert_with(|| TypeState {
            subscription: subscription.clone(),
            sent_version: None,
            sent_wire_version: String::new(),
            sent_nonce: None,
            outstanding: false,
        });
        state.subscription = subscription;
        let behind = self
            .current
            .as_ref()
            .is_some_and(|s| state.sent_version.as_deref() != Some(s.version(kind)));
        if let Some(snapshot) = self.current.clone() {
            if fresh || names_changed || behind {
                self.send(kind, &snapshot).await?;
            }
        }
        self.finish_retiring().await
    }

    /// Pushes a new snapshot to every subscribed type whose version changed,
    /// in make-before-break order.
    async fn push(&mut self, snapshot: Option<Arc<Snapshot>>) -> Result<(), Closed> {
        self.current = snapshot;
        let Some(snapshot) = self.current.clone() else {
            return Ok(());
        };
        for kind in ResourceType::PUSH_ORDER {
            let changed = self
                .types
                .get(&kind)
                .is_some_and(|s| s.sent_version.as_deref() != Some(snapshot.version(kind)));
            if changed {
                self.send(kind, &snapshot).await?;
            }
        }
        self.finish_retiring().await
    }

    /// Sends the final CDS response (without dropped clusters) once every
    /// response of the push that kept them has been answered.
    async fn finish_retiring(&mut self) -> Result<(), Closed> {
        if !self.retiring || self.types.values().any(|s| s.outstanding) {
            return Ok(());
        }
        let Some(snapshot) = self.current.clone() else {
            return Ok(());
        };
        self.retiring = false;
        let resources = self.selected(ResourceType::Cluster, &snapshot);
        let version = snapshot.version(ResourceType::Cluster).to_string();
        self.sent_clusters = resources.clone();
        self.respond(ResourceType::Cluster, version.clone(), version, resources)
            .await
    }

    /// The resources of `kind` in `snapshot` this stream subscribed to.
    fn selected(&self, kind: ResourceType, snapshot: &Snapshot) -> BTreeMap<String, Any> {
        let Some(state) = self.types.get(&kind) else {
            return BTreeMap::new();
        };
        snapshot
            .resources(kind)
            .items
            .iter()
            .filter(|(name, _)| state.subscription.wants(name))
            .map(|(name, any)| (name.clone(), any.clone()))
            .collect()
    }

    /// Sends `kind` from `snapshot`, keeping clusters being retired in CDS.
    async fn send(&mut self, kind: ResourceType, snapshot: &Snapshot) -> Result<(), Closed> {
        let mut resources = self.selected(kind, snapshot);
        let version = snapshot.version(kind).to_string();
        let mut wire_version = version.clone();
        if kind == ResourceType::Cluster {
            let dropped: Vec<_> = self
                .sent_clusters
                .iter()
                .filter(|(name, _)| !resources.contains_key(*name))
                .map(|(name, any)| (name.clone(), any.clone()))
                .collect();
            self.retiring = !dropped.is_empty();
            if self.retiring {
                wire_version = format!("{version}+retiring");
                resources.extend(dropped);
            }
            self.sent_clusters = resources.clone();
        }
        self.respond(kind, version, wire_version, resources).await
    }

    /// Records, then writes, one response.
    async fn respond(
        &mut self,
        kind: ResourceType,
        version: String,
        wire_version: String,
        resources: BTreeMap<String, Any>,
    ) -> Result<(), Closed> {
        let nonce = NEXT_NONCE.fetch_add(1, Ordering::Relaxed).to_string();
        if let Some(state) = self.types.get_mut(&kind) {
            state.sent_version = Some(version);
            state.sent_wire_version = wire_version.clone();
            state.sent_nonce = Some(nonce.clone());
            state.outstanding = true;
        }
        self.cache
            .record_sent(&self.node, kind, &wire_version, &nonce);
        tracing::debug!(node = %self.node, %kind, version = %wire_version, %nonce, count = resources.len(), "sending");
        let response = DiscoveryResponse {
            version_info: wire_version,
            resources: resources.into_values().collect(),
            type_url: kind.type_url().to_string(),
            nonce,
            ..Default::default()
        };
        self.tx.send(Ok(response)).await.map_err(|_| Closed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
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
            Subscription::Named(BTreeSet::new())
        );
        assert_eq!(
            Subscription::after(Some(&named), &names(&["*", "a"])),
            Subscription::Wildcard
        );
    }
}
