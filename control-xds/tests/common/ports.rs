//! Listening ports for the processes the tests start (Envoy, `switchyard serve`),
//! from below the kernel's ephemeral range.
//!
//! A port that `bind(0)` returned and that was closed again is free only for a
//! moment: the kernel hands ports from the ephemeral range to every outgoing
//! connection, so the Envoy started a second later can find its listener's port
//! taken ("Address already in use"). Ports below
//! `/proc/sys/net/ipv4/ip_local_port_range` are never given to outgoing
//! connections; each one handed out here was free when checked, and one test
//! binary never hands out the same port twice (tests run on parallel threads).
//! Same rule as `tests/e2e/ports.py`.

use std::net::TcpListener;
use std::sync::Mutex;

const LOWEST: u16 = 10000;

struct Allocator {
    next: u32,
    handed: u32,
}

static ALLOCATOR: Mutex<Option<Allocator>> = Mutex::new(None);

fn ephemeral_low() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(32768)
}

/// A port on 127.0.0.1 that is free now, outside the ephemeral range, and not
/// handed out before by this process.
pub fn free_port() -> u16 {
    let high = ephemeral_low();
    let size = u32::from(high.saturating_sub(LOWEST));
    let mut guard = ALLOCATOR.lock().unwrap_or_else(|e| e.into_inner());
    let alloc = guard.get_or_insert_with(|| Allocator {
        // Each process starts at its own point of the range.
        next: if size == 0 {
            0
        } else {
            (u64::from(std::process::id()) * 7919 % u64::from(size)) as u32
        },
        handed: 0,
    });
    while alloc.handed < size {
        let port = LOWEST + alloc.next as u16;
        alloc.next = (alloc.next + 1) % size;
        alloc.handed += 1;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    // The range is used up (or empty on this machine): let the kernel pick.
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}
