//! Runs one consumer per LIVE or BUILDING generation, and switches when a rebuild caught up.
//!
//! Every `supervise_interval` it reads `projection_generation` (the one source of truth, so
//! `projector rebuild` from another process is picked up within one tick): starts a consumer
//! for a generation that has none, stops the consumer of a generation that is RETIRED, and
//! tries [`generations::try_switch`] while a BUILDING generation is not held. It also
//! publishes the per-generation gauges, and tells readiness which consumer is LIVE.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use chrono::Utc;
use platform::consumer::{Consumer, Status};
use sqlx::PgPool;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::Settings;
use crate::consumer::Projector;
use crate::generations::{self, Generation, State, SwitchOutcome};

/// A generation and its consumer's status.
type Watched = (Generation, Arc<Status>);

/// The LIVE generation's consumer, as readiness sees it.
#[derive(Debug, Default, Clone)]
pub struct LiveConsumer {
    inner: Arc<RwLock<Option<Watched>>>,
}

impl LiveConsumer {
    fn set(&self, live: Option<Watched>) {
        *self.inner.write().unwrap_or_else(std::sync::PoisonError::into_inner) = live;
    }

    pub fn get(&self) -> Option<Watched> {
        self.inner.read().unwrap_or_else(std::sync::PoisonError::into_inner).clone()
    }

    /// Readiness: the LIVE projection is consuming (the runtime's check: not paused, not
    /// stalled, not past the log's end) and lags at most `max_lag` records.
    pub fn check(&self, max_lag: i64) -> Result<(), String> {
        let Some((g, status)) = self.get() else {
            return Err("no LIVE generation is being consumed yet".into());
        };
        status.check().map_err(|e| format!("LIVE generation {g}: {e}"))?;
        match status.snapshot().lag {
            Some(lag) if lag > max_lag => {
                Err(format!("LIVE generation {g} lags {lag} records (more than max_lag_records {max_lag})"))
            }
            _ => Ok(()),
        }
    }
}

/// A running consumer.
struct Running {
    stop: CancellationToken,
    task: JoinHandle<anyhow::Result<()>>,
    status: Arc<Status>,
}

pub struct Supervisor {
    settings: Settings,
    /// The `read_models` database: generations, checkpoints, the tables.
    pool: PgPool,
    /// Shared with readiness.
    live: LiveConsumer,
    /// When rebuild progress was last measured: at most once per `lag_interval`, since it
    /// asks the broker for every partition's watermarks.
    progress_at: std::sync::Mutex<Option<std::time::Instant>>,
}

impl Supervisor {
    pub fn new(settings: Settings, pool: PgPool, live: LiveConsumer) -> Self {
        Self { settings, pool, live, progress_at: std::sync::Mutex::new(None) }
    }

    /// Supervises until `stop`, then stops every consumer (each finishes its batch and gives
    /// its lease back).
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let mut running: BTreeMap<Generation, Running> = BTreeMap::new();
        let interval = self.settings.supervise_interval;
        let mut bootstrapped = false;
        loop {
            if !bootstrapped {
                match generations::bootstrap(&self.pool).await {
                    Ok(()) => bootstrapped = true,
                    Err(e) => tracing::warn!(error = %e, "read_models not reachable: retrying"),
                }
            }
            let again = if bootstrapped {
                match self.tick(&mut running, &stop).await {
                    Ok(again) => again,
                    Err(e) => {
                        tracing::warn!(error = %e, "supervisor tick failed: retrying");
                        false
                    }
                }
            } else {
                false
            };
            if !again {
                tokio::select! {
                    () = stop.cancelled() => break,
                    () = tokio::time::sleep(interval) => {}
                }
            }
            if stop.is_cancelled() {
                break;
            }
        }
        self.live.set(None);
        for (g, r) in std::mem::take(&mut running) {
            stop_consumer(g, r).await;
        }
        Ok(())
    }

    /// One round; `true` when something changed and another round should follow at once.
    async fn tick(
        &self,
        running: &mut BTreeMap<Generation, Running>,
        stop: &CancellationToken,
    ) -> anyhow::Result<bool> {
        let rows = generations::list(&self.pool, true).await?;
        for r in &rows {
            if let Some(old) = running.get(&r.generation)
                && old.task.is_finished()
            {
                tracing::warn!(generation = %r.generation, "consumer ended: starting it again");
                running.remove(&r.generation);
            }
            if let std::collections::btree_map::Entry::Vacant(slot) = running.entry(r.generation) {
                let token = stop.child_token();
                let consumer = Consumer::new(
                    self.settings.runtime(r.generation),
                    self.pool.clone(),
                    Projector::new(r.generation),
                )?;
                let status = consumer.status();
                let task = tokio::spawn(consumer.run(token.clone()));
                tracing::info!(generation = %r.generation, state = r.state.as_str(), "consumer started");
                slot.insert(Running { stop: token, task, status });
            }
        }
        let gone: Vec<Generation> =
            running.keys().filter(|g| !rows.iter().any(|r| r.generation == **g)).copied().collect();
        for g in gone {
            if let Some(r) = running.remove(&g) {
                stop_consumer(g, r).await;
                metrics::gauge!("projector_generation_consuming", "generation" => g.get().to_string()).set(0.0);
            }
        }
        let live = rows.iter().find(|r| r.state == State::Live).map(|r| r.generation);
        self.live.set(live.and_then(|g| running.get(&g).map(|r| (g, r.status.clone()))));
        if let Some(g) = live {
            metrics::gauge!("projector_live_generation").set(f64::from(g.get()));
        }
        let now = Utc::now();
        for r in &rows {
            let label = r.generation.get().to_string();
            metrics::gauge!("projector_generation_consuming", "generation" => label.clone()).set(1.0);
            if let Some(at) = r.last_applied_at {
                #[allow(clippy::cast_precision_loss, reason = "a gauge of seconds")]
                let age = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
                metrics::gauge!("projector_last_applied_age_seconds", "generation" => label.clone(), "state" => r.state.as_str())
                    .set(age);
            }
        }
        let Some(building) = rows.iter().find(|r| r.state == State::Building) else {
            return Ok(false);
        };
        self.report_progress(building.generation).await;
        if building.hold_switch {
            return Ok(false);
        }
        match generations::try_switch(&self.pool, &self.settings.consumer.topic, true).await? {
            SwitchOutcome::Switched { from, to } => {
                tracing::info!(%from, %to, "rebuild caught up: switched");
                metrics::gauge!("projector_rebuild_progress_ratio", "generation" => to.get().to_string()).set(1.0);
                Ok(true)
            }
            _ => Ok(false),
        }
    }

    /// `projector_rebuild_progress_ratio{generation}`: records read of those in the log.
    async fn report_progress(&self, g: Generation) {
        {
            let mut at = self.progress_at.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            let every = self.settings.consumer.lag_interval;
            if at.is_some_and(|t| t.elapsed() < every) {
                return;
            }
            *at = Some(std::time::Instant::now());
        }
        let (marks, cps) = tokio::join!(
            generations::watermarks(&self.settings.consumer.kafka_bootstrap, &self.settings.consumer.topic),
            generations::checkpoints(&self.pool, &self.settings.consumer.topic)
        );
        if let (Ok(marks), Ok(cps)) = (marks, cps) {
            let p = generations::progress(&cps.get(&g).cloned().unwrap_or_default(), &marks);
            metrics::gauge!("projector_rebuild_progress_ratio", "generation" => g.get().to_string()).set(p.ratio);
        }
    }
}

/// Stops one consumer and waits (bounded) for it to give its lease back.
async fn stop_consumer(g: Generation, r: Running) {
    r.stop.cancel();
    match tokio::time::timeout(Duration::from_secs(15), r.task).await {
        Ok(Ok(Ok(()))) => tracing::info!(generation = %g, "consumer stopped"),
        Ok(Ok(Err(e))) => tracing::warn!(generation = %g, error = %e, "consumer ended with an error"),
        Ok(Err(e)) => tracing::warn!(generation = %g, error = %e, "consumer task failed"),
        Err(_) => tracing::warn!(generation = %g, "consumer did not stop within 15 s"),
    }
}
