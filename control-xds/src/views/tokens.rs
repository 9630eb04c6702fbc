//! `/v1/tokens`: the API's tokens (never their hashes).

use serde::{Deserialize, Serialize};

/// `GET /v1/tokens`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenListView {
    pub tokens: Vec<TokenView>,
}

/// A token's name, role and creation time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenView {
    pub name: String,
    pub role: String,
    /// RFC 3339, UTC.
    pub created: String,
}

/// `POST /v1/tokens`: the new token, shown only in this answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenCreatedView {
    pub name: String,
    pub role: String,
    pub token: String,
}

/// `POST /v1/tokens/revoke`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRevokedView {
    /// The revoked token's name.
    pub revoked: String,
    pub role: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::views::assert_round_trip;
    use serde_json::json;

    #[test]
    fn tokens_round_trip() {
        assert_round_trip::<TokenListView>(
            json!({"tokens": [{"name": "ci", "role": "release", "created": "2026-12-07T09:00:00Z"}]}),
        );
        assert_round_trip::<TokenCreatedView>(
            json!({"name": "ci", "role": "release", "token": "syt_x"}),
        );
        assert_round_trip::<TokenRevokedView>(json!({"revoked": "ci", "role": "release"}));
    }
}
