//! The `switchyard serve` process: binds the xDS and API listeners (TLS when
//! configured), opens the API tokens and leaves the admin credential for the
//! CLI, starts the [`ControlPlane`] from the initial store, and runs the ADS
//! server and the HTTP API over it until shutdown. Process wiring only: the
//! control plane is [`crate::serve`], the API [`crate::api`].
//!
//! Safe by default: the API needs tokens ([`crate::auth`]); the admin token is
//! created on first start and left for the CLI ([`crate::credentials`]).
//! `--insecure-no-auth` is refused unless the API listens on loopback only.
//! The API and xDS take TLS certificates; xDS optionally requires client
//! certificates from a CA (mTLS), and refused handshakes are reported in
//! `status` ([`crate::tls`]).

use std::sync::Arc;

use crate::auth::Tokens;
use crate::serve::{initial_store, ControlPlane, ServeOptions, StartError};
use crate::tls::ReloadingAcceptor;
use crate::xds::{AdsServer, SnapshotCache};

/// Leaves the admin token, when known, for the CLI on this machine (once the
/// API's address is ours: a failed bind must not replace the credential of
/// the server that has it).
fn publish_admin(opts: &ServeOptions, admin: Option<&str>) {
    match admin {
        Some(admin) => match crate::credentials::publish(opts.api_addr, admin) {
            Ok(path) => tracing::info!(
                credential = %path.display(),
                "the admin credential for the CLI on this machine"
            ),
            Err(e) => tracing::warn!(
                error = %e,
                "cannot leave the admin credential for the CLI; use {} of the state directory",
                crate::auth::ADMIN_TOKEN_FILE
            ),
        },
        None => tracing::warn!(
            "the admin credential is not in the state directory any more; use a token \
             created with `switchyard token create`"
        ),
    }
}

/// Runs the control plane until `shutdown` completes: ADS on `xds_addr`, the
/// HTTP API on `api_addr`.
pub async fn run(
    opts: ServeOptions,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    if !opts.auth && !opts.api_addr.ip().is_loopback() {
        return Err(StartError::NoAuthOnNetwork(opts.api_addr).into());
    }
    let api_tls = opts
        .api_tls
        .as_ref()
        .map(|f| ReloadingAcceptor::start(f.clone(), &[b"http/1.1"], "api"))
        .transpose()
        .map_err(StartError::from)?;
    let xds_tls = opts
        .xds_tls
        .as_ref()
        .map(|f| ReloadingAcceptor::start(f.clone(), &[b"h2"], "xds"))
        .transpose()
        .map_err(StartError::from)?;
    // The API's tokens: in the state directory, or in memory without one.
    let (tokens, admin) = if opts.auth {
        let (tokens, admin) = Tokens::open(opts.state_dir.as_deref()).map_err(StartError::from)?;
        (Some(Arc::new(tokens)), admin)
    } else {
        tracing::warn!(api = %opts.api_addr, "the API needs no credential (--insecure-no-auth)");
        (None, None)
    };
    let store = initial_store(&opts)?;
    let cache = SnapshotCache::new();
    let plane = Arc::new(ControlPlane::start(
        store,
        cache.clone(),
        opts.build.clone(),
        opts.state_dir.clone(),
    )?);
    let generation = plane.store().generation;
    let api_listener = tokio::net::TcpListener::bind(opts.api_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for the API on {}: {e}", opts.api_addr))?;
    let xds_listener = tokio::net::TcpListener::bind(opts.xds_addr)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen for xDS on {}: {e}", opts.xds_addr))?;
    if opts.auth {
        publish_admin(&opts, admin.as_deref());
    }
    tracing::info!(
        xds = %opts.xds_addr,
        xds_tls = xds_tls.is_some(),
        xds_mtls = opts.xds_tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
        api = %opts.api_addr,
        api_tls = api_tls.is_some(),
        api_auth = opts.auth,
        generation,
        "switchyard serve started"
    );

    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut xds_stop = stop_rx.clone();
    // Progressive rollouts: the driver judges them from the LRS reports.
    tokio::spawn(crate::progressive::driver::run(
        plane.clone(),
        stop_rx.clone(),
    ));
    let mut api_stop = stop_rx;
    let refusals = plane.refusals().clone();
    let xds_shutdown = async move {
        let _ = xds_stop.wait_for(|s| *s).await;
    };
    // ADS and LRS (the load reports that judge progressive rollouts) share
    // the xDS port and its TLS.
    let ads = AdsServer::new(cache).into_service();
    let lrs = plane.progressive().reports.service();
    let xds = match xds_tls {
        Some(acceptor) => {
            let incoming = crate::tls::incoming(xds_listener, acceptor, "xds", refusals.clone());
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(ads)
                    .add_service(lrs)
                    .serve_with_incoming_shutdown(incoming, xds_shutdown),
            )
        }
        None => tokio::spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(ads)
                .add_service(lrs)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(xds_listener),
                    xds_shutdown,
                ),
        ),
    };
    let router = crate::api::router(plane, tokens);
    let api = tokio::spawn(async move {
        crate::http_server::serve(api_listener, router, api_tls, refusals, async move {
            let _ = api_stop.wait_for(|s| *s).await;
        })
        .await;
        Ok::<(), std::io::Error>(())
    });
    tokio::pin!(shutdown);
    tokio::select! {
        () = &mut shutdown => tracing::info!("shutting down"),
        r = xds => {
            let _ = stop_tx.send(true);
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.into()),
                Err(e) => Err(e.into()),
            };
        }
        r = api => {
            let _ = stop_tx.send(true);
            return match r {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(anyhow::anyhow!("API server failed: {e}")),
                Err(e) => Err(e.into()),
            };
        }
    }
    let _ = stop_tx.send(true);
    Ok(())
}
