//! The transfer engine's frame header, as any peer on the data port can send it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_transfer::tcp::frame::Header;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::decode(data) {
        // What decodes re-encodes to the same header.
        let again = Header::decode(&h.encode()).expect("a header we encoded decodes");
        assert_eq!(again.encode(), h.encode());
        let _ = h.payload_len();
    }
});
