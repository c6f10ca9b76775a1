//! Latency samples and their summary (p50/p99/mean/max) for the load generators.

use std::fmt;
use std::time::Duration;

/// Collected round-trip times.
#[derive(Debug, Default, Clone)]
pub struct Samples {
    nanos: Vec<u64>,
}

impl Samples {
    pub fn with_capacity(n: usize) -> Self {
        Self {
            nanos: Vec::with_capacity(n),
        }
    }

    pub fn record(&mut self, d: Duration) {
        self.nanos
            .push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    pub fn merge(&mut self, other: Samples) {
        self.nanos.extend(other.nanos);
    }

    pub fn len(&self) -> usize {
        self.nanos.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nanos.is_empty()
    }

    /// Sorts and summarises; `None` without samples.
    pub fn summary(&mut self) -> Option<Summary> {
        if self.nanos.is_empty() {
            return None;
        }
        self.nanos.sort_unstable();
        let n = self.nanos.len();
        let at = |q: f64| {
            let idx = ((n as f64 * q).ceil() as usize).clamp(1, n) - 1;
            Duration::from_nanos(self.nanos[idx])
        };
        let sum: u128 = self.nanos.iter().map(|&x| u128::from(x)).sum();
        Some(Summary {
            count: n,
            p50: at(0.50),
            p99: at(0.99),
            mean: Duration::from_nanos((sum / n as u128) as u64),
            max: Duration::from_nanos(self.nanos[n - 1]),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p99: Duration,
    pub mean: Duration,
    pub max: Duration,
}

fn us(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "n={} p50={:.1}µs p99={:.1}µs mean={:.1}µs max={:.1}µs",
            self.count,
            us(self.p50),
            us(self.p99),
            us(self.mean),
            us(self.max)
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_one_to_hundred() {
        let mut s = Samples::default();
        for i in (1..=100).rev() {
            s.record(Duration::from_micros(i));
        }
        let m = s.summary().unwrap();
        assert_eq!(m.p50, Duration::from_micros(50));
        assert_eq!(m.p99, Duration::from_micros(99));
        assert_eq!(m.max, Duration::from_micros(100));
        assert_eq!(m.mean, Duration::from_nanos(50_500));
        assert!(Samples::default().summary().is_none());
    }
}
