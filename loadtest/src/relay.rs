//! The outbox relay's side of a run: how fast each touched shard's outbox rows were published,
//! read from the shard's own `outbox` table (the rows the run's orders wrote).

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;

/// One shard's outbox after a run.
#[derive(Debug, Clone, Serialize)]
pub struct RelayResult {
    pub shard: String,
    /// Outbox rows written since the load started.
    pub rows: i64,
    pub sent: i64,
    pub pending: i64,
    pub failed: i64,
    /// Sent rows per second, from the first row's commit to the last row's publication.
    pub sent_per_s: f64,
    /// Time from a row's transaction to its publication.
    pub lag_p50_ms: f64,
    pub lag_p99_ms: f64,
    pub lag_max_ms: f64,
    /// Time the tool waited after the load for the outbox to drain.
    pub drained_after_ms: Option<f64>,
}

type Counts = (i64, i64, i64, i64, Option<f64>, Option<f64>, Option<f64>, Option<f64>);

/// Waits up to `wait` for the rows written since `since` to leave PENDING, then measures.
pub async fn measure(shard: &str, url: &str, since: DateTime<Utc>, wait: Duration) -> anyhow::Result<RelayResult> {
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(url).await?;
    let started = tokio::time::Instant::now();
    let query = "select count(*), count(*) filter (where status = 'SENT'), count(*) filter (where status = 'PENDING'), \
                 count(*) filter (where status = 'FAILED'), \
                 extract(epoch from max(sent_at) - min(created_at))::float8, \
                 (percentile_cont(0.5) within group (order by extract(epoch from sent_at - created_at)))::float8, \
                 (percentile_cont(0.99) within group (order by extract(epoch from sent_at - created_at)))::float8, \
                 extract(epoch from max(sent_at - created_at))::float8 \
                 from outbox where created_at >= $1";
    let (drained_after, counts) = loop {
        let counts: Counts = sqlx::query_as(query).bind(since).fetch_one(&pool).await?;
        if counts.2 == 0 {
            break (Some(started.elapsed()), counts);
        }
        if started.elapsed() >= wait {
            break (None, counts);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    pool.close().await;
    let (rows, sent, pending, failed, span, p50, p99, max) = counts;
    let ms = |s: Option<f64>| s.unwrap_or(0.0) * 1000.0;
    Ok(RelayResult {
        shard: shard.to_owned(),
        rows,
        sent,
        pending,
        failed,
        sent_per_s: span.filter(|s| *s > 0.0).map_or(0.0, |s| sent as f64 / s),
        lag_p50_ms: ms(p50),
        lag_p99_ms: ms(p99),
        lag_max_ms: ms(max),
        drained_after_ms: drained_after.map(|d| d.as_secs_f64() * 1000.0),
    })
}
