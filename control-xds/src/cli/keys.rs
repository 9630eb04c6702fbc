//! The credential verbs: `keys` (the context-signing keys) and `token` (the
//! API's tokens).

use std::process::ExitCode;

use clap::Subcommand;
use serde::Serialize;

use super::flow::Session;
use crate::views::{TokenCreatedView, TokenListView, TokenRevokedView};

#[derive(Subcommand)]
pub enum KeyCommand {
    /// Manage the API's tokens (admin): create one per user, pipeline or Envoy.
    Token {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Rotate or retire the keys that sign the routing context `kf-context`.
    Keys {
        #[command(subcommand)]
        action: KeysAction,
    },
}

#[derive(Subcommand)]
pub enum TokenAction {
    /// A new token; it is printed once and stored only as a hash.
    Create {
        /// read (status, history, explain, resources), release (+ release,
        /// rollback, canaries), admin (+ apply, publish, delete, keys, tokens)
        /// or pull (the filter's pull mode only: GET /v1/config).
        #[arg(long)]
        role: String,
        /// A unique name (who or what uses it).
        #[arg(long)]
        name: String,
    },
    /// Every token's name, role and creation time.
    List,
    /// The token stops working at once.
    Revoke { name: String },
}

#[derive(Subcommand)]
pub enum KeysAction {
    /// A new key signs from now on; the old ones keep verifying until retired.
    Rotate,
    /// Contexts signed with KID stop verifying (not the signing key).
    Retire { kid: String },
}

#[derive(Serialize)]
struct Empty {}

#[derive(Serialize)]
struct RetireBody {
    kid: String,
}

#[derive(Serialize)]
struct CreateTokenBody {
    role: String,
    name: String,
}

#[derive(Serialize)]
struct RevokeTokenBody {
    name: String,
}

impl KeyCommand {
    pub fn run(self, session: &Session) -> anyhow::Result<ExitCode> {
        match self {
            KeyCommand::Keys {
                action: KeysAction::Rotate,
            } => session.change("/v1/keys/rotate", &Empty {}),
            KeyCommand::Keys {
                action: KeysAction::Retire { kid },
            } => session.change("/v1/keys/retire", &RetireBody { kid }),
            KeyCommand::Token {
                action: TokenAction::Create { role, name },
            } => session.post("/v1/tokens", &CreateTokenBody { role, name }, human_token),
            KeyCommand::Token {
                action: TokenAction::List,
            } => session.get("/v1/tokens", &[], human_tokens),
            KeyCommand::Token {
                action: TokenAction::Revoke { name },
            } => session.post(
                "/v1/tokens/revoke",
                &RevokeTokenBody { name },
                |v: &TokenRevokedView| format!("revoked {} ({})", v.revoked, v.role),
            ),
        }
    }
}

/// The new token alone on stdout (for `$(switchyard token create ...)`).
fn human_token(v: &TokenCreatedView) -> String {
    eprintln!(
        "created token '{}' with role {}; it is shown only now (stored as a hash)",
        v.name, v.role
    );
    v.token.clone()
}

fn human_tokens(v: &TokenListView) -> String {
    v.tokens
        .iter()
        .map(|t| format!("{:<20} {:<8} created {}", t.name, t.role, t.created))
        .collect::<Vec<_>>()
        .join("\n")
}
