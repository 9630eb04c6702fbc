//! Helpers shared by the tests that run a real Envoy against the ADS server.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Child;

/// The Envoy binary: `$ENVOY_BIN`, else the one `scripts/install-envoy.sh` installs.
pub fn envoy_bin() -> Option<PathBuf> {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/envoy"))
        });
    path.is_file().then_some(path)
}

/// Kills Envoy when the test ends, pass or fail.
pub struct Envoy(pub Child);

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap()
}
