//! `switchyard package`: the filter as an OCI image layout that istio-agent
//! accepts, written without Docker.
//!
//! istio-agent's image fetcher (istio/istio `pkg/wasm/imagefetcher.go`) takes
//! the *last* layer of an OCI image whose media type is
//! `application/vnd.oci.image.layer.v1.tar+gzip` (the "compat" variant), gunzips
//! and untars it, and uses the file whose base name is `plugin.wasm`. It checks
//! `WasmPlugin.spec.sha256` of an `oci://` URL against the image *manifest's*
//! digest (`pkg/wasm/cache.go`), and against the module's own sha256 for
//! `http(s)://` URLs. So this writes one such layer (a ustar archive holding
//! `plugin.wasm`, gzip with stored blocks — deterministic, no compression
//! library), an OCI image config and manifest, `index.json` naming the tag, and
//! prints both digests.
//!
//! Byte-for-byte reproducible: fixed timestamps, owner and mode.

use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

pub const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
/// The file name istio-agent looks for in the layer.
pub const WASM_FILE: &str = "plugin.wasm";

/// What was written.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Packaged {
    pub layout: PathBuf,
    pub tag: String,
    /// `sha256` of the image manifest: `WasmPlugin.spec.sha256` for `oci://`.
    pub manifest_sha256: String,
    /// `sha256` of `plugin.wasm`: `WasmPlugin.spec.sha256` for `https://`/`file://`.
    pub wasm_sha256: String,
    pub wasm_bytes: usize,
}

/// Why nothing was packaged.
#[derive(Debug, thiserror::Error)]
pub enum PackageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}: not a WebAssembly module (no \\0asm header)")]
    NotWasm(PathBuf),
    #[error("tag '{0}' is not an OCI tag ([A-Za-z0-9_][A-Za-z0-9._-]{{0,127}})")]
    BadTag(String),
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Hex sha256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> String {
    hex(&Sha256::digest(bytes))
}

/// A ustar archive with one regular file.
fn tar_one(name: &str, data: &[u8]) -> Vec<u8> {
    let mut header = [0u8; 512];
    header[..name.len()].copy_from_slice(name.as_bytes());
    let octal = |field: &mut [u8], value: u64| {
        let text = format!("{value:0width$o}\0", width = field.len() - 1);
        field.copy_from_slice(text.as_bytes());
    };
    octal(&mut header[100..108], 0o644); // mode
    octal(&mut header[108..116], 0); // uid
    octal(&mut header[116..124], 0); // gid
    octal(&mut header[124..136], data.len() as u64); // size
    octal(&mut header[136..148], 0); // mtime
    header[156] = b'0'; // regular file
    header[257..263].copy_from_slice(b"ustar\0");
    header[263..265].copy_from_slice(b"00");
    // The checksum is computed with its own field as spaces.
    header[148..156].copy_from_slice(b"        ");
    let sum: u32 = header.iter().map(|b| u32::from(*b)).sum();
    let text = format!("{sum:06o}\0 ");
    header[148..156].copy_from_slice(text.as_bytes());
    let mut out = header.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out.extend_from_slice(&[0u8; 1024]); // two zero blocks end the archive
    out
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = (crc >> 1) ^ (0xEDB8_8320 & (!(crc & 1)).wrapping_add(1));
        }
    }
    !crc
}

/// gzip (RFC 1952) of `data` in stored deflate blocks (RFC 1951 §3.2.4).
fn gzip_stored(data: &[u8]) -> Vec<u8> {
    // No name, mtime 0, OS unknown: deterministic.
    let mut out = vec![0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255];
    let mut chunks = data.chunks(0xffff).peekable();
    if chunks.peek().is_none() {
        out.extend_from_slice(&[1, 0, 0, 0xff, 0xff]);
    }
    while let Some(chunk) = chunks.next() {
        out.push(u8::from(chunks.peek().is_none())); // BFINAL, BTYPE 00
        let len = chunk.len() as u16;
        out.extend_from_slice(&len.to_le_bytes());
        out.extend_from_slice(&(!len).to_le_bytes());
        out.extend_from_slice(chunk);
    }
    out.extend_from_slice(&crc32(data).to_le_bytes());
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out
}

fn valid_tag(tag: &str) -> bool {
    let b = tag.as_bytes();
    !b.is_empty()
        && b.len() <= 128
        && (b[0].is_ascii_alphanumeric() || b[0] == b'_')
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'-'))
}

fn write(path: &Path, bytes: &[u8]) -> Result<(), PackageError> {
    std::fs::write(path, bytes).map_err(|source| PackageError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn descriptor(media_type: &str, bytes: &[u8]) -> Value {
    json!({"mediaType": media_type, "digest": format!("sha256:{}", sha256(bytes)), "size": bytes.len()})
}

/// Writes the OCI image layout of `wasm` into `out` (created if missing).
pub fn package(wasm: &Path, out: &Path, tag: &str) -> Result<Packaged, PackageError> {
    if !valid_tag(tag) {
        return Err(PackageError::BadTag(tag.to_string()));
    }
    let module = std::fs::read(wasm).map_err(|source| PackageError::Io {
        path: wasm.to_path_buf(),
        source,
    })?;
    if !module.starts_with(b"\0asm") {
        return Err(PackageError::NotWasm(wasm.to_path_buf()));
    }
    let tar = tar_one(WASM_FILE, &module);
    let layer = gzip_stored(&tar);
    let config = serde_json::to_vec(&json!({
        "architecture": "wasm",
        "os": "wasip1",
        "rootfs": {"type": "layers", "diff_ids": [format!("sha256:{}", sha256(&tar))]},
        "config": {}
    }))
    .unwrap_or_default();
    let mut layer_descriptor = descriptor(LAYER_MEDIA_TYPE, &layer);
    layer_descriptor["annotations"] = json!({"org.opencontainers.image.title": WASM_FILE});
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_MEDIA_TYPE,
        "config": descriptor(CONFIG_MEDIA_TYPE, &config),
        "layers": [layer_descriptor]
    }))
    .unwrap_or_default();
    let mut manifest_descriptor = descriptor(MANIFEST_MEDIA_TYPE, &manifest);
    manifest_descriptor["annotations"] = json!({"org.opencontainers.image.ref.name": tag});
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [manifest_descriptor]
    }))
    .unwrap_or_default();

    let blobs = out.join("blobs").join("sha256");
    std::fs::create_dir_all(&blobs).map_err(|source| PackageError::Io {
        path: blobs.clone(),
        source,
    })?;
    for blob in [&layer, &config, &manifest] {
        write(&blobs.join(sha256(blob)), blob)?;
    }
    write(
        &out.join("oci-layout"),
        br#"{"imageLayoutVersion":"1.0.0"}"#,
    )?;
    write(&out.join("index.json"), &index)?;
    Ok(Packaged {
        layout: out.to_path_buf(),
        tag: tag.to_string(),
        manifest_sha256: sha256(&manifest),
        wasm_sha256: sha256(&module),
        wasm_bytes: module.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn tags_follow_the_oci_grammar() {
        assert!(valid_tag("0.1.0"));
        assert!(valid_tag("latest"));
        assert!(!valid_tag("-x"));
        assert!(!valid_tag("a/b"));
        assert!(!valid_tag(""));
    }
}
