//! The CLI's side of the HTTP API ([`crate::api`]): one blocking request per
//! command, JSON in and out.

use std::time::Duration;

use serde_json::Value;

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No answer: the server is not running, or the address is wrong.
    #[error("cannot reach switchyard serve at {server}: {reason}")]
    Unreachable { server: String, reason: String },
    /// The server answered with an error (`{error, message, problems?}`).
    #[error("{message}")]
    Api {
        status: u16,
        code: String,
        message: String,
        body: Value,
    },
}

/// A client for one server (`--server`, e.g. `http://127.0.0.1:18001`).
pub struct Client {
    base: String,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(server: &str) -> Self {
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(30)))
            .build()
            .into();
        Self {
            base: server.trim_end_matches('/').to_string(),
            agent,
        }
    }

    /// `GET path` (with `query` pairs).
    pub fn get(&self, path: &str, query: &[(&str, &str)]) -> Result<Value, ClientError> {
        let mut req = self.agent.get(format!("{}{path}", self.base));
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        self.answer(req.call())
    }

    /// `GET path` (with `query` pairs), allowed to take up to `timeout`.
    pub fn get_with_timeout(
        &self,
        path: &str,
        query: &[(&str, &str)],
        timeout: Duration,
    ) -> Result<Value, ClientError> {
        let mut req = self
            .agent
            .get(format!("{}{path}", self.base))
            .config()
            .timeout_global(Some(timeout))
            .build();
        for (k, v) in query {
            req = req.query(*k, *v);
        }
        self.answer(req.call())
    }

    /// `POST path` with a JSON body.
    pub fn post(&self, path: &str, body: &Value) -> Result<Value, ClientError> {
        let req = self.agent.post(format!("{}{path}", self.base));
        self.answer(req.send_json(body))
    }

    fn answer(
        &self,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<Value, ClientError> {
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
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if (200..300).contains(&status) {
            return Ok(body);
        }
        Err(ClientError::Api {
            status,
            code: body["error"].as_str().unwrap_or("error").to_string(),
            message: body["message"]
                .as_str()
                .map_or_else(|| format!("HTTP {status}: {body}"), str::to_string),
            body,
        })
    }
}
