//! `tcp_rtt`: the floor a store's small get is measured against, one TCP round trip
//! of the same size between the same two hosts (network namespaces in the cross-host
//! harness, loopback otherwise).
//!
//! ```text
//! tcp_rtt serve HOST:PORT                    # echo every message back
//! tcp_rtt ping HOST:PORT [SIZE] [COUNT]      # SIZE bytes out and back, COUNT times
//! ```
//! `ping` sends SIZE bytes (default 4096) and waits for all SIZE to come back, with
//! TCP_NODELAY on both ends, as a request/response protocol does; it prints one JSON
//! line: `{"size","count","p50_us","p99_us","mean_us"}`. Native code, so the figure
//! is the network's and the kernel's, not an interpreter's.

use mooncake_benches::latency::Samples;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

const USAGE: &str = "usage: tcp_rtt serve HOST:PORT | tcp_rtt ping HOST:PORT [SIZE] [COUNT]";
/// Larger messages are not round trips of a small get any more.
const MAX_SIZE: usize = 64 << 20;

fn serve(addr: &str) -> std::io::Result<()> {
    let listener = TcpListener::bind(addr)?;
    eprintln!("tcp_rtt: echoing on {}", listener.local_addr()?);
    for conn in listener.incoming() {
        let mut conn = conn?;
        std::thread::spawn(move || {
            let _ = conn.set_nodelay(true);
            let mut buf = vec![0u8; 1 << 20];
            loop {
                match conn.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if conn.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
    }
    Ok(())
}

fn ping(addr: &str, size: usize, count: usize) -> std::io::Result<Samples> {
    let mut conn = TcpStream::connect(addr)?;
    conn.set_nodelay(true)?;
    let out = vec![0x5au8; size];
    let mut back = vec![0u8; size];
    let mut samples = Samples::with_capacity(count);
    // A few unmeasured rounds open the congestion window and warm the caches.
    for i in 0..count + 100 {
        let t0 = Instant::now();
        conn.write_all(&out)?;
        conn.read_exact(&mut back)?;
        if i >= 100 {
            samples.record(t0.elapsed());
        }
    }
    Ok(samples)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).map(String::as_str);
    let number = |i: usize, default: usize| -> usize {
        match arg(i) {
            None => default,
            Some(s) => s.parse().unwrap_or_else(|_| {
                eprintln!("tcp_rtt: {s:?} is not a number\n{USAGE}");
                std::process::exit(2)
            }),
        }
    };
    let result = match (arg(0), arg(1)) {
        (Some("serve"), Some(addr)) => serve(addr),
        (Some("ping"), Some(addr)) => {
            let size = number(2, 4096);
            let count = number(3, 20_000).max(1);
            if size == 0 || size > MAX_SIZE {
                eprintln!("tcp_rtt: SIZE must be 1..={MAX_SIZE} bytes, got {size}");
                std::process::exit(2);
            }
            ping(addr, size, count).map(|mut s| {
                let m = s.summary().expect("at least one sample");
                let us = |d: std::time::Duration| d.as_secs_f64() * 1e6;
                println!(
                    "{{\"size\": {size}, \"count\": {count}, \"p50_us\": {:.1}, \"p99_us\": {:.1}, \"mean_us\": {:.1}}}",
                    us(m.p50),
                    us(m.p99),
                    us(m.mean)
                )
            })
        }
        _ => {
            eprintln!("{USAGE}");
            std::process::exit(2);
        }
    };
    if let Err(e) = result {
        eprintln!("tcp_rtt: {e}");
        std::process::exit(1);
    }
}
