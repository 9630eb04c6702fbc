//! Helpers shared by the tests that run a real Envoy against the ADS server.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
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

mod ports;
pub use ports::free_port;

/// An upstream on 127.0.0.1 that answers every request `200` with `body`, and
/// says in `x-leaked: true|false` whether any `x-switchyard-*` header reached it.
pub fn responder(body: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let mut buf = [0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let leaked = String::from_utf8_lossy(&seen)
                    .to_ascii_lowercase()
                    .contains("x-switchyard-");
                let _ = write!(
                    conn,
                    "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nx-leaked: {leaked}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    addr
}
