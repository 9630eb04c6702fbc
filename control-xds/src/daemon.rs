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
use crate::etcd::Etcd;
use crate::leadership::Leadership;
use crate::replicas::{ReplicaStatus, ReplicaView};
use crate::serve::ControlPlane;
use crate::start::{initial_store, initial_store_in, ServeOptions, StartError};
use crate::state_store::{parse_document, EtcdBackend, STATE_KEY};
use crate::tls::ReloadingAcceptor;
use crate::xds::{AdsServer, ResourceType, SnapshotCache};

/// Several replicas on etcd: serves every new state document the others
/// write, publishes this replica's Envoys, takes part in the leader election,
/// and follows the other replicas.
fn replicate(
    opts: &ServeOptions,
    etcd: &Etcd,
    plane: &Arc<ControlPlane>,
    cache: &SnapshotCache,
    leadership: Leadership,
) {
    let id = opts
        .replica_id
        .clone()
        .unwrap_or_else(|| opts.xds_addr.to_string());
    let mut docs = etcd.watch(STATE_KEY);
    let (p, e) = (plane.clone(), etcd.clone());
    tokio::spawn(async move {
        while docs.changed().await.is_ok() {
            let Some((bytes, revision)) = docs.borrow_and_update().clone() else {
                continue;
            };
            let (p, e) = (p.clone(), e.clone());
            // building a snapshot is CPU work: off the async workers
            let _ = tokio::task::spawn_blocking(move || match parse_document(&e, &bytes) {
                Ok(store) => {
                    if let Err(err) = p.adopt(store, revision) {
                        tracing::error!(error = %err, "a state document from etcd was not served");
                    }
                }
                Err(err) => tracing::error!(error = %err, "a state document from etcd was ignored"),
            })
            .await;
        }
    });
    plane.set_replicas(ReplicaView::new(id.clone(), etcd.watch_dir("replicas")));
    // What this replica publishes; it must not wait for the control plane's
    // lock (a change holds it while it waits for etcd).
    let (c, plane_, me, xds, api) = (
        cache.clone(),
        plane.clone(),
        id.clone(),
        opts.xds_addr.to_string(),
        opts.api_addr.to_string(),
    );
    let status = move |leader: bool| {
        let generation = c
            .snapshot()
            .and_then(|s| {
                s.version(ResourceType::Listener)
                    .split('+')
                    .next()
                    .and_then(|g| g.parse().ok())
            })
            .unwrap_or(0);
        let status = ReplicaStatus {
            id: me.clone(),
            xds_addr: xds.clone(),
            api_addr: api.clone(),
            leader,
            generation,
            at_unix_ms: crate::clock::now_unix_ms(),
            envoys: c
                .nodes()
                .iter()
                .filter(|n| n.connected)
                .map(crate::api::node_view)
                .collect(),
            lrs_wanted: if leader {
                plane_.progressive().reports.wanted().into_iter().collect()
            } else {
                Vec::new()
            },
            lrs_counts: if leader {
                Default::default()
            } else {
                plane_.progressive().forwarded()
            },
        };
        serde_json::to_vec(&status).unwrap_or_default()
    };
    etcd.run_session(id, Arc::new(status), cache.watch_nodes(), leadership);
}

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
        None if opts.etcd.is_some() => tracing::info!(
            "the tokens in etcd were made by another replica: use its admin credential, or \
             a token created with `switchyard token create` (any replica)"
        ),
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
    let etcd = opts
        .etcd
        .as_ref()
        .map(Etcd::connect)
        .transpose()
        .map_err(|e| StartError::Backend(e.into()))?;
    let (tokens, admin) = open_tokens(&opts, etcd.as_ref())?;
    let cache = SnapshotCache::new();
    let plane = start_plane(&opts, etcd.as_ref(), &cache)?;
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
        store = %plane.backend(),
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
    let xds_shutdown = async move {
        let _ = xds_stop.wait_for(|s| *s).await;
    };
    let xds = serve_xds(&plane, cache, xds_listener, xds_tls, xds_shutdown);
    let api_refusals = plane.refusals().clone();
    let router = crate::api::router(plane, tokens);
    let api = tokio::spawn(async move {
        crate::http_server::serve(api_listener, router, api_tls, api_refusals, async move {
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

/// The API's tokens (in etcd, in the state directory, or none without auth)
/// and the admin token when it was just created.
fn open_tokens(
    opts: &ServeOptions,
    etcd: Option<&Etcd>,
) -> Result<(Option<Arc<Tokens>>, Option<String>), StartError> {
    if !opts.auth {
        tracing::warn!(api = %opts.api_addr, "the API needs no credential (--insecure-no-auth)");
        return Ok((None, None));
    }
    let (tokens, admin) = match etcd {
        Some(etcd) => Tokens::open_etcd(etcd),
        None => Tokens::open(opts.state_dir.as_deref()),
    }?;
    Ok((Some(Arc::new(tokens)), admin))
}

/// The control plane on its first store: from the state file, or from etcd
/// (then also the replica's watch, session and election).
fn start_plane(
    opts: &ServeOptions,
    etcd: Option<&Etcd>,
    cache: &SnapshotCache,
) -> anyhow::Result<Arc<ControlPlane>> {
    let Some(etcd) = etcd else {
        let store = initial_store(opts)?;
        return Ok(Arc::new(
            ControlPlane::start(
                store,
                cache.clone(),
                opts.build.clone(),
                opts.state_dir.clone(),
            )?
            .with_history_limit(opts.history_limit),
        ));
    };
    let backend = Arc::new(EtcdBackend { etcd: etcd.clone() });
    let (store, revision) = initial_store_in(opts, backend.as_ref())?;
    let mut plane =
        ControlPlane::start_on(store, revision, cache.clone(), opts.build.clone(), backend)?
            .with_history_limit(opts.history_limit);
    // singleton work waits for the etcd election
    let leadership = plane.elect();
    let plane = Arc::new(plane);
    replicate(opts, etcd, &plane, cache, leadership);
    Ok(plane)
}

/// Serves ADS and LRS (the load reports that judge progressive rollouts) on
/// the xDS listener, with its TLS, until `shutdown` completes.
fn serve_xds(
    plane: &ControlPlane,
    cache: SnapshotCache,
    xds_listener: tokio::net::TcpListener,
    xds_tls: Option<ReloadingAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> tokio::task::JoinHandle<Result<(), tonic::transport::Error>> {
    let ads = AdsServer::new(cache)
        .scoped_by(crate::scope::scope_of)
        .into_service();
    let lrs = plane.progressive().reports.service();
    match xds_tls {
        Some(acceptor) => {
            let incoming =
                crate::tls::incoming(xds_listener, acceptor, "xds", plane.refusals().clone());
            tokio::spawn(
                tonic::transport::Server::builder()
                    .add_service(ads)
                    .add_service(lrs)
                    .serve_with_incoming_shutdown(incoming, shutdown),
            )
        }
        None => tokio::spawn(
            tonic::transport::Server::builder()
                .tcp_nodelay(true)
                .add_service(ads)
                .add_service(lrs)
                .serve_with_incoming_shutdown(
                    tokio_stream::wrappers::TcpListenerStream::new(xds_listener),
                    shutdown,
                ),
        ),
    }
}
