//! Durations for flags such as `--default_kv_lease_ttl`: a plain integer is
//! milliseconds (the reference's unit); otherwise a humantime string (`500ms`, `10s`, `1m`).

use std::time::Duration;

/// Parses a duration whose bare-number unit is milliseconds. `what` names the setting.
pub fn parse_millis(what: &str, input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if s.is_empty() {
        return Err(format!("invalid duration for {what}: empty"));
    }
    if let Ok(ms) = s.parse::<u64>() {
        return Ok(Duration::from_millis(ms));
    }
    humantime::parse_duration(s).map_err(|e| {
        format!("invalid duration for {what}: {input:?} ({e}); use e.g. 500ms, 10s, 1m")
    })
}

/// Parses a duration whose bare-number unit is seconds (`--client_ttl`).
pub fn parse_secs(what: &str, input: &str) -> Result<Duration, String> {
    let s = input.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    if let Ok(secs) = s.parse::<f64>() {
        if secs.is_finite() && secs >= 0.0 {
            // A number of seconds beyond what a Duration holds (found by fuzzing:
            // `from_secs_f64` panics there) is an error that names the setting.
            return Duration::try_from_secs_f64(secs).map_err(|_| {
                format!("invalid duration for {what}: {input:?} is too many seconds")
            });
        }
    }
    humantime::parse_duration(s)
        .map_err(|e| format!("invalid duration for {what}: {input:?} ({e}); use e.g. 10 or 10s"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn millis_and_units() {
        assert_eq!(parse_millis("t", "10000").unwrap(), Duration::from_secs(10));
        assert_eq!(
            parse_millis("t", "500ms").unwrap(),
            Duration::from_millis(500)
        );
        assert_eq!(parse_millis("t", "10s").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_millis("t", "1m").unwrap(), Duration::from_secs(60));
        assert!(parse_millis("lease", "soon").unwrap_err().contains("lease"));
        assert!(parse_millis("lease", "").is_err());
    }

    #[test]
    fn seconds() {
        assert_eq!(parse_secs("t", "10").unwrap(), Duration::from_secs(10));
        assert_eq!(parse_secs("t", "1.5").unwrap(), Duration::from_millis(1500));
        assert_eq!(parse_secs("t", "2s").unwrap(), Duration::from_secs(2));
        assert!(parse_secs("client_ttl", "x")
            .unwrap_err()
            .contains("client_ttl"));
    }

    #[test]
    fn seconds_beyond_a_duration_are_an_error_not_a_panic() {
        let e = parse_secs("client_ttl", "33333444444334444444443444333373").unwrap_err();
        assert!(
            e.contains("client_ttl") && e.contains("too many seconds"),
            "{e}"
        );
        assert!(parse_secs("t", "1e300").is_err());
        assert!(parse_millis("t", "99999999999999999999999999h").is_err());
    }
}
