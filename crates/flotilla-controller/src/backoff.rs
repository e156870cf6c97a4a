//! [`ClusterBackoff`]: the clusters the application controller leaves alone for now.
//!
//! A cluster that cannot be reached, or refuses the control plane's credentials, fails every
//! application bound to it in the same way. Asking it again for each application on every
//! pass (every two seconds) would send thousands of requests into a network that is down,
//! write a warning per application per pass, and hold each pass up by as many timeouts.
//! Instead, the first such failure puts the cluster aside: it is tried again, with one
//! application, after [`FIRST_RETRY`], then after twice as long each time it fails again, up
//! to [`LONGEST_RETRY`]; the first success clears it. Until then a pass hands it nothing and
//! asks it nothing, and says so once.
//!
//! Pure bookkeeping: the caller says what time it is.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a cluster is left alone after its first failure.
pub const FIRST_RETRY: Duration = Duration::from_secs(2);
/// The longest a failing cluster is left alone between tries.
pub const LONGEST_RETRY: Duration = Duration::from_secs(60);

/// A cluster set aside: why, and until when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// Failures in a row.
    pub failures: u32,
    pub until: Instant,
    /// The last failure.
    pub error: String,
}

/// The clusters set aside, by name.
#[derive(Debug, Default)]
pub struct ClusterBackoff {
    clusters: HashMap<String, SetAside>,
}

impl ClusterBackoff {
    /// Why `cluster` is not to be tried at `now`; `None` when it may be.
    pub fn set_aside(&self, cluster: &str, now: Instant) -> Option<&SetAside> {
        self.clusters.get(cluster).filter(|aside| now < aside.until)
    }

    /// `cluster` failed at `now`: it is set aside for twice as long as the last time (the
    /// first time, [`FIRST_RETRY`]), at most [`LONGEST_RETRY`]. Returns how long. A failure
    /// while it is set aside already (a request sent before it was) changes nothing.
    pub fn failed(&mut self, cluster: &str, error: String, now: Instant) -> Duration {
        if let Some(aside) = self.set_aside(cluster, now) {
            return aside.until - now;
        }
        let failures = self.clusters.get(cluster).map_or(1, |aside| aside.failures.saturating_add(1));
        let doublings = failures.saturating_sub(1).min(16);
        let delay = FIRST_RETRY.saturating_mul(1 << doublings).min(LONGEST_RETRY);
        self.clusters.insert(cluster.to_string(), SetAside { failures, until: now + delay, error });
        delay
    }

    /// `cluster` answered: it is no longer set aside.
    pub fn succeeded(&mut self, cluster: &str) {
        self.clusters.remove(cluster);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failing_cluster_waits_twice_as_long_each_time_up_to_the_longest() {
        let mut backoff = ClusterBackoff::default();
        let start = Instant::now();
        assert_eq!(backoff.set_aside("east", start), None, "a cluster never failed may be tried");
        // Each try fails when its time comes.
        let mut now = start;
        let mut delays = Vec::new();
        for _ in 0..8 {
            let delay = backoff.failed("east", "connection refused".into(), now);
            delays.push(delay.as_secs());
            now += delay;
        }
        assert_eq!(delays, [2, 4, 8, 16, 32, 60, 60, 60]);
        let aside = backoff.set_aside("east", now - Duration::from_secs(1)).expect("still set aside");
        assert_eq!((aside.failures, aside.error.as_str()), (8, "connection refused"));
        assert_eq!(backoff.set_aside("east", now), None, "tried again when its time is up");
        assert_eq!(backoff.set_aside("west", start), None, "other clusters are not held up");
    }

    #[test]
    fn a_success_clears_the_cluster() {
        let mut backoff = ClusterBackoff::default();
        let start = Instant::now();
        backoff.failed("east", "timed out".into(), start);
        backoff.failed("east", "timed out".into(), start + FIRST_RETRY);
        backoff.succeeded("east");
        assert_eq!(backoff.set_aside("east", start), None);
        assert_eq!(backoff.failed("east", "timed out".into(), start), FIRST_RETRY, "counted afresh");
    }

    #[test]
    fn failures_while_set_aside_do_not_lengthen_the_wait() {
        let mut backoff = ClusterBackoff::default();
        let start = Instant::now();
        assert_eq!(backoff.failed("east", "refused".into(), start), FIRST_RETRY);
        let second = Duration::from_secs(1);
        assert_eq!(backoff.failed("east", "refused".into(), start + second), FIRST_RETRY - second);
        assert_eq!(backoff.set_aside("east", start).map(|aside| aside.failures), Some(1));
    }
}
