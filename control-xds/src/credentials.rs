//! Where the CLI finds its API credential, and where `serve` leaves the admin
//! credential for the CLI on the same machine.
//!
//! The CLI uses, in this order: `SWITCHYARD_TOKEN` (the token itself),
//! `--token-file FILE` / `SWITCHYARD_TOKEN_FILE` (a file holding it), then the
//! per-user credential of the server it talks to:
//! `$XDG_CONFIG_HOME/switchyard/credentials/HOST_PORT` (default
//! `~/.config/switchyard/credentials/HOST_PORT`, e.g. `127.0.0.1_18001`).
//! `switchyard serve` writes its admin token there on every start (directory
//! 0700, file 0600, atomically), so `switchyard status` works without flags on
//! the machine that runs the control plane, and only for the user who runs it.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// The token in the environment.
pub const TOKEN_ENV: &str = "SWITCHYARD_TOKEN";

/// Why no credential could be read.
#[derive(Debug, thiserror::Error)]
pub enum CredentialError {
    #[error("cannot read the token file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the token file {0} is empty")]
    Empty(PathBuf),
}

/// `$XDG_CONFIG_HOME/switchyard/credentials` (or `~/.config/...`).
pub fn credentials_dir() -> Option<PathBuf> {
    let base = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| {
            std::env::var_os("HOME")
                .filter(|v| !v.is_empty())
                .map(|h| PathBuf::from(h).join(".config"))
        })?;
    Some(base.join("switchyard").join("credentials"))
}

/// The file name for a server: its `host:port` with `:` as `_` (brackets of an
/// IPv6 address dropped). `server` may be a URL (`https://h:1/`) or `host:port`.
pub fn server_key(server: &str) -> String {
    let rest = server.split_once("://").map_or(server, |(_, r)| r);
    let authority = rest.split('/').next().unwrap_or_default();
    authority
        .chars()
        .filter(|c| *c != '[' && *c != ']')
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// The per-user credential file of `server`.
pub fn server_credential_path(server: &str) -> Option<PathBuf> {
    Some(credentials_dir()?.join(server_key(server)))
}

fn read_token(path: &Path) -> Result<String, CredentialError> {
    let text = std::fs::read_to_string(path).map_err(|source| CredentialError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    let token = text.trim();
    if token.is_empty() {
        return Err(CredentialError::Empty(path.to_path_buf()));
    }
    Ok(token.to_string())
}

/// The CLI's credential for `server` (see the module comment); `None` when
/// there is none (the server will answer 401, saying where to put one).
pub fn resolve(server: &str, token_file: Option<&Path>) -> Result<Option<String>, CredentialError> {
    if let Some(token) = std::env::var(TOKEN_ENV)
        .ok()
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty())
    {
        return Ok(Some(token));
    }
    if let Some(path) = token_file {
        return read_token(path).map(Some);
    }
    match server_credential_path(server) {
        Some(path) if path.exists() => read_token(&path).map(Some),
        _ => Ok(None),
    }
}

/// Leaves `token` where the CLI on this machine looks for the server at
/// `addr` (an unspecified address is reached as loopback). Returns the file.
pub fn publish(addr: SocketAddr, token: &str) -> std::io::Result<PathBuf> {
    let mut addr = addr;
    if addr.ip().is_unspecified() {
        addr.set_ip(if addr.is_ipv4() {
            std::net::Ipv4Addr::LOCALHOST.into()
        } else {
            std::net::Ipv6Addr::LOCALHOST.into()
        });
    }
    let dir = credentials_dir()
        .ok_or_else(|| std::io::Error::other("neither XDG_CONFIG_HOME nor HOME is set"))?;
    std::fs::create_dir_all(&dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    }
    let path = dir.join(server_key(&addr.to_string()));
    crate::atomic_file::write(&path, format!("{token}\n").as_bytes(), Some(0o600))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_keys() {
        assert_eq!(server_key("http://127.0.0.1:18001"), "127.0.0.1_18001");
        assert_eq!(server_key("https://127.0.0.1:18001/"), "127.0.0.1_18001");
        assert_eq!(server_key("127.0.0.1:18001"), "127.0.0.1_18001");
        assert_eq!(server_key("http://[::1]:18001"), "__1_18001");
        assert_eq!(server_key("http://cp.example:443/x"), "cp.example_443");
    }
}
