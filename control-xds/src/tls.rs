//! TLS for the HTTP API and xDS (rustls, ring): server certificates from PEM
//! files, optional client certificates (mTLS: only peers with a certificate
//! from the configured CA get through the handshake), and the record of
//! refused handshakes that `switchyard status` reports.
//!
//! The files are followed while serving ([`ReloadingAcceptor`]): every
//! [`RELOAD_INTERVAL`] they are read again, and when their content changed
//! (a renewed certificate, a new client CA; cert-manager or a Kubernetes
//! secret volume swap them in place) the next handshakes use them. Files that
//! do not make a valid configuration (say, a certificate written before its
//! key) are refused with a log line and the last good configuration stays; the
//! next tick tries again. Connections already open keep their session.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use serde::Serialize;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A TLS handshake that takes longer than this is dropped (slow or idle peers).
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once on the xDS listener; a connection beyond
/// them is closed at accept (peers that connect and stall hold no more).
pub const MAX_HANDSHAKES: usize = 256;

/// The PEM files of a TLS server.
#[derive(Debug, Clone)]
pub struct TlsFiles {
    /// The certificate chain, leaf first.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// When set, clients must present a certificate issued by this CA (mTLS).
    pub client_ca: Option<PathBuf>,
}

/// Why a TLS configuration could not be made.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {what} {path}: {reason}")]
    Pem {
        what: &'static str,
        path: PathBuf,
        reason: String,
    },
    #[error("{path} holds no certificate")]
    NoCertificate { path: PathBuf },
    #[error("invalid TLS configuration: {0}")]
    Rustls(#[from] rustls::Error),
    #[error("invalid client CA {path}: {reason}")]
    ClientCa { path: PathBuf, reason: String },
}

fn certificates(
    pem: &[u8],
    path: &Path,
    what: &'static str,
) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem_error = |reason: String| TlsError::Pem {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| pem_error(e.to_string()))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_path_buf(),
        });
    }
    Ok(certs)
}

/// The content of a server's PEM files, as read at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Pems {
    cert: Vec<u8>,
    key: Vec<u8>,
    client_ca: Option<Vec<u8>>,
}

impl TlsFiles {
    fn read(&self) -> Result<Pems, TlsError> {
        let read = |path: &Path, what: &'static str| {
            std::fs::read(path).map_err(|e| TlsError::Pem {
                what,
                path: path.to_path_buf(),
                reason: e.to_string(),
            })
        };
        Ok(Pems {
            cert: read(&self.cert, "the certificate")?,
            key: read(&self.key, "the private key")?,
            client_ca: self
                .client_ca
                .as_deref()
                .map(|ca| read(ca, "the client CA"))
                .transpose()?,
        })
    }
}

/// The rustls server configuration of `files`, offering `alpn` protocols.
pub fn server_config(files: &TlsFiles, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    config_of(files, &files.read()?, alpn)
}

fn config_of(files: &TlsFiles, pems: &Pems, alpn: &[&[u8]]) -> Result<Arc<ServerConfig>, TlsError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let certs = certificates(&pems.cert, &files.cert, "the certificate")?;
    let key = PrivateKeyDer::from_pem_slice(&pems.key).map_err(|e| TlsError::Pem {
        what: "the private key",
        path: files.key.clone(),
        reason: e.to_string(),
    })?;
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let builder = match (&files.client_ca, &pems.client_ca) {
        (Some(ca), Some(pem)) => {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(pem, ca, "the client CA")? {
                roots.add(c).map_err(|e| TlsError::ClientCa {
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            }
            let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| TlsError::ClientCa {
                    path: ca.clone(),
                    reason: e.to_string(),
                })?;
            builder.with_client_cert_verifier(verifier)
        }
        _ => builder.with_no_client_auth(),
    };
    let mut config = builder.with_single_cert(certs, key)?;
    config.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Ok(Arc::new(config))
}

/// How often a [`ReloadingAcceptor`] reads its files again.
pub const RELOAD_INTERVAL: Duration = Duration::from_secs(2);

/// A TLS acceptor that follows its PEM files (see the module comment): each
/// handshake takes the configuration current at that moment.
#[derive(Clone)]
pub struct ReloadingAcceptor {
    current: Arc<RwLock<TlsAcceptor>>,
}

impl ReloadingAcceptor {
    /// Reads `files` now (an error here refuses the start) and follows them
    /// from a task of the current tokio runtime, until the last clone of the
    /// acceptor is dropped. `listener` names it in the log (`api`, `xds`).
    pub fn start(
        files: TlsFiles,
        alpn: &'static [&'static [u8]],
        listener: &'static str,
    ) -> Result<Self, TlsError> {
        let mut loaded = files.read()?;
        let config = config_of(&files, &loaded, alpn)?;
        let current = Arc::new(RwLock::new(TlsAcceptor::from(config)));
        let followed = Arc::downgrade(&current);
        tokio::spawn(async move {
            // The content last refused, so that a bad file is logged once.
            let mut refused: Option<Pems> = None;
            let mut unreadable: Option<String> = None;
            loop {
                tokio::time::sleep(RELOAD_INTERVAL).await;
                let Some(current) = followed.upgrade() else {
                    return;
                };
                let read = files.read();
                let pems = match read {
                    Ok(p) if p == loaded || Some(&p) == refused.as_ref() => continue,
                    Ok(p) => p,
                    Err(e) => {
                        let e = e.to_string();
                        if unreadable.as_ref() != Some(&e) {
                            tracing::warn!(listener, error = %e, "TLS files not reloaded; the last good ones stay");
                            unreadable = Some(e);
                        }
                        continue;
                    }
                };
                unreadable = None;
                match config_of(&files, &pems, alpn) {
                    Ok(config) => {
                        *current.write().unwrap_or_else(PoisonError::into_inner) =
                            TlsAcceptor::from(config);
                        tracing::info!(listener, cert = %files.cert.display(), "TLS certificate reloaded");
                        loaded = pems;
                        refused = None;
                    }
                    Err(e) => {
                        tracing::warn!(listener, error = %e, "TLS files not reloaded; the last good ones stay");
                        refused = Some(pems);
                    }
                }
            }
        });
        Ok(Self { current })
    }

    /// The acceptor for the next handshake.
    pub fn acceptor(&self) -> TlsAcceptor {
        self.current
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// A refused TLS handshake.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Refusal {
    /// `xds` or `api`.
    pub listener: &'static str,
    pub peer: String,
    pub reason: String,
    pub at_unix_ms: u64,
}

/// Refused handshakes are logged within a budget ([`crate::log_limit`]).
static LOGGED: crate::log_limit::LogBudget = crate::log_limit::LogBudget::new();

/// The latest refused handshakes (at most [`Refusals::KEPT`]), with a total.
#[derive(Debug, Clone, Default)]
pub struct Refusals(Arc<Mutex<(VecDeque<Refusal>, u64)>>);

impl Refusals {
    pub const KEPT: usize = 20;

    pub fn record(&self, listener: &'static str, peer: SocketAddr, reason: String) {
        if let Some(left_out) = LOGGED.take() {
            tracing::warn!(listener, %peer, %reason, left_out, "TLS handshake refused");
        }
        let at_unix_ms = crate::clock::now_unix_ms();
        let mut g = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        if g.0.len() == Self::KEPT {
            g.0.pop_front();
        }
        g.0.push_back(Refusal {
            listener,
            peer: peer.to_string(),
            reason,
            at_unix_ms,
        });
        g.1 += 1;
    }

    /// The kept refusals (oldest first) and how many there were in all.
    pub fn list(&self) -> (Vec<Refusal>, u64) {
        let g = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        (g.0.iter().cloned().collect(), g.1)
    }
}

/// Completes the TLS handshake of `stream` within [`HANDSHAKE_TIMEOUT`];
/// a failure is recorded in `refusals`.
pub async fn handshake(
    acceptor: &TlsAcceptor,
    stream: TcpStream,
    peer: SocketAddr,
    listener: &'static str,
    refusals: &Refusals,
) -> Option<TlsStream<TcpStream>> {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            refusals.record(listener, peer, e.to_string());
            None
        }
        Err(_) => {
            refusals.record(listener, peer, "no TLS handshake within 10 s".into());
            None
        }
    }
}

/// A server-side TLS connection, as tonic's incoming stream wants it.
pub struct TlsConn(pub TlsStream<TcpStream>);

impl AsyncRead for TlsConn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for TlsConn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.0.is_write_vectored()
    }
}

impl tonic::transport::server::Connected for TlsConn {
    type ConnectInfo = ();
    fn connect_info(&self) {}
}

/// The TLS connections of `listener`: each accepted TCP connection is
/// handshaken in its own task (a slow peer holds up nobody); refused ones are
/// recorded. The stream ends when its receiver is dropped.
pub fn incoming(
    listener: TcpListener,
    acceptor: ReloadingAcceptor,
    name: &'static str,
    refusals: Refusals,
) -> tokio_stream::wrappers::ReceiverStream<io::Result<TlsConn>> {
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_HANDSHAKES));
    tokio::spawn(async move {
        loop {
            let accepted = tokio::select! {
                a = listener.accept() => a,
                () = tx.closed() => return,
            };
            let (stream, peer) = match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(listener = name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let Ok(slot) = slots.clone().try_acquire_owned() else {
                refusals.record(
                    name,
                    peer,
                    format!("{MAX_HANDSHAKES} handshakes in progress"),
                );
                continue;
            };
            let _ = stream.set_nodelay(true);
            let (acceptor, refusals, tx) = (acceptor.acceptor(), refusals.clone(), tx.clone());
            tokio::spawn(async move {
                let handshaken = handshake(&acceptor, stream, peer, name, &refusals).await;
                drop(slot);
                if let Some(tls) = handshaken {
                    let _ = tx.send(Ok(TlsConn(tls))).await;
                }
            });
        }
    });
    tokio_stream::wrappers::ReceiverStream::new(rx)
}
