//! The open-loop schedule: request `k` is due at `start + k / rate`, whatever earlier answers
//! did. Latency counts from that intended time, so a stall that delays sends is charged to the
//! requests it delayed (no coordinated omission).

use std::time::Duration;

/// A fixed arrival rate over a bounded window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Schedule {
    rate_per_s: u32,
    total: u64,
}

impl Schedule {
    /// `rate_per_s` requests per second for `window`; `None` for a zero rate.
    pub fn new(rate_per_s: u32, window: Duration) -> Option<Self> {
        if rate_per_s == 0 {
            return None;
        }
        let total = (u128::from(rate_per_s) * window.as_nanos() / 1_000_000_000) as u64;
        Some(Self { rate_per_s, total })
    }

    /// How many requests the window holds.
    pub fn total(&self) -> u64 {
        self.total
    }

    /// When request `k` is due, from the schedule's start. Computed from `k` rather than summed,
    /// so rounding never drifts.
    pub fn due(&self, k: u64) -> Duration {
        let nanos = u128::from(k) * 1_000_000_000 / u128::from(self.rate_per_s);
        Duration::from_nanos(u64::try_from(nanos).unwrap_or(u64::MAX))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_are_evenly_spaced_from_zero() {
        let s = Schedule::new(4, Duration::from_secs(2)).unwrap();
        assert_eq!(s.total(), 8);
        let due: Vec<_> = (0..s.total()).map(|k| s.due(k).as_millis()).collect();
        assert_eq!(due, [0, 250, 500, 750, 1000, 1250, 1500, 1750]);
    }

    #[test]
    fn no_drift_at_rates_that_do_not_divide_a_second() {
        let s = Schedule::new(3, Duration::from_secs(100)).unwrap();
        assert_eq!(s.total(), 300);
        assert_eq!(s.due(3), Duration::from_secs(1));
        assert_eq!(s.due(299), Duration::from_nanos(99_666_666_666));
        assert!((1..s.total()).all(|k| s.due(k) > s.due(k - 1)));
    }

    #[test]
    fn partial_windows_and_zero_rates() {
        assert_eq!(Schedule::new(1000, Duration::from_millis(2500)).unwrap().total(), 2500);
        assert_eq!(Schedule::new(1, Duration::from_millis(999)).unwrap().total(), 0);
        assert!(Schedule::new(0, Duration::from_secs(1)).is_none());
    }
}
