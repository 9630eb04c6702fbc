//! One discovery request of either protocol as a stream handles it
//! ([`Incoming`]), and the wire its responses go out on ([`Wire`]).

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use envoy_types::pb::google::rpc::Status as RpcStatus;
use tokio::sync::mpsc;
use tonic::Status;

/// The client went away or the stream broke; the stream task ends.
pub(super) struct Closed;

/// How responses go out: the protocol the stream speaks.
pub(super) enum Wire {
    /// State of the world: every response carries every subscribed resource.
    Sotw(mpsc::Sender<Result<DiscoveryResponse, Status>>),
    /// Delta: a response carries the resources whose version the Envoy lacks
    /// and the names it should remove.
    Delta(mpsc::Sender<Result<DeltaDiscoveryResponse, Status>>),
}

impl Wire {
    pub(super) fn protocol(&self) -> &'static str {
        match self {
            Wire::Sotw(_) => "sotw",
            Wire::Delta(_) => "delta",
        }
    }

    pub(super) async fn fail(&self, status: Status) {
        let _ = match self {
            Wire::Sotw(tx) => tx.send(Err(status)).await.is_ok(),
            Wire::Delta(tx) => tx.send(Err(status)).await.is_ok(),
        };
    }
}

/// What a request asks about its subscription.
#[derive(Debug)]
pub(super) enum Names {
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
pub(super) struct Incoming {
    pub(super) node: Option<Node>,
    pub(super) type_url: String,
    /// The nonce of the response this request answers ("" if none).
    pub(super) response_nonce: String,
    pub(super) error_detail: Option<RpcStatus>,
    pub(super) names: Names,
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

/// A response of either protocol.
pub(super) enum Outgoing {
    Sotw(DiscoveryResponse),
    Delta(DeltaDiscoveryResponse),
}
