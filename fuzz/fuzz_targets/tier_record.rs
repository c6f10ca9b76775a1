//! The SSD tier's files after a crash or a hostile edit: a record header on its own,
//! then a whole tier directory (index + data) opened as a restarted owner would. A
//! corrupt record must be a miss (never returned, never a panic), and whatever the tier
//! finds must read back within its bounds.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mooncake_tier::record::Header;
use mooncake_tier::{DiskTier, TierConfig};

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Header::decode(data) {
        let again = Header::decode(&h.encode()).expect("our own header decodes");
        assert_eq!(again, h);
    }
    // First byte: where the index ends and the data file begins.
    let Some((&cut, rest)) = data.split_first() else {
        return;
    };
    let cut = (cut as usize * rest.len() / 255).min(rest.len());
    let (index, value_bytes) = rest.split_at(cut);
    let dir = std::env::temp_dir().join(format!("mc-fuzz-tier-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("tier.index"), index).unwrap();
    std::fs::write(dir.join("tier.data"), value_bytes).unwrap();
    let cfg = TierConfig::from_values(
        Some(dir.display().to_string()),
        Some("1048576".into()),
        None,
    )
    .unwrap()
    .unwrap();
    if let Ok(tier) = DiskTier::open(&cfg) {
        for r in tier.records() {
            let _ = tier.read_value(r.value_offset, r.value_len.min(1 << 20));
        }
        let _ = tier.read_value(u64::MAX - 3, 8);
        let _ = tier.record_at(u64::MAX);
    }
    let _ = std::fs::remove_dir_all(&dir);
});
