//! New `kf-context` signing keys: random key ids and 32-byte secrets from the
//! OS's CSPRNG.

use switchyard_engine::context::ContextKey;

/// A new key id: `k-` and 8 random hex digits.
pub fn new_kid() -> std::io::Result<String> {
    let mut tag = [0u8; 4];
    getrandom::fill(&mut tag).map_err(std::io::Error::other)?;
    Ok(format!(
        "k-{}",
        tag.iter().map(|b| format!("{b:02x}")).collect::<String>()
    ))
}

/// Fresh context-signing keys: one key of 32 random bytes from the OS.
pub fn generate_context_key(kid: &str) -> std::io::Result<ContextKey> {
    use base64::Engine as _;
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(std::io::Error::other)?;
    Ok(ContextKey {
        kid: kid.to_string(),
        secret: base64::engine::general_purpose::STANDARD.encode(secret),
    })
}
