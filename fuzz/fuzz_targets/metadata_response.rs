//! The HTTP metadata client's response parser: whatever a metadata server (or a
//! stranger in its place) answers.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_transfer::metadata::http::parse_response;

fuzz_target!(|data: &[u8]| {
    if let Ok(r) = parse_response(data) {
        assert!(r.body.len() <= data.len());
    }
});
