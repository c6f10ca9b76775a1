//! Values users and peers hand us as text: sizes ("4 GB"), durations, host:port,
//! etcd:// master addresses.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_common::{duration, hostname, size};

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(n) = size::parse_size("fuzz", s) {
        let _ = size::format_size(n);
    }
    let _ = duration::parse_millis("fuzz", s);
    let _ = duration::parse_secs("fuzz", s);
    let (_, port) = hostname::split_host_port(s);
    if let Some(p) = port {
        let _ = hostname::with_port(s, p);
    }
    let _ = mooncake_client::discovery::parse_etcd_address(s);
});
