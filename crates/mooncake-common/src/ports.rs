//! Picking a loopback port for a process about to be started (tests, benchmark
//! drivers, the local cluster).
//!
//! Why not port 0: the kernel hands out ports from its ephemeral range as the source
//! ports of outgoing connections too, and the port picked here is bound only later, by
//! a process still to start, while other connections open; a port picked by binding
//! port 0 was once taken that way in between (the store could not bind). Ports below
//! the ephemeral range are never handed out as source ports.

use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};

/// The lowest port picked from (below it: well-known services and local habits).
const LOWEST: u64 = 10_000;

/// A loopback port nothing listened on a moment ago, picked at random below the
/// kernel's ephemeral range (port 0's answer only if that range leaves no room).
pub fn free_loopback_port() -> std::io::Result<u16> {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    let lo = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok())
        .unwrap_or(32768);
    if lo > LOWEST + 1_000 {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        let mut x = (nanos
            ^ (u64::from(std::process::id()) << 32)
            ^ SEQ
                .fetch_add(1, Ordering::Relaxed)
                .wrapping_mul(0x9E37_79B9_7F4A_7C15))
            | 1;
        for _ in 0..1000 {
            // xorshift64
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let port = (LOWEST + x % (lo - LOWEST)) as u16;
            if TcpListener::bind(("127.0.0.1", port)).is_ok() {
                return Ok(port);
            }
        }
    }
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_picked_port_is_bindable_and_below_the_ephemeral_range() {
        let lo: u16 = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
            .ok()
            .and_then(|s| s.split_whitespace().next()?.parse().ok())
            .unwrap_or(32768);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..50 {
            let p = free_loopback_port().unwrap();
            if lo as u64 > LOWEST + 1_000 {
                assert!((LOWEST as u16..lo).contains(&p), "{p} outside 10000..{lo}");
            }
            TcpListener::bind(("127.0.0.1", p)).expect("the picked port binds");
            seen.insert(p);
        }
        assert!(
            seen.len() > 40,
            "picks repeat: {} distinct of 50",
            seen.len()
        );
    }
}
