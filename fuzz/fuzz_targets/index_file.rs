//! The master's snapshot and change-log files (`--enable_snapshot`): a torn or foreign
//! file must be refused or cut at its last whole frame, never a panic or an unbounded
//! allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_master::persist::file;

fuzz_target!(|data: &[u8]| {
    let mut bytes = file::HEADER.to_vec();
    bytes.extend_from_slice(data);
    let _ = file::parse(&bytes, "fuzz");
    let _ = file::parse(data, "fuzz");
});
