//! Where the tier lives and how big it may grow, read from the environment the way the
//! reference and SGLang spell it.

use std::path::PathBuf;

use mooncake_common::size::parse_size;

use crate::errors::TierError;
use crate::record::BLOCK;

/// The directory of the tier (setting it enables the tier).
pub const ENV_PATH: &str = "MOONCAKE_OFFLOAD_FILE_STORAGE_PATH";
/// The tier's capacity (sizes as `MOONCAKE_GLOBAL_SEGMENT_SIZE`).
pub const ENV_LIMIT: &str = "MOONCAKE_OFFLOAD_TOTAL_SIZE_LIMIT_BYTES";
/// SGLang's switch; `false` turns a configured tier off, `true` requires a path.
pub const ENV_ENABLE: &str = "MOONCAKE_ENABLE_SSD_OFFLOAD";
/// When records are written around the page cache (O_DIRECT): `auto` (while the
/// kernel's writeback lags, the default), `always` or `never`.
pub const ENV_DIRECT: &str = "MOONCAKE_TIER_DIRECT_WRITES";
/// The reference's default capacity: 2 TB.
pub const DEFAULT_CAPACITY: u64 = 2 << 40;
/// The smallest usable capacity: one checksum block.
pub const MIN_CAPACITY: u64 = BLOCK;

/// When records are written with O_DIRECT (where the file system takes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DirectWrites {
    /// While the machine's dirty and under-writeback pages exceed half the
    /// background writeback threshold (`io::writeback_pressure`).
    #[default]
    Auto,
    Always,
    Never,
}

impl DirectWrites {
    pub fn parse(v: &str) -> Result<DirectWrites, TierError> {
        match v.trim().to_ascii_lowercase().as_str() {
            "auto" => Ok(DirectWrites::Auto),
            "always" => Ok(DirectWrites::Always),
            "never" => Ok(DirectWrites::Never),
            other => Err(TierError::Config(format!(
                "{ENV_DIRECT}={other:?} is not one of auto, always, never"
            ))),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TierConfig {
    pub dir: PathBuf,
    pub capacity: u64,
    pub direct_writes: DirectWrites,
}

impl TierConfig {
    /// The tier asked for by this process's environment, `None` when there is none.
    pub fn from_env() -> Result<Option<TierConfig>, TierError> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.trim().is_empty());
        Self::from_values(get(ENV_PATH), get(ENV_LIMIT), get(ENV_ENABLE))
    }

    /// As [`from_env`](Self::from_env), from the three values.
    pub fn from_values(
        path: Option<String>,
        limit: Option<String>,
        enable: Option<String>,
    ) -> Result<Option<TierConfig>, TierError> {
        let enable = match enable.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
            None => None,
            Some(v) if matches!(v.as_str(), "1" | "true" | "yes" | "on") => Some(true),
            Some(v) if matches!(v.as_str(), "0" | "false" | "no" | "off") => Some(false),
            Some(v) => {
                return Err(TierError::Config(format!(
                    "{ENV_ENABLE}={v:?} is not a boolean (use true or false)"
                )))
            }
        };
        if enable == Some(false) {
            return Ok(None);
        }
        let Some(path) = path else {
            if enable == Some(true) {
                return Err(TierError::Config(format!(
                    "{ENV_ENABLE} is set but {ENV_PATH} is not: name the tier's directory"
                )));
            }
            return Ok(None);
        };
        let capacity = match limit {
            None => DEFAULT_CAPACITY,
            Some(l) => parse_size(ENV_LIMIT, &l).map_err(|e| TierError::Config(e.to_string()))?,
        };
        if capacity < MIN_CAPACITY {
            return Err(TierError::Config(format!(
                "{ENV_LIMIT}={capacity} is below one block ({MIN_CAPACITY} bytes)"
            )));
        }
        let direct_writes = match std::env::var(ENV_DIRECT) {
            Ok(v) if !v.trim().is_empty() => DirectWrites::parse(&v)?,
            _ => DirectWrites::Auto,
        };
        Ok(Some(TierConfig {
            dir: PathBuf::from(path),
            capacity,
            direct_writes,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(v: &str) -> Option<String> {
        Some(v.to_string())
    }

    #[test]
    fn path_enables_and_limit_parses() {
        assert_eq!(TierConfig::from_values(None, None, None).unwrap(), None);
        let c = TierConfig::from_values(s("/d"), s("4gb"), None)
            .unwrap()
            .unwrap();
        assert_eq!(c.capacity, 4 << 30);
        let c = TierConfig::from_values(s("/d"), None, s("true"))
            .unwrap()
            .unwrap();
        assert_eq!(c.capacity, DEFAULT_CAPACITY);
        assert_eq!(
            TierConfig::from_values(s("/d"), None, s("0")).unwrap(),
            None
        );
    }

    #[test]
    fn direct_write_modes_parse_and_a_bad_one_is_named() {
        assert_eq!(DirectWrites::parse("auto").unwrap(), DirectWrites::Auto);
        assert_eq!(
            DirectWrites::parse(" Always").unwrap(),
            DirectWrites::Always
        );
        assert_eq!(DirectWrites::parse("never").unwrap(), DirectWrites::Never);
        let e = DirectWrites::parse("sometimes").unwrap_err().to_string();
        assert!(e.contains(ENV_DIRECT) && e.contains("sometimes"), "{e}");
    }

    #[test]
    fn bad_values_are_named() {
        let e = TierConfig::from_values(None, None, s("true"))
            .unwrap_err()
            .to_string();
        assert!(e.contains(ENV_PATH), "{e}");
        let e = TierConfig::from_values(s("/d"), s("1kb"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains("below one block"), "{e}");
        let e = TierConfig::from_values(s("/d"), s("lots"), None)
            .unwrap_err()
            .to_string();
        assert!(e.contains(ENV_LIMIT), "{e}");
        let e = TierConfig::from_values(s("/d"), None, s("maybe"))
            .unwrap_err()
            .to_string();
        assert!(e.contains("not a boolean"), "{e}");
    }
}
