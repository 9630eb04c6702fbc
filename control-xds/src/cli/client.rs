//! The CLI's side of the HTTP API ([`crate::api`]): one blocking request per
//! command, JSON in and out (read as [`crate::views`]), with the caller's
//! bearer token, over TLS for an `https://` server (its CA from `--ca-cert`,
//! else the public web roots).
//!
//! Every `POST` names its change with an `Idempotency-Key` ([`crate::change_log`])
//! and, when its outcome is unknown — the server answered `outcome_unknown`,
//! or the connection broke after the request was sent — is sent again with
//! the same key for up to [`RETRY_BUDGET`]: the server never makes a change
//! twice and answers the original outcome, so what the CLI reports is true.

use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::views::ErrorView;

/// How long a change whose outcome is unknown is retried.
pub const RETRY_BUDGET: Duration = Duration::from_secs(45);

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: the server is not running, or the address is wrong.
    #[error("cannot reach switchyard serve at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// The server answered with an error (`{error, message, problems?}`).
    #[error("{}", .body.message)]
    Api {
        status: u16,
        /// The answer (boxed: it keeps the error small).
        body: Box<ErrorView>,
    },
    /// The server answered, but not with what the CLI expects of it.
    #[error("switchyard serve at {server} answered {path} with something unreadable: {reason}")]
    Unreadable {
        server: String,
        path: String,
        reason: String,
    },
    /// The credential could not be read.
    #[error(transparent)]
    Credential(Box<crate::credentials::CredentialError>),
    /// A TLS file given (CA, client certificate or key) could not be used.
    #[error("cannot use the TLS file {path}: {reason}")]
    Tls { path: String, reason: String },
}

/// The CLI's TLS files for an `https://` server.
#[derive(Debug, Clone, Default)]
pub struct ClientTls {
    /// The CA that signed the server's certificate (`--ca-cert`).
    pub ca_cert: Option<std::path::PathBuf>,
    /// A client certificate chain and key (`--client-cert`, `--client-key`).
    pub client_cert: Option<(std::path::PathBuf, std::path::PathBuf)>,
}

fn tls_error(path: &std::path::Path, reason: String) -> ClientError {
    ClientError::Tls {
        path: path.display().to_string(),
        reason,
    }
}

/// The certificates of a PEM file.
fn pem_certs(path: &std::path::Path) -> Result<Vec<ureq::tls::Certificate<'static>>, ClientError> {
    let pem = std::fs::read(path).map_err(|e| tls_error(path, e.to_string()))?;
    let mut certs = Vec::new();
    for item in ureq::tls::parse_pem(&pem) {
        if let ureq::tls::PemItem::Certificate(c) =
            item.map_err(|e| tls_error(path, e.to_string()))?
        {
            certs.push(c);
        }
    }
    if certs.is_empty() {
        return Err(tls_error(path, "no certificate in it".into()));
    }
    Ok(certs)
}

/// Whether a failed request may have reached the server (the connection broke
/// or timed out after it was made) rather than never left (no connection).
fn maybe_sent(e: &ureq::Error) -> bool {
    match e {
        ureq::Error::ConnectionFailed | ureq::Error::HostNotFound => false,
        ureq::Error::Io(io) => !matches!(
            io.kind(),
            std::io::ErrorKind::ConnectionRefused | std::io::ErrorKind::NotFound
        ),
        ureq::Error::Timeout(_) => true,
        _ => false,
    }
}

/// A client for one server (`--server`, e.g. `http://127.0.0.1:18001`).
pub struct Client {
    base: String,
    agent: ureq::Agent,
    token: Option<String>,
}

impl Client {
    /// A client without a credential (only `/healthz` answers it).
    pub fn new(server: &str) -> Self {
        Self::build(server, None)
    }

    fn build(server: &str, tls: Option<ureq::tls::TlsConfig>) -> Self {
        let mut config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)));
        if let Some(tls) = tls {
            config = config.tls_config(tls);
        }
        Self {
            base: server.trim_end_matches('/').to_string(),
            agent: config.build().into(),
            token: None,
        }
    }

    /// A client for an `https://` server: trusting the CA certificates of
    /// `tls.ca_cert` (else the public web roots), presenting `tls.client_cert`
    /// (mTLS, `serve --api-client-ca`).
    pub fn with_tls(server: &str, tls: &ClientTls) -> Result<Self, ClientError> {
        let mut config = ureq::tls::TlsConfig::builder();
        if let Some(ca) = &tls.ca_cert {
            config = config.root_certs(ureq::tls::RootCerts::new_with_certs(&pem_certs(ca)?));
        }
        if let Some((cert, key)) = &tls.client_cert {
            let chain = pem_certs(cert)?;
            let pem = std::fs::read(key).map_err(|e| tls_error(key, e.to_string()))?;
            let key_der =
                ureq::tls::PrivateKey::from_pem(&pem).map_err(|e| tls_error(key, e.to_string()))?;
            config =
                config.client_cert(Some(ureq::tls::ClientCert::new_with_certs(&chain, key_der)));
        }
        Ok(Self::build(server, Some(config.build())))
    }

    /// The CLI's client for `server`: its TLS files and the credential
    /// [`crate::credentials::resolve`] finds.
    pub fn connect(
        server: &str,
        token_file: Option<&std::path::Path>,
        tls: &ClientTls,
    ) -> Result<Self, ClientError> {
        let client = if tls.ca_cert.is_some() || tls.client_cert.is_some() {
            Self::with_tls(server, tls)?
        } else {
            Self::new(server)
        };
        let token = crate::credentials::resolve(server, token_file)
            .map_err(|e| ClientError::Credential(Box::new(e)))?;
        Ok(client.with_token(token))
    }

    /// Sends `token` as `Authorization: Bearer` with every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn auth<B>(&self, req: ureq::RequestBuilder<B>) -> ureq::RequestBuilder<B> {
        match &self.token {
            Some(t) => req.header("authorization", format!("Bearer {t}")),
            None => req,
        }
    }

    /// `GET path` (with `query` pairs), its answer read as `T`.
    pub fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
    ) -> Result<T, ClientError> {
        let mut req = self.auth(self.agent.get(format!("{}{path}", self.base)));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        self.answer(path, req.call())
    }

    /// `GET path` (with `query` pairs), allowed to take up to `timeout`.
    pub fn get_with_timeout<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<T, ClientError> {
        let mut req = self
            .auth(self.agent.get(format!("{}{path}", self.base)))
            .config()
            .timeout_global(Some(timeout))
            .build();
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        self.answer(path, req.call())
    }

    /// `POST path` with a JSON body, its answer read as `T`: one change,
    /// under one new `Idempotency-Key`, retried with it while its outcome is
    /// unknown.
    pub fn post<T: DeserializeOwned, B: Serialize>(
        &self,
        path: &str,
        body: &B,
    ) -> Result<T, ClientError> {
        let key = format!("cli-{}", crate::change_log::new_change_id());
        let deadline = std::time::Instant::now() + RETRY_BUDGET;
        let mut pause = Duration::from_millis(250);
        loop {
            let req = self
                .auth(self.agent.post(format!("{}{path}", self.base)))
                .header("idempotency-key", &key);
            let sent = req.send_json(body);
            let unknown = match &sent {
                Err(e) => maybe_sent(e),
                Ok(_) => false,
            };
            let answer = self.answer(path, sent);
            let unknown = unknown
                || matches!(&answer, Err(ClientError::Api { body, .. }) if body.error == "outcome_unknown");
            if !unknown || std::time::Instant::now() + pause >= deadline {
                return answer;
            }
            tracing::debug!(key, "the change's outcome is unknown; asking again");
            std::thread::sleep(pause);
            pause = (pause * 2).min(Duration::from_secs(4));
        }
    }

    fn answer<T: DeserializeOwned>(
        &self,
        path: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<T, ClientError> {
        let mut response = result.map_err(|e| ClientError::Unreachable {
            server: self.base.clone(),
            reason: e.to_string(),
        })?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| ClientError::Unreachable {
                server: self.base.clone(),
                reason: e.to_string(),
            })?;
        if (200..300).contains(&status) {
            return serde_json::from_str(&text).map_err(|e| ClientError::Unreadable {
                server: self.base.clone(),
                path: path.to_string(),
                reason: e.to_string(),
            });
        }
        let body = serde_json::from_str(&text).unwrap_or_else(|_| ErrorView {
            error: "error".into(),
            message: format!("HTTP {status}: {}", serde_json::Value::String(text)),
            problems: None,
            change: None,
        });
        Err(ClientError::Api {
            status,
            body: Box::new(body),
        })
    }
}
