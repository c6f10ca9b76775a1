//! A segment descriptor as read from the metadata server: JSON anyone who can write
//! there controls. Parsed descriptors must answer range questions without panicking.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_transfer::SegmentDescriptor;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(d) = SegmentDescriptor::from_json(s) {
        let _ = d.covers(0, u64::MAX);
        let _ = d.covers(u64::MAX, 1);
        let _ = d.covers(1 << 30, 4096);
        let _ = SegmentDescriptor::from_json(&d.to_json()).expect("our own JSON parses");
    }
});
