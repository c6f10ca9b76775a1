//! The bound on the index's size (`--index_memory_limit`), so that no load can run
//! the master out of memory.
//!
//! Why a memory size on the command line but an object count inside: operators size a
//! machine in bytes, but counting bytes exactly on every insert would need a shared
//! counter on the hot path (or a walk of the keys). What is free is the length of the
//! shard a put already holds locked. So the limit is turned into an object count once,
//! at start-up, with a per-object budget that covers the worst case of the measured
//! cost (see [`BYTES_PER_OBJECT_BUDGET`]), and split evenly over the shards: a put of a
//! new key into a shard at its cap evicts that shard's least recently used objects
//! first. The shards hold a uniform hash sample of the keys, so LRU inside one shard
//! tracks global LRU closely, and the total can never exceed the limit because every
//! shard stays within its share.

use super::SHARDS;

/// Bytes of master memory budgeted per object when turning the memory limit into an
/// object count. Cost of one object with a 20-byte key and one replica: the map entry
/// (two pointers, 24 B + 1 control byte) at the lowest load factor a hashbrown table
/// has (7/16, right after it doubles) is ~57 B, plus the key's heap block (24 B) and
/// the boxed object (56 B): ~137 B. 256 B leaves room for longer keys, a second
/// replica and the segment allocator's node (32 B per live allocation).
pub const BYTES_PER_OBJECT_BUDGET: u64 = 256;

/// Share of the machine's memory the default limit gives the index. A master often
/// shares its host with a store (whose segment is most of the RAM) or an inference
/// engine; a quarter is far above what normal use needs (10^7 objects is ~2 GB) while
/// still stopping the index from taking the whole machine.
pub const AUTO_FRACTION: f64 = 0.25;

/// The smallest object count a limit may give: at least 16 objects per shard, so that
/// per-shard eviction has something to choose from.
pub const MIN_OBJECTS: u64 = 16 * SHARDS as u64;

/// `--index_memory_limit` as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexMemoryLimit {
    /// A quarter of the machine's memory (physical, or the cgroup's limit if lower).
    Auto,
    /// No limit (`0`).
    Unlimited,
    Bytes(u64),
}

impl IndexMemoryLimit {
    /// `auto`, `0` (no limit) or a size such as `8GB` / `512mb` / `1073741824`.
    pub fn parse(flag: &str, v: &str) -> Result<Self, String> {
        let t = v.trim();
        if t.eq_ignore_ascii_case("auto") {
            return Ok(Self::Auto);
        }
        let bytes = mooncake_common::size::parse_size(&format!("--{flag}"), t)
            .map_err(|e| format!("{e}; use auto, 0 (no limit) or a size like 8GB"))?;
        if bytes == 0 {
            return Ok(Self::Unlimited);
        }
        if bytes / BYTES_PER_OBJECT_BUDGET < MIN_OBJECTS {
            return Err(format!(
                "invalid value for --{flag}: {v:?} (at least {} bytes: {MIN_OBJECTS} objects at \
                 {BYTES_PER_OBJECT_BUDGET} B each)",
                MIN_OBJECTS * BYTES_PER_OBJECT_BUDGET
            ));
        }
        Ok(Self::Bytes(bytes))
    }
}

/// The resolved limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IndexLimit {
    /// The memory the index may use (None: unlimited).
    pub bytes: Option<u64>,
    /// The object count that memory allows (`u64::MAX` when unlimited).
    pub objects: u64,
    /// Objects one shard may hold (`objects / SHARDS`).
    pub per_shard: usize,
}

impl IndexLimit {
    pub const UNLIMITED: IndexLimit = IndexLimit {
        bytes: None,
        objects: u64::MAX,
        per_shard: usize::MAX,
    };

    /// Resolves the setting against this machine.
    pub fn resolve(setting: IndexMemoryLimit) -> IndexLimit {
        match setting {
            IndexMemoryLimit::Unlimited => Self::UNLIMITED,
            IndexMemoryLimit::Bytes(b) => Self::from_bytes(b),
            IndexMemoryLimit::Auto => match machine_memory() {
                Some(m) => Self::from_bytes((m as f64 * AUTO_FRACTION) as u64),
                // Nothing to derive it from: better no limit than a wrong guess.
                None => Self::UNLIMITED,
            },
        }
    }

    /// The limit for `bytes` of index memory (never below [`MIN_OBJECTS`]).
    pub fn from_bytes(bytes: u64) -> IndexLimit {
        let per_shard = (bytes / BYTES_PER_OBJECT_BUDGET / SHARDS as u64).max(16);
        IndexLimit {
            bytes: Some(bytes),
            objects: per_shard * SHARDS as u64,
            per_shard: usize::try_from(per_shard).unwrap_or(usize::MAX),
        }
    }
}

/// The machine's memory as this process can use it: physical memory, or the cgroup
/// (v2 `memory.max`, v1 `memory.limit_in_bytes`) limit when that is lower.
pub fn machine_memory() -> Option<u64> {
    let physical = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| meminfo_total(&s));
    let cgroup = [
        "/sys/fs/cgroup/memory.max",
        "/sys/fs/cgroup/memory/memory.limit_in_bytes",
    ]
    .iter()
    .filter_map(|p| std::fs::read_to_string(p).ok())
    .filter_map(|s| s.trim().parse::<u64>().ok())
    .min();
    match (physical, cgroup) {
        (Some(p), Some(c)) => Some(p.min(c)),
        (p, c) => p.or(c),
    }
}

/// `MemTotal` of a /proc/meminfo text, in bytes.
fn meminfo_total(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_and_bad_values_name_the_flag() {
        let p = |v| IndexMemoryLimit::parse("index_memory_limit", v);
        assert_eq!(p("auto"), Ok(IndexMemoryLimit::Auto));
        assert_eq!(p(" AUTO "), Ok(IndexMemoryLimit::Auto));
        assert_eq!(p("0"), Ok(IndexMemoryLimit::Unlimited));
        assert_eq!(p("8GB"), Ok(IndexMemoryLimit::Bytes(8 << 30)));
        assert_eq!(p("512mb"), Ok(IndexMemoryLimit::Bytes(512 << 20)));
        for bad in ["lots", "-1", "", "1kb"] {
            let e = p(bad).unwrap_err();
            assert!(e.contains("--index_memory_limit"), "{bad}: {e}");
        }
    }

    #[test]
    fn a_limit_becomes_an_even_per_shard_count_that_never_exceeds_it() {
        let l = IndexLimit::from_bytes(8 << 30);
        assert_eq!(l.objects, l.per_shard as u64 * SHARDS as u64);
        assert!(l.objects * BYTES_PER_OBJECT_BUDGET <= 8 << 30);
        assert!(l.objects > 33_000_000, "{l:?}");
        let tiny = IndexLimit::from_bytes(1);
        assert_eq!(tiny.objects, MIN_OBJECTS);
        assert_eq!(
            IndexLimit::resolve(IndexMemoryLimit::Unlimited).objects,
            u64::MAX
        );
    }

    #[test]
    fn auto_takes_a_quarter_of_the_machine() {
        assert_eq!(
            meminfo_total("MemTotal:       24576000 kB\nMemFree: 1 kB\n"),
            Some(24_576_000 * 1024)
        );
        assert_eq!(meminfo_total("nothing"), None);
        let l = IndexLimit::resolve(IndexMemoryLimit::Auto);
        if let Some(m) = machine_memory() {
            let b = l.bytes.unwrap();
            assert!(b <= m / 4 + 1 && b >= m / 5, "{l:?} of {m}");
        }
    }
}
