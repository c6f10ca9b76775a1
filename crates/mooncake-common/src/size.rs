//! Size strings as the reference accepts them: a plain integer is bytes; otherwise a
//! number (possibly fractional) followed by `b, k, kb, m, mb, g, gb, t, tb` in any case,
//! with an optional space, always base 1024 (`50gb`, `1.5 GB`, `4194304`).
//!
//! Written here rather than taken from a crate: `bytesize` and `byte-unit` read `kb`/`gb`
//! as powers of 1000, which would silently shrink every deployed `MOONCAKE_*_SIZE`.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SizeError(pub String);

impl fmt::Display for SizeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for SizeError {}

/// Parses a size string. `what` names the setting in the error message.
pub fn parse_size(what: &str, input: &str) -> Result<u64, SizeError> {
    let s = input.trim();
    let bad = |why: &str| SizeError(format!("invalid size for {what}: {input:?} ({why})"));
    if s.is_empty() {
        return Err(bad("empty"));
    }
    if let Ok(n) = s.parse::<u64>() {
        return Ok(n);
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let mult: u64 = match unit.as_str() {
        "" | "b" => 1,
        "k" | "kb" | "kib" => 1 << 10,
        "m" | "mb" | "mib" => 1 << 20,
        "g" | "gb" | "gib" => 1 << 30,
        "t" | "tb" | "tib" => 1 << 40,
        "%" => return Err(bad("percentages are not sizes")),
        _ => return Err(bad("unknown unit; use b, kb, mb, gb or tb")),
    };
    if num.is_empty() {
        return Err(bad("missing number"));
    }
    let value: f64 = num.parse().map_err(|_| bad("not a number"))?;
    let bytes = value * mult as f64;
    if !bytes.is_finite() || bytes < 0.0 || bytes > u64::MAX as f64 {
        return Err(bad("out of range"));
    }
    Ok(bytes.round() as u64)
}

/// Formats bytes base 1024 with two decimals, as the master's log line does
/// (`26.96 GB`).
pub fn format_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["B", "KB", "MB", "GB", "TB", "PB"];
    let mut v = bytes as f64;
    let mut i = 0;
    while v >= 1024.0 && i + 1 < UNITS.len() {
        v /= 1024.0;
        i += 1;
    }
    format!("{v:.2} {}", UNITS[i])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_contract_examples() {
        assert_eq!(parse_size("x", "4194304").unwrap(), 4194304);
        assert_eq!(parse_size("x", "50gb").unwrap(), 50 << 30);
        assert_eq!(parse_size("x", "1.5 GB").unwrap(), 3 << 29);
        assert_eq!(parse_size("x", "16MB").unwrap(), 16 << 20);
        assert_eq!(parse_size("x", "2k").unwrap(), 2048);
        assert_eq!(parse_size("x", "1T").unwrap(), 1 << 40);
        assert_eq!(parse_size("x", "12b").unwrap(), 12);
    }

    #[test]
    fn rejects_bad_input_naming_the_setting() {
        for bad in ["", "  ", "50%", "gb", "abc", "1.2.3gb", "5 parsecs", "-5"] {
            let e = parse_size("MOONCAKE_GLOBAL_SEGMENT_SIZE", bad).unwrap_err();
            assert!(e.0.contains("MOONCAKE_GLOBAL_SEGMENT_SIZE"), "{e}");
        }
    }

    #[test]
    fn formats_base_1024() {
        assert_eq!(format_size(0), "0.00 B");
        assert_eq!(format_size(30 << 30), "30.00 GB");
        assert_eq!(format_size(1536), "1.50 KB");
    }
}
