//! What the batch loop and the watchdog know about the consumer, shared with readiness.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::checkpoint::Positions;

/// This process's part in the consumer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Before the first lease attempt (topics being created).
    Starting,
    /// Another process holds the lease; this one tries again every `lease_retry`.
    Standby,
    /// This process holds the lease and consumes.
    Active,
    /// Stopped (shutdown).
    Stopped,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Standby => "standby",
            Self::Active => "active",
            Self::Stopped => "stopped",
        }
    }
}

#[derive(Debug)]
struct Inner {
    role: Role,
    /// Why consumption cannot go on right now (database or DLQ unavailable), while it cannot.
    paused: Option<String>,
    /// Records between the checkpoints and the partitions' ends, as last measured.
    lag: Option<i64>,
    /// Partitions whose checkpoint is past the log's end (the topic was recreated or lost
    /// records): nothing there is applied until the log passes the checkpoint again.
    ahead: Vec<i32>,
    /// Partitions of the topic, as last measured.
    partitions: Option<usize>,
    /// Each partition's `(partition, low, high)` watermarks and the checkpoints, as last
    /// read: while one side cannot be read, lag is computed from its last known value.
    marks: Option<Vec<(i32, i64, i64)>>,
    checkpoints: Option<Positions>,
    /// Sum of the stored checkpoints, to notice progress whoever made it.
    checkpoint_sum: Option<i64>,
    /// Last time the checkpoints moved or there was nothing to do.
    last_progress: Instant,
    stalled: bool,
    /// Set by the watchdog, taken by the active batch loop.
    rebuild: bool,
    last_rebuild: Instant,
    /// Time between rebuilds while the stall lasts: `stall_after`, doubling after each
    /// rebuild up to [`MAX_REBUILD_EVERY`], so a fresh client gets the time a slow broker
    /// needs to answer it (rebuilding every few seconds can itself prevent any fetch).
    rebuild_every: Duration,
    /// Last time the active client delivered records, or was built: a client that fetches,
    /// however slowly, or has not had its first answer yet, is not rebuilt.
    last_fetch: Instant,
}

/// The longest wait between two rebuilds during one stall.
const MAX_REBUILD_EVERY: Duration = Duration::from_secs(60);

/// Shared between the batch loop, the watchdog and the readiness check.
#[derive(Debug)]
pub struct Status {
    stall_after: Duration,
    inner: Mutex<Inner>,
}

/// A snapshot for readiness and metrics.
#[derive(Debug, Clone)]
pub struct Snapshot {
    pub role: Role,
    pub paused: Option<String>,
    pub lag: Option<i64>,
    pub ahead: Vec<i32>,
    pub stalled: bool,
    pub no_progress_for: Duration,
}

impl Status {
    pub fn new(stall_after: Duration) -> Self {
        let now = Instant::now();
        Self {
            stall_after,
            inner: Mutex::new(Inner {
                role: Role::Starting,
                paused: None,
                lag: None,
                ahead: Vec::new(),
                partitions: None,
                marks: None,
                checkpoints: None,
                checkpoint_sum: None,
                last_progress: now,
                stalled: false,
                rebuild: false,
                last_rebuild: now,
                rebuild_every: stall_after,
                last_fetch: now,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding this lock leaves plain data behind; keep going with it.
        self.inner.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn set_role(&self, role: Role) {
        self.lock().role = role;
    }

    pub fn set_paused(&self, why: Option<String>) {
        self.lock().paused = why;
    }

    /// A batch was committed by this process.
    pub fn progressed(&self) {
        let mut s = self.lock();
        s.last_progress = Instant::now();
        s.stalled = false;
        s.rebuild_every = self.stall_after;
    }

    /// The active client delivered records (or was just built).
    pub fn fetched(&self) {
        self.lock().last_fetch = Instant::now();
    }

    /// Takes the watchdog's request to rebuild the client, if any.
    pub fn take_rebuild(&self) -> bool {
        std::mem::take(&mut self.lock().rebuild)
    }

    pub fn partitions(&self) -> Option<usize> {
        self.lock().partitions
    }

    /// One watchdog measurement: the stored checkpoints and each partition's
    /// `(partition, low, high)` watermarks, either missing when it could not be read.
    /// Returns each partition's lag (for the gauges) when both were read.
    pub fn observe(&self, checkpoints: Option<&Positions>, marks: Option<&[(i32, i64, i64)]>) -> Vec<(i32, i64)> {
        let now = Instant::now();
        let mut s = self.lock();
        let mut lags = Vec::new();
        if let Some(cps) = checkpoints {
            let sum = cps.values().sum();
            if s.checkpoint_sum != Some(sum) {
                s.checkpoint_sum = Some(sum);
                s.last_progress = now;
            }
            s.checkpoints = Some(cps.clone());
        }
        if let Some(marks) = marks {
            s.partitions = Some(marks.len());
            s.marks = Some(marks.to_vec());
        }
        // With the broker frozen, the records fetched before still drain: the checkpoints
        // that reach the last known ends are no lag, whatever the broker cannot say.
        let fresh = marks.is_some();
        if let (Some(cps), Some(marks)) = (s.checkpoints.clone(), s.marks.clone()) {
            let mut ahead = Vec::new();
            let mut total = 0;
            for (p, low, high) in marks {
                let next = cps.get(&p).copied().unwrap_or(low).max(low);
                if next > high {
                    ahead.push(p);
                }
                let lag = (high - next).max(0);
                total += lag;
                lags.push((p, lag));
            }
            s.lag = Some(total);
            // Only fresh ends can say a checkpoint is past them; old ones may just be old.
            if fresh {
                s.ahead = ahead;
            }
        }
        if s.lag == Some(0) {
            s.last_progress = now;
        }
        // A side that cannot be read (broker or database not answering) counts with its last
        // known value: a consumer that had work and cannot get at it is not progressing.
        s.stalled = s.lag.unwrap_or(0) > 0 && now.duration_since(s.last_progress) > self.stall_after;
        if !s.stalled {
            s.rebuild_every = self.stall_after;
        } else if s.role == Role::Active
            && now.duration_since(s.last_rebuild) > s.rebuild_every
            && now.duration_since(s.last_progress) > s.rebuild_every
            && now.duration_since(s.last_fetch) > s.rebuild_every
        {
            s.rebuild = true;
            s.last_rebuild = now;
            s.rebuild_every = (s.rebuild_every * 2).min(MAX_REBUILD_EVERY.max(self.stall_after));
        }
        lags
    }

    pub fn snapshot(&self) -> Snapshot {
        let s = self.lock();
        Snapshot {
            role: s.role,
            paused: s.paused.clone(),
            lag: s.lag,
            ahead: s.ahead.clone(),
            stalled: s.stalled,
            no_progress_for: s.last_progress.elapsed(),
        }
    }

    /// Readiness: `Err` says why the consumer cannot be trusted to keep up right now. A
    /// standby is ready; the consumer as a whole stalling makes every process unready.
    pub fn check(&self) -> Result<(), String> {
        let s = self.snapshot();
        if let Some(why) = s.paused {
            return Err(format!("paused ({}): {why}", s.role.as_str()));
        }
        if s.stalled {
            return Err(format!(
                "stalled: {} records behind and no progress for {} s ({} here)",
                s.lag.unwrap_or_default(),
                s.no_progress_for.as_secs(),
                s.role.as_str()
            ));
        }
        if !s.ahead.is_empty() {
            return Err(format!(
                "checkpoints past the end of partitions {:?}: the topic was recreated or lost records; \
                 reset those checkpoints",
                s.ahead
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lag_without_progress_is_a_stall_and_asks_the_active_process_to_rebuild() {
        let status = Status::new(Duration::ZERO);
        status.set_role(Role::Active);
        let cps = Positions::from([(0, 5), (1, 0)]);
        let lags = status.observe(Some(&cps), Some(&[(0, 0, 10), (1, 0, 0)]));
        assert_eq!(lags, vec![(0, 5), (1, 0)]);
        std::thread::sleep(Duration::from_millis(5));
        status.observe(Some(&cps), Some(&[(0, 0, 10), (1, 0, 0)]));
        assert!(status.snapshot().stalled);
        assert!(status.check().unwrap_err().starts_with("stalled: 5 records behind"));
        assert!(status.take_rebuild());
        assert!(!status.take_rebuild(), "taken once");
        // Progress by anyone (the checkpoints moved) ends the stall.
        status.observe(Some(&Positions::from([(0, 10)])), Some(&[(0, 0, 10), (1, 0, 0)]));
        assert!(status.check().is_ok());
    }

    #[test]
    fn no_lag_is_never_a_stall_and_a_standby_is_not_asked_to_rebuild() {
        let status = Status::new(Duration::ZERO);
        status.set_role(Role::Standby);
        status.observe(Some(&Positions::new()), Some(&[(0, 3, 3)]));
        std::thread::sleep(Duration::from_millis(5));
        status.observe(None, None);
        assert!(status.check().is_ok());
        status.observe(Some(&Positions::new()), Some(&[(0, 3, 9)]));
        std::thread::sleep(Duration::from_millis(5));
        status.observe(None, None);
        assert!(status.snapshot().stalled, "the last known lag stands while it cannot be measured");
        assert!(!status.take_rebuild());
    }

    #[test]
    fn a_checkpoint_past_the_log_end_is_reported() {
        let status = Status::new(Duration::from_secs(60));
        status.observe(Some(&Positions::from([(0, 50)])), Some(&[(0, 0, 10)]));
        assert!(status.check().unwrap_err().contains("[0]"));
    }
}
