//! A data-port connection's byte stream: headers one after the other, control payloads
//! (bounded before anything is allocated), and payloads drained, as the listener
//! reads them. Any stream ends in an error or EOF, never a panic or a huge allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_transfer::tcp::io::{read_control, read_header};
use std::sync::OnceLock;

/// The listener's bound on a control payload.
const LIMIT: u64 = 1 << 20;

fn rt() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    rt().block_on(async {
        let mut r = data;
        for _ in 0..64 {
            match read_header(&mut r).await {
                Ok(Some(h)) => {
                    let n = h.payload_len();
                    match read_control(&mut r, n, LIMIT, None).await {
                        Ok(v) => assert_eq!(v.len() as u64, n),
                        Err(_) => return,
                    }
                }
                _ => return,
            }
        }
    });
});
