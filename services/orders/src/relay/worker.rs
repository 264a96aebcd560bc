//! One shard's relay: win the shard's lease, then drain its outbox into the topic for as long
//! as the lease holds.
//!
//! The lease is a session-level advisory lock on a connection of its own. Every claim and mark
//! runs on that same connection, so the moment the session is gone (the process died, the
//! server cut it) the lock is free for a standby and this relay's next statement fails: it
//! steps down instead of publishing without the lease.

use std::str::FromStr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use platform::trace_context;
use shard_router::{Partition, ShardName, ShardPools};
use sqlx::postgres::{PgConnectOptions, PgListener};
use sqlx::{ConnectOptions, Connection, PgConnection};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::outbox::{self, OutboxRow};
use super::publish::{Failure, ProducerSettings, Publisher};
use super::{Role, Shared};

/// How often a relay holding a hand-off asks the source whether it is done.
const HAND_OFF_POLL: Duration = Duration::from_millis(100);

/// How one shard relay behaves; see the `Settings` fields of the same names.
#[derive(Debug, Clone)]
pub struct Tuning {
    pub batch_size: i64,
    pub poll_interval: Duration,
    pub lease_retry: Duration,
    pub max_attempts: i32,
    pub retry_base: Duration,
    pub retry_max: Duration,
    pub connect_timeout: Duration,
    /// Bound on any one statement, so a silent network failure ends leadership instead of
    /// hanging it.
    pub statement_timeout: Duration,
}

impl Tuning {
    /// Backoff after the `attempt`-th failure: base · 2^(attempt-1), capped.
    pub fn retry_delay(&self, attempt: i32) -> Duration {
        let exp = u32::try_from(attempt.saturating_sub(1).clamp(0, 30)).unwrap_or(30);
        self.retry_base.saturating_mul(2u32.saturating_pow(exp)).min(self.retry_max)
    }
}

pub struct ShardRelay {
    pub shard: String,
    pub region: String,
    pub url: String,
    pub tuning: Tuning,
    pub producer: ProducerSettings,
    pub shared: Arc<Shared>,
    /// Every shard of the map, for the hand-off of partitions that moved here: this relay
    /// asks the source whether it has published the partition's earlier rows.
    pub peers: ShardPools,
}

/// Why leadership ended.
#[derive(Debug, thiserror::Error)]
enum Stepped {
    #[error("shard database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("shard database: no answer within {0:?}")]
    Timeout(Duration),
    #[error("producer: {0}")]
    Producer(String),
}

impl ShardRelay {
    /// Campaigns for the lease and relays while holding it, until `stop`.
    pub async fn run(self, stop: CancellationToken) {
        let labels = [("shard", self.shard.clone())];
        while !stop.is_cancelled() {
            self.shared.set_role(&self.shard, Role::Standby, None);
            let conn = match self.campaign(&stop).await {
                Ok(Some(conn)) => conn,
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(shard = %self.shard, error = %e, "cannot reach the shard; retrying");
                    self.shared.set_role(&self.shard, Role::Unreachable, Some(e.to_string()));
                    sleep_or_stop(self.tuning.lease_retry, &stop).await;
                    continue;
                }
            };
            tracing::info!(shard = %self.shard, "won the outbox lease: publishing");
            self.shared.set_role(&self.shard, Role::Leader, None);
            metrics::gauge!("orders_relay_leader", &labels).set(1.0);
            let result = self.lead(conn, &stop).await;
            metrics::gauge!("orders_relay_leader", &labels).set(0.0);
            if let Err(e) = result {
                tracing::warn!(shard = %self.shard, error = %e, "lost the outbox lease: standing by");
                self.shared.set_role(&self.shard, Role::Standby, Some(e.to_string()));
                sleep_or_stop(self.tuning.lease_retry, &stop).await;
            }
        }
        self.shared.set_role(&self.shard, Role::Stopped, None);
    }

    async fn connect(&self) -> Result<PgConnection, sqlx::Error> {
        let opts = PgConnectOptions::from_str(&self.url)?
            .application_name(&format!("orders-relay pid {}", std::process::id()))
            .log_statements(tracing::log::LevelFilter::Trace);
        tokio::time::timeout(self.tuning.connect_timeout, opts.connect())
            .await
            .map_err(|_| sqlx::Error::PoolTimedOut)?
    }

    /// Returns the connection holding the lease, or `None` when stopped first.
    async fn campaign(&self, stop: &CancellationToken) -> Result<Option<PgConnection>, sqlx::Error> {
        let mut conn = self.connect().await?;
        loop {
            if stop.is_cancelled() {
                return Ok(None);
            }
            if outbox::try_lease(&mut conn).await? {
                return Ok(Some(conn));
            }
            sleep_or_stop(self.tuning.lease_retry, stop).await;
        }
    }

    /// Publishes while the lease holds; returns `Ok` only when stopped (lease released).
    async fn lead(&self, mut conn: PgConnection, stop: &CancellationToken) -> Result<(), Stepped> {
        let mut publisher = self.publisher()?;
        // Wake-ups on commit; without them (listener down) the poll interval still drains.
        let mut listener = match tokio::time::timeout(self.tuning.connect_timeout, PgListener::connect(&self.url)).await
        {
            Ok(Ok(mut l)) => match l.listen("outbox").await {
                Ok(()) => Some(l),
                Err(e) => {
                    tracing::warn!(shard = %self.shard, error = %e, "LISTEN outbox failed; polling only");
                    None
                }
            },
            Ok(Err(e)) => {
                tracing::warn!(shard = %self.shard, error = %e, "LISTEN outbox failed; polling only");
                None
            }
            Err(_) => None,
        };
        let mut broker_failures: i32 = 0;
        let mut last_gauges = Instant::now().checked_sub(Duration::from_secs(60)).unwrap_or_else(Instant::now);
        // The claim skips held rows by itself; asking whether a hand-off ended is needed only
        // every HAND_OFF_POLL, not on every wake-up of a busy relay.
        let (mut holding, mut last_hand_off) = (false, last_gauges);
        loop {
            // Every batch awaits all its deliveries, so nothing is ever left queued to flush.
            if stop.is_cancelled() {
                let _ = tokio::time::timeout(Duration::from_secs(2), outbox::release_lease(&mut conn)).await;
                let _ = conn.close().await;
                return Ok(());
            }
            if last_gauges.elapsed() >= Duration::from_secs(5) {
                self.report_backlog(&mut conn).await?;
                last_gauges = Instant::now();
            }
            if last_hand_off.elapsed() >= HAND_OFF_POLL {
                holding = self.hand_off(&mut conn).await?;
                last_hand_off = Instant::now();
            }
            // Topics first: publishing to a missing topic would let the broker create it with
            // its own defaults.
            if let Err(e) = self.shared.topics_ready().await {
                broker_failures += 1;
                tracing::warn!(shard = %self.shard, error = %e, "topics not ready; retrying");
                sleep_or_stop(self.tuning.retry_delay(broker_failures), stop).await;
                continue;
            }
            // Drain: batches until nothing is ready or the broker fails.
            let mut unavailable: Option<String> = None;
            while !stop.is_cancelled() {
                let rows = self.bounded(outbox::claim(&mut conn, self.tuning.batch_size)).await?;
                if rows.is_empty() {
                    break;
                }
                unavailable = self.publish_batch(&mut conn, &publisher, rows).await?;
                if unavailable.is_some() {
                    broker_failures += 1;
                    break;
                }
                broker_failures = 0;
            }
            if let Some(error) = unavailable {
                // A fresh producer after any failed batch: an idempotent producer whose records
                // timed out keeps sequence state the broker may no longer accept (Tansu answers
                // it with UNKNOWN_SERVER_ERROR after a restart), or may have failed for good.
                // A new one gets a new producer id; rows stay at-least-once either way.
                if let Some(fatal) = publisher.fatal_error() {
                    tracing::warn!(shard = %self.shard, error = %fatal, "producer failed for good");
                }
                publisher = self.publisher()?;
                let delay = self.tuning.retry_delay(broker_failures);
                tracing::warn!(shard = %self.shard, delay_ms = delay.as_millis() as u64, %error, "broker unavailable; backing off");
                sleep_or_stop(delay, stop).await;
                continue;
            }
            // Idle: wait for a commit's NOTIFY, the poll interval, or the stop. While a
            // hand-off holds rows, look again soon: the source's relay is about to finish.
            let poll = tokio::time::sleep(if holding {
                HAND_OFF_POLL.min(self.tuning.poll_interval)
            } else {
                self.tuning.poll_interval
            });
            match listener.as_mut() {
                Some(l) => tokio::select! {
                    () = stop.cancelled() => {}
                    () = poll => {}
                    n = l.recv() => if let Err(e) = n {
                        tracing::warn!(shard = %self.shard, error = %e, "LISTEN connection failed; polling only");
                        listener = None;
                    },
                },
                None => tokio::select! {
                    () = stop.cancelled() => {}
                    () = poll => {}
                },
            }
        }
    }

    /// Releases the partitions whose hand-off is complete: the source shard has no PENDING
    /// row of them up to its watermark, so every event written there before the move is on the
    /// topic and the rows written here may follow. Returns whether anything is still held. A
    /// source that cannot be asked, or that shards.toml no longer defines, keeps its partitions
    /// held: order over speed, and a shard is removed only once `orders-rebalance status` says
    /// its outbox is empty.
    async fn hand_off(&self, conn: &mut PgConnection) -> Result<bool, Stepped> {
        let held = self.bounded(outbox::held(conn)).await?;
        let mut still = 0usize;
        for (source, partitions, upto) in held {
            let pool = ShardName::parse(&source).ok().and_then(|name| self.peers.get(&name).cloned());
            let pending = match pool {
                None => {
                    tracing::warn!(shard = %self.shard, %source, partitions = partitions.len(),
                        "hand-off source is not in shards.toml: holding its partitions' events (define the shard again)");
                    partitions.clone()
                }
                Some(pool) => {
                    let asked = async {
                        let mut c = pool.acquire().await?;
                        outbox::pending_partitions(&mut c, &partitions, &upto).await
                    };
                    match tokio::time::timeout(self.tuning.statement_timeout, asked).await {
                        Ok(Ok(p)) => p,
                        Ok(Err(e)) => {
                            tracing::warn!(shard = %self.shard, %source, error = %e, "cannot ask the hand-off source; holding");
                            partitions.clone()
                        }
                        Err(_) => partitions.clone(),
                    }
                }
            };
            let done: Vec<Partition> = partitions.iter().copied().filter(|p| !pending.contains(p)).collect();
            if !done.is_empty() {
                let n = self.bounded(outbox::release_held(conn, &source, &done)).await?;
                tracing::info!(shard = %self.shard, %source, partitions = n, "outbox hand-off complete: publishing the moved partitions here");
            }
            still += partitions.len() - done.len();
        }
        metrics::gauge!("orders_relay_held_partitions", "shard" => self.shard.clone()).set(still as f64);
        Ok(still > 0)
    }

    fn publisher(&self) -> Result<Publisher, Stepped> {
        Publisher::new(self.producer.clone(), self.shard.clone(), self.region.clone())
            .map_err(|e| Stepped::Producer(e.to_string()))
    }

    async fn bounded<T>(&self, fut: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, Stepped> {
        match tokio::time::timeout(self.tuning.statement_timeout, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(Stepped::Timeout(self.tuning.statement_timeout)),
        }
    }

    async fn report_backlog(&self, conn: &mut PgConnection) -> Result<(), Stepped> {
        let (pending, failed) = self.bounded(outbox::backlog(conn)).await?;
        let labels = [("shard", self.shard.clone())];
        metrics::gauge!("orders_relay_backlog", &labels).set(pending as f64);
        metrics::gauge!("orders_relay_failed_rows", &labels).set(failed as f64);
        Ok(())
    }

    /// Publishes one claimed batch and records every row's outcome. `Ok(Some(error))`: the
    /// broker was unavailable for some rows (they stay pending, first in line).
    async fn publish_batch(
        &self,
        conn: &mut PgConnection,
        publisher: &Publisher,
        rows: Vec<OutboxRow>,
    ) -> Result<Option<String>, Stepped> {
        let labels = [("shard", self.shard.clone())];
        metrics::histogram!("orders_relay_batch_size", &labels).record(rows.len() as f64);
        // Tracing: the batch is a root span linked to every row's trace (one batch serves many
        // orders, so it can be the child of none), and each row gets a short `relay publish`
        // span that is the child of its row's context, so the publication shows in the order's
        // own trace. That span's context is what the record carries on to the consumers.
        let batch_span = tracing::info_span!(
            parent: None,
            "relay batch",
            otel.kind = "producer",
            shard = %self.shard,
            region = %self.region,
            rows = rows.len(),
        );
        let mut failed: Vec<(OutboxRow, Failure)> = Vec::new();
        let mut in_flight = Vec::with_capacity(rows.len());
        for row in rows {
            let row_cx = trace_context::from_traceparent(row.traceparent.as_deref());
            trace_context::add_link(&batch_span, &row_cx);
            let span = tracing::info_span!(
                parent: &batch_span,
                "relay publish",
                otel.kind = "producer",
                shard = %self.shard,
                outbox_id = row.id,
                event_type = %row.event_type,
                messaging.destination.name = %self.producer.topic,
            );
            trace_context::set_parent(&span, row_cx);
            let enqueued = publisher.enqueue(&row, &trace_context::context_of(&span));
            match enqueued {
                Ok(delivery) => in_flight.push((row, delivery, span)),
                Err(f) => {
                    span.in_scope(|| tracing::warn!(error = f.message(), "record not enqueued"));
                    failed.push((row, f));
                }
            }
        }
        let mut sent = Vec::with_capacity(in_flight.len());
        let deliveries = in_flight.into_iter().map(|(row, d, span)| async move { (row, d.instrument(span).await) });
        for (row, result) in join_all(deliveries).instrument(batch_span.clone()).await {
            match result {
                Ok(Ok(_)) => sent.push(row),
                Ok(Err((e, _))) => {
                    let f = super::publish::classify(&e);
                    failed.push((row, f));
                }
                Err(_) => failed.push((row, Failure::Transient("producer dropped the record".into()))),
            }
        }

        let ids: Vec<i64> = sent.iter().map(|r| r.id).collect();
        self.bounded(outbox::mark_sent(conn, &ids)).await?;
        self.shared.add_published(&self.shard, sent.len());
        metrics::counter!("orders_relay_published_total", &labels).increment(sent.len() as u64);
        let now = chrono::Utc::now();
        let lag = metrics::histogram!("orders_relay_publish_lag_seconds", &labels);
        let mut redelivered = 0u64;
        for row in &sent {
            lag.record((now - row.created_at).to_std().unwrap_or_default().as_secs_f64());
            redelivered += u64::from(row.was_in_flight);
        }
        if redelivered > 0 {
            tracing::info!(shard = %self.shard, redelivered, "republished rows a previous relay had in flight");
            metrics::counter!("orders_relay_redelivered_total", &labels).increment(redelivered);
        }

        let mut unavailable: Vec<i64> = Vec::new();
        let mut unavailable_error = String::new();
        for (row, failure) in failed {
            metrics::counter!("orders_relay_retried_total", &labels).increment(1);
            match failure {
                Failure::Transient(msg) => {
                    unavailable.push(row.id);
                    unavailable_error = msg;
                }
                Failure::Permanent(msg) if row.attempts >= self.tuning.max_attempts => {
                    match publisher.dead_letter(&row, &msg).await {
                        Ok(()) => {
                            self.bounded(outbox::mark_failed(conn, row.id, &msg)).await?;
                            tracing::error!(shard = %self.shard, outbox_id = row.id, attempts = row.attempts,
                                correlation_id = row.correlation_id.as_deref().unwrap_or(""), error = %msg,
                                "outbox row FAILED and dead-lettered");
                            metrics::counter!("orders_relay_failed_total", &labels).increment(1);
                            metrics::counter!("orders_relay_dead_lettered_total", &labels).increment(1);
                        }
                        Err(f) => {
                            unavailable.push(row.id);
                            unavailable_error = f.message().to_owned();
                        }
                    }
                }
                Failure::Permanent(msg) => {
                    let delay = self.tuning.retry_delay(row.attempts);
                    tracing::warn!(shard = %self.shard, outbox_id = row.id, attempts = row.attempts,
                        retry_in_ms = delay.as_millis() as u64, error = %msg, "outbox row failed; will retry");
                    let delay_ms = i64::try_from(delay.as_millis()).unwrap_or(i64::MAX);
                    self.bounded(outbox::schedule_retry(conn, row.id, &msg, delay_ms)).await?;
                }
            }
        }
        if !unavailable.is_empty() {
            self.shared.set_error(&self.shard, &unavailable_error);
            self.bounded(outbox::release(conn, &unavailable, &unavailable_error)).await?;
            return Ok(Some(unavailable_error));
        }
        Ok(None)
    }
}

async fn sleep_or_stop(d: Duration, stop: &CancellationToken) {
    tokio::select! {
        () = stop.cancelled() => {}
        () = tokio::time::sleep(d) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delay_doubles_and_caps() {
        let t = Tuning {
            batch_size: 1,
            poll_interval: Duration::ZERO,
            lease_retry: Duration::ZERO,
            max_attempts: 3,
            retry_base: Duration::from_millis(100),
            retry_max: Duration::from_secs(1),
            connect_timeout: Duration::ZERO,
            statement_timeout: Duration::ZERO,
        };
        let ms: Vec<u128> = (1..=6).map(|a| t.retry_delay(a).as_millis()).collect();
        assert_eq!(ms, [100, 200, 400, 800, 1000, 1000]);
        assert_eq!(t.retry_delay(0).as_millis(), 100);
        assert_eq!(t.retry_delay(i32::MAX), Duration::from_secs(1));
    }
}
