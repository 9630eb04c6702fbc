//! The loop that serves the HTTP API's connections (HTTP/1.1, plain or TLS)
//! with limits for slow or greedy clients: a TLS handshake must complete within
//! [`crate::tls::HANDSHAKE_TIMEOUT`], request headers within
//! [`HEADER_TIMEOUT`], and at most [`MAX_CONNECTIONS`] connections are served
//! at once (more are closed at accept). Bodies have their own size limit and
//! read timeout in the API ([`crate::api`]).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::tls::{Refusals, ReloadingAcceptor};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;

/// A client must send a request's headers within this time.
pub const HEADER_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections served at once.
pub const MAX_CONNECTIONS: usize = 512;

/// Refused connections are logged within a budget ([`crate::log_limit`]).
static LOGGED: crate::log_limit::LogBudget = crate::log_limit::LogBudget::new();

/// The peer of the connection a request came on (a request extension).
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves `router` on `listener` (through `tls` when given) until `shutdown`.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<ReloadingAcceptor>,
    refusals: Refusals,
    shutdown: impl Future<Output = ()>,
) {
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_CONNECTIONS));
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return,
            a = listener.accept() => match a {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "API accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            if let Some(left_out) = LOGGED.take() {
                tracing::warn!(%peer, left_out, "API connection refused: {MAX_CONNECTIONS} connections open");
            }
            continue;
        };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(router.clone().layer(axum::Extension(Peer(peer))));
        let (tls, refusals) = (
            tls.as_ref().map(ReloadingAcceptor::acceptor),
            refusals.clone(),
        );
        tokio::spawn(async move {
            let _slot = slot;
            let mut http = hyper::server::conn::http1::Builder::new();
            http.timer(TokioTimer::new())
                .header_read_timeout(HEADER_TIMEOUT);
            let served = match tls {
                Some(acceptor) => {
                    let Some(tls) =
                        crate::tls::handshake(&acceptor, stream, peer, "api", &refusals).await
                    else {
                        return;
                    };
                    http.serve_connection(TokioIo::new(tls), service).await
                }
                None => http.serve_connection(TokioIo::new(stream), service).await,
            };
            if let Err(e) = served {
                tracing::debug!(%peer, error = %e, "API connection ended");
            }
        });
    }
}
