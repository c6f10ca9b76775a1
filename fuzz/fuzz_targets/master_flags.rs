//! The master's command line, split on NUL bytes: flags come from manifests and
//! scripts, and a bad one must be an error that names it.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let args: Vec<&str> = s.split('\0').filter(|a| !a.is_empty()).collect();
    let _ = mooncake_master::flags::parse(args);
});
