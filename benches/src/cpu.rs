//! CPU time a process has used, from `/proc/<pid>/task/*/schedstat` (nanoseconds on a
//! CPU, summed over its live threads). On a shared machine wall-clock rates depend on
//! the neighbours; CPU time per operation much less so, which makes it the fairer figure.

use std::time::Duration;

/// CPU time used so far by `pid`'s threads; `None` where /proc is unavailable.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let dir = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut nanos = 0u64;
    for task in dir.flatten() {
        let stat = std::fs::read_to_string(task.path().join("schedstat")).ok();
        if let Some(n) = stat.and_then(|s| s.split_whitespace().next()?.parse::<u64>().ok()) {
            nanos += n;
        }
    }
    Some(Duration::from_nanos(nanos))
}

/// CPU used by `pid` between two readings, per operation, in µs.
pub fn per_op_us(before: Option<Duration>, after: Option<Duration>, ops: u64) -> Option<f64> {
    let used = after?.checked_sub(before?)?;
    (ops > 0).then(|| used.as_secs_f64() * 1e6 / ops as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_cpu_time_grows_with_work() {
        let me = std::process::id();
        let before = cpu_time(me).expect("/proc is mounted");
        let mut x = 0u64;
        for i in 0..20_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let after = cpu_time(me).unwrap();
        assert!(after > before, "{before:?} -> {after:?}");
        assert!(per_op_us(Some(before), Some(after), 10).unwrap() > 0.0);
        assert_eq!(per_op_us(None, Some(after), 10), None);
    }
}
