//! Lag and progress, measured from outside the consuming client: the broker's high watermarks
//! against the checkpoints stored in the consumer's database. Whatever state the consuming
//! client (or the broker's idea of it) is in, these two numbers say whether records wait and
//! whether anyone is applying them.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer as _};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use super::runtime::Names;
use super::{Settings, Status, checkpoint};

/// How long one broker or database question may take before the measurement is skipped.
const ASK_TIMEOUT: Duration = Duration::from_secs(2);

/// Measures every `lag_interval` until `stop`, publishing `<service>_consumer_lag{partition}`
/// and `<service>_consumer_stalled`, and feeding [`Status::observe`] (which asks the active
/// process to rebuild its client on a stall).
pub async fn run(settings: Settings, pool: PgPool, status: Arc<Status>, names: Arc<Names>, stop: CancellationToken) {
    let mut client: Option<Arc<BaseConsumer>> = None;
    let mut reported: Vec<i32> = Vec::new();
    let mut tick = tokio::time::interval(settings.config.lag_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => break,
            _ = tick.tick() => {}
        }
        let checkpoints =
            match tokio::time::timeout(ASK_TIMEOUT, checkpoint::load(&pool, &settings.name, &settings.config.topic))
                .await
            {
                Ok(Ok(cps)) => Some(cps),
                Ok(Err(e)) => {
                    tracing::debug!(error = %e, "checkpoints not read");
                    None
                }
                Err(_) => None,
            };
        let c = match &client {
            Some(c) => c.clone(),
            None => match watch_client(&settings) {
                Ok(c) => {
                    let c = Arc::new(c);
                    client = Some(c.clone());
                    c
                }
                Err(e) => {
                    tracing::warn!(error = %e, "watchdog client not created");
                    continue;
                }
            },
        };
        let topic = settings.config.topic.clone();
        let marks = match tokio::task::spawn_blocking(move || watermarks(&c, &topic)).await {
            Ok(Ok(marks)) => Some(marks),
            Ok(Err(e)) => {
                tracing::debug!(error = %e, "watermarks not read");
                // A fresh client next time: this one may be as wedged as the broker was.
                client = None;
                None
            }
            Err(e) => {
                tracing::warn!(error = %e, "watermark task failed");
                None
            }
        };
        let lags = status.observe(checkpoints.as_ref(), marks.as_deref());
        if !lags.is_empty() {
            reported = lags.iter().map(|(p, _)| *p).collect();
        }
        for (partition, lag) in lags {
            #[allow(clippy::cast_precision_loss, reason = "a gauge; lags far below 2^52")]
            metrics::gauge!(
                names.lag.clone(),
                "topic" => settings.config.topic.clone(),
                "consumer" => settings.name.clone(),
                "partition" => partition.to_string()
            )
            .set(lag as f64);
        }
        let snapshot = status.snapshot();
        metrics::gauge!(names.stalled.clone(), "topic" => settings.config.topic.clone(), "consumer" => settings.name.clone())
            .set(if snapshot.stalled { 1.0 } else { 0.0 });
        if snapshot.stalled {
            tracing::warn!(
                lag = snapshot.lag,
                no_progress_s = snapshot.no_progress_for.as_secs(),
                role = snapshot.role.as_str(),
                "consumer stalled: records wait and the checkpoints do not move"
            );
        }
    }
    // A consumer that stopped (a retired projector generation, in a process that goes on)
    // neither lags nor stalls: its last values would keep an alarm on for nothing.
    for partition in reported {
        metrics::gauge!(
            names.lag.clone(),
            "topic" => settings.config.topic.clone(),
            "consumer" => settings.name.clone(),
            "partition" => partition.to_string()
        )
        .set(0.0);
    }
    metrics::gauge!(names.stalled.clone(), "topic" => settings.config.topic.clone(), "consumer" => settings.name.clone())
        .set(0.0);
    if let Some(c) = client {
        // Dropping a client may wait for its broker threads.
        let _ = tokio::task::spawn_blocking(move || drop(c)).await;
    }
}

fn watch_client(settings: &Settings) -> rdkafka::error::KafkaResult<BaseConsumer> {
    crate::kafka::assigned_consumer_config(&settings.config.kafka_bootstrap, &settings.name)
        .set("client.id", format!("{}-watchdog", settings.service))
        .create()
}

/// `(partition, low, high)` for every partition of `topic`, sorted by partition, each answer
/// bounded by `timeout`. Blocking (librdkafka's calls are): run it off the async threads.
pub fn watermarks_within(c: &BaseConsumer, topic: &str, timeout: Duration) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let md = c.fetch_metadata(Some(topic), timeout)?;
    let t = md
        .topics()
        .iter()
        .find(|t| t.name() == topic && t.error().is_none())
        .ok_or_else(|| anyhow::anyhow!("topic {topic} not found"))?;
    let mut out = Vec::with_capacity(t.partitions().len());
    for p in t.partitions() {
        let (low, high) = c.fetch_watermarks(topic, p.id(), timeout)?;
        out.push((p.id(), low, high));
    }
    out.sort_unstable();
    Ok(out)
}

fn watermarks(c: &BaseConsumer, topic: &str) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    watermarks_within(c, topic, ASK_TIMEOUT)
}
