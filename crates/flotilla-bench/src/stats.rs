//! Latency samples and their percentiles (nearest rank over the sorted samples: every sample
//! is kept, so nothing is approximated), and the formatting of durations and rates.

use std::time::Duration;

/// A set of latency samples, sorted once when summarised.
#[derive(Debug, Clone, Default)]
pub struct Samples {
    values: Vec<Duration>,
}

/// Percentiles of a set of samples.
#[derive(Debug, Clone, Copy, Default)]
pub struct Summary {
    pub count: usize,
    pub p50: Duration,
    pub p90: Duration,
    pub p99: Duration,
    pub max: Duration,
}

impl Samples {
    pub fn with_capacity(capacity: usize) -> Self {
        Self { values: Vec::with_capacity(capacity) }
    }

    pub fn push(&mut self, value: Duration) {
        self.values.push(value);
    }

    pub fn len(&self) -> usize {
        self.values.len()
    }

    pub fn summary(&mut self) -> Summary {
        self.values.sort_unstable();
        let count = self.values.len();
        if count == 0 {
            return Summary::default();
        }
        Summary {
            count,
            p50: self.percentile(50.0),
            p90: self.percentile(90.0),
            p99: self.percentile(99.0),
            max: self.values[count - 1],
        }
    }

    /// Nearest-rank percentile of the (already sorted) samples.
    fn percentile(&self, p: f64) -> Duration {
        let count = self.values.len();
        let rank = ((p / 100.0) * count as f64).ceil() as usize;
        self.values[rank.clamp(1, count) - 1]
    }
}

/// `1.23 ms`, `456 µs`, `2.10 s`.
pub fn fmt_duration(d: Duration) -> String {
    let micros = d.as_secs_f64() * 1e6;
    if micros < 1000.0 {
        format!("{micros:.0} µs")
    } else if micros < 1e6 {
        format!("{:.2} ms", micros / 1e3)
    } else {
        format!("{:.2} s", micros / 1e6)
    }
}

/// `12,345/s`.
pub fn fmt_rate(per_second: f64) -> String {
    format!("{}/s", fmt_count(per_second.round() as u64))
}

/// `1,000,000`.
pub fn fmt_count(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `1.2 MiB`.
pub fn fmt_bytes(bytes: f64) -> String {
    if bytes < 1024.0 {
        format!("{bytes:.0} B")
    } else if bytes < 1024.0 * 1024.0 {
        format!("{:.1} KiB", bytes / 1024.0)
    } else {
        format!("{:.1} MiB", bytes / (1024.0 * 1024.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_use_nearest_rank() {
        let mut samples = Samples::default();
        for ms in 1..=100 {
            samples.push(Duration::from_millis(ms));
        }
        let summary = samples.summary();
        assert_eq!(summary.count, 100);
        assert_eq!(summary.p50, Duration::from_millis(50));
        assert_eq!(summary.p90, Duration::from_millis(90));
        assert_eq!(summary.p99, Duration::from_millis(99));
        assert_eq!(summary.max, Duration::from_millis(100));
        let mut one = Samples::default();
        one.push(Duration::from_millis(7));
        assert_eq!(one.summary().p99, Duration::from_millis(7));
        assert_eq!(Samples::default().summary().count, 0);
    }

    #[test]
    fn numbers_read_well() {
        assert_eq!(fmt_count(1_000_000), "1,000,000");
        assert_eq!(fmt_count(999), "999");
        assert_eq!(fmt_rate(20_512.4), "20,512/s");
        assert_eq!(fmt_duration(Duration::from_micros(456)), "456 µs");
        assert_eq!(fmt_duration(Duration::from_micros(1234)), "1.23 ms");
        assert_eq!(fmt_duration(Duration::from_millis(2100)), "2.10 s");
        assert_eq!(fmt_bytes(2.5 * 1024.0 * 1024.0), "2.5 MiB");
    }
}
