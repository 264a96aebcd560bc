//! Driving a [`Workload`]: closed loop (a fixed number of workers, each sending when its last
//! request answered) or open loop (a fixed arrival rate, latency from the intended send time),
//! a warm-up whose requests are not counted, and a live progress line.

use std::io::Write;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use tokio::time::Instant;

use crate::schedule::Schedule;
use crate::stats::{Key, Outcome, Recorder};
use crate::workload::Workload;

/// How requests are sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Closed { concurrency: usize },
    Open { rate_per_s: u32, max_in_flight: usize },
}

/// A duration-bound run.
#[derive(Debug, Clone, Copy)]
pub struct Plan {
    pub mode: Mode,
    pub warmup: Duration,
    pub duration: Duration,
    pub progress: bool,
}

/// What a run measured.
#[derive(Debug)]
pub struct Measured {
    pub recorder: Recorder,
    /// The measured window that throughputs divide by.
    pub window: Duration,
    /// Open loop: requests sent more than 1 ms after their intended time, because every worker
    /// was busy (the service could not keep up) or the generator itself lagged.
    pub late_sends: u64,
}

/// Shared between the workers and the progress line.
struct Shared {
    recorder: Mutex<Recorder>,
    /// When measuring starts (the end of warm-up).
    measure_from: Instant,
    done: AtomicU64,
    errors: AtomicU64,
    late: AtomicU64,
}

impl Shared {
    /// Counts a request sent (or due) at `sent` that completed at `done`.
    fn record(&self, sent: Instant, done: Instant, key: &Key, outcome: &Outcome) {
        self.done.fetch_add(1, Ordering::Relaxed);
        if outcome.is_err() {
            self.errors.fetch_add(1, Ordering::Relaxed);
        }
        let mut r = self.recorder.lock().unwrap_or_else(PoisonError::into_inner);
        if sent < self.measure_from {
            r.warmup_requests += 1;
        } else {
            r.record(key, done - self.measure_from, done - sent, outcome);
        }
    }
}

/// Runs `work` as `plan` says, and returns what was measured after warm-up.
pub async fn run<W: Workload>(work: Arc<W>, plan: Plan) -> Measured {
    let start = Instant::now();
    let shared = Arc::new(Shared {
        recorder: Mutex::new(Recorder::new()),
        measure_from: start + plan.warmup,
        done: AtomicU64::new(0),
        errors: AtomicU64::new(0),
        late: AtomicU64::new(0),
    });
    let end = start + plan.warmup + plan.duration;
    let next = Arc::new(AtomicU64::new(0));
    let mut workers = tokio::task::JoinSet::new();
    match plan.mode {
        Mode::Closed { concurrency } => {
            for _ in 0..concurrency.max(1) {
                let (work, shared, next) = (work.clone(), shared.clone(), next.clone());
                workers.spawn(async move {
                    loop {
                        let sent = Instant::now();
                        if sent >= end {
                            break;
                        }
                        let seq = next.fetch_add(1, Ordering::Relaxed);
                        let (key, outcome) = work.one(seq).await;
                        shared.record(sent, Instant::now(), &key, &outcome);
                    }
                });
            }
        }
        Mode::Open { rate_per_s, max_in_flight } => {
            let schedule = Schedule::new(rate_per_s, plan.warmup + plan.duration);
            let total = schedule.map_or(0, |s| s.total());
            let workers_n = usize::try_from(total).unwrap_or(usize::MAX).min(max_in_flight.max(1));
            for _ in 0..workers_n {
                let (work, shared, next) = (work.clone(), shared.clone(), next.clone());
                workers.spawn(async move {
                    let Some(schedule) = schedule else { return };
                    loop {
                        let seq = next.fetch_add(1, Ordering::Relaxed);
                        if seq >= schedule.total() {
                            break;
                        }
                        let due = start + schedule.due(seq);
                        tokio::time::sleep_until(due).await;
                        if Instant::now().saturating_duration_since(due) > Duration::from_millis(1) {
                            shared.late.fetch_add(1, Ordering::Relaxed);
                        }
                        let (key, outcome) = work.one(seq).await;
                        // From the intended time: a send that waited for a free worker is charged.
                        shared.record(due, Instant::now(), &key, &outcome);
                    }
                });
            }
        }
    }

    let finished = Arc::new(AtomicBool::new(false));
    let progress = plan.progress.then(|| {
        let (shared, finished) = (shared.clone(), finished.clone());
        tokio::spawn(async move { progress_line(shared, finished, start, plan).await })
    });
    while workers.join_next().await.is_some() {}
    finished.store(true, Ordering::Relaxed);
    if let Some(p) = progress {
        let _ = p.await;
    }
    let late_sends = shared.late.load(Ordering::Relaxed);
    let recorder = std::mem::take(&mut *shared.recorder.lock().unwrap_or_else(PoisonError::into_inner));
    Measured { recorder, window: plan.duration, late_sends }
}

/// Rewrites one line on stderr every second: phase, elapsed, last second's rate and p99.
async fn progress_line(shared: Arc<Shared>, finished: Arc<AtomicBool>, start: Instant, plan: Plan) {
    let mut tick = tokio::time::interval_at(start + Duration::from_secs(1), Duration::from_secs(1));
    let mut last_done = 0;
    let total = plan.warmup + plan.duration;
    while !finished.load(Ordering::Relaxed) {
        tick.tick().await;
        let now = Instant::now();
        let elapsed = now - start;
        let done = shared.done.load(Ordering::Relaxed);
        let rate = done - last_done;
        last_done = done;
        let phase = if now < shared.measure_from {
            "warm-up  ".to_owned()
        } else if elapsed < total {
            "measuring".to_owned()
        } else {
            "draining ".to_owned()
        };
        let p99 = if now >= shared.measure_from + Duration::from_secs(1) {
            let second = usize::try_from((now - shared.measure_from).as_secs().saturating_sub(1)).unwrap_or(0);
            let (_, p99) = shared.recorder.lock().unwrap_or_else(PoisonError::into_inner).second(second);
            format!("p99 {p99:>7.1} ms")
        } else {
            "p99       - ms".to_owned()
        };
        eprint!(
            "\r  {phase} {:>5.0}s/{:.0}s  {rate:>7} req/s  {p99}  done {done:>9}  errors {:>7}  late {:>7}   ",
            elapsed.as_secs_f64(),
            total.as_secs_f64(),
            shared.errors.load(Ordering::Relaxed),
            shared.late.load(Ordering::Relaxed),
        );
        let _ = std::io::stderr().flush();
    }
    eprintln!();
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A stand-in service: request 0 stalls for `stall`, every other takes `work`. Under
    /// `tokio::time::pause` the clock only moves when every task waits, so the figures below are
    /// exact, not timing-dependent.
    struct Fake {
        stall: Duration,
        work: Duration,
    }

    impl Workload for Fake {
        async fn one(&self, seq: u64) -> (Key, Outcome) {
            tokio::time::sleep(if seq == 0 { self.stall } else { self.work }).await;
            (Key { op: "fake", region: "NA".into(), shard: "na-1".into() }, Ok(()))
        }
    }

    fn only_series(m: &Measured) -> &crate::stats::Series {
        m.recorder.series().values().next().expect("one series")
    }

    #[tokio::test(start_paused = true)]
    async fn open_loop_charges_a_stall_to_every_request_it_delayed() {
        let fake = Fake { stall: Duration::from_millis(500), work: Duration::from_millis(10) };
        let plan = Plan {
            mode: Mode::Open { rate_per_s: 10, max_in_flight: 1 },
            warmup: Duration::ZERO,
            duration: Duration::from_secs(1),
            progress: false,
        };
        let m = run(Arc::new(fake), plan).await;
        let h = &only_series(&m).latency;
        assert_eq!(h.len(), 10);
        // Due at 0, 100, …, 900 ms; the first answers at 500 ms, so requests 1–5 leave late and
        // their latency counts from when they were due: 410, 320, 230, 140, 50 ms.
        assert_eq!(m.late_sends, 5);
        assert_eq!(h.count_between(100_000, 1_000_000), 5);
        let max_ms = h.max() as f64 / 1000.0;
        assert!((max_ms - 500.0).abs() < 1.0, "{max_ms}");
        assert_eq!(h.count_between(1, 11_000), 4, "the requests after the stall took 10 ms");
    }

    #[tokio::test(start_paused = true)]
    async fn closed_loop_counts_only_what_was_sent_after_warm_up() {
        let fake = Fake { stall: Duration::from_millis(100), work: Duration::from_millis(100) };
        let plan = Plan {
            mode: Mode::Closed { concurrency: 2 },
            warmup: Duration::from_millis(200),
            duration: Duration::from_secs(1),
            progress: false,
        };
        let m = run(Arc::new(fake), plan).await;
        assert_eq!(m.recorder.warmup_requests, 4);
        assert_eq!(only_series(&m).ok, 20);
        assert_eq!(m.window, Duration::from_secs(1));
        let timeline = m.recorder.timeline();
        assert_eq!(timeline.iter().map(|p| p.ok).sum::<u64>(), 20);
    }
}
