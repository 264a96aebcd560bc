//! The one Kafka consumer runtime of the project: every consumer (notifications, the projector)
//! supplies only how to validate a record and how to apply a batch of valid ones.
//!
//! **No consumer group.** Partitions are assigned by hand (`assign()` of every partition of
//! the topic) and each is positioned at a checkpoint kept in the consumer's own database, in
//! the transaction of the effects it covers (the catch-up subscription pattern). The broker's
//! group coordinator is never used, so nothing of it can stall a consumer: Tansu 0.6.0 keeps a
//! group in `Forming` under a departed leader, or a ghost member holding partitions, and a
//! consumer in that group never gets its partitions back. The same holds on Apache Kafka,
//! where assignment without a group is a first-class mode of the client.
//!
//! **One active process per consumer** (and topic): the lease is a session advisory lock in
//! the consumer's database, and every batch transaction runs on that same session. A process
//! whose session died (killed, cut off) has lost the lease and cannot commit another batch; a
//! standby takes the lease within `lease_retry`, reads the checkpoints and goes on from there.
//!
//! **The loop**, per batch of up to `batch_max_records` records already fetched:
//! validate each → copy the invalid ones to the DLQ topic and await the broker's
//! acknowledgement → one transaction: [`Handler::apply_batch`] (inbox claims and effects) plus
//! the new checkpoints → commit. Records of a partition are applied in offset order; a
//! checkpoint never moves before its effect, and a crash anywhere re-reads the batch from the
//! last checkpoint, whose effects the handler's inbox turns into no-ops.
//!
//! **Outages pause, never skip**: a failing database ends the lease (its session is gone);
//! the runtime reconnects with capped backoff, takes the lease again and re-reads from the
//! checkpoints, so the same records come again. A failing DLQ send is retried on the same
//! batch. Meanwhile `<service>_consumer_paused` is 1 and the readiness check names the cause.
//!
//! **Watchdog**: every `lag_interval` it measures lag from the broker's high watermarks and
//! the stored checkpoints (not from the client's own view, which is what goes wrong), and
//! when there is lag and the checkpoints have not moved for `stall_after`, reports the
//! consumer stalled (`<service>_consumer_stalled`, readiness) and, in the active process,
//! rebuilds the Kafka client and seeks again from the checkpoints.
//!
//! # Layout
//! - [`Config`], [`Settings`], [`Handler`] and the types it sees ([`Valid`], [`Rejection`], [`Applied`]).
//! - [`runtime`]: [`Consumer`]: lease, assignment, the batch loop, DLQ, shutdown.
//! - [`watchdog`]: lag, progress and stall detection; the rebuild trigger.
//! - [`status`]: what the runtime and the watchdog share, for readiness and metrics.
//! - [`checkpoint`]: the lease and checkpoint statements.

pub mod checkpoint;
pub mod runtime;
pub mod status;
pub mod watchdog;

use std::time::Duration;

use rdkafka::message::OwnedMessage;
use serde::{Deserialize, Serialize};
use sqlx::PgConnection;

pub use runtime::Consumer;
pub use status::{Role, Status};

/// What every consumer service's `[consumer]` settings table holds (the same keys in
/// notifications and the projector: `TICKET_HUB_<SERVICE>__CONSUMER__BATCH_MAX_RECORDS`), with
/// the rules they obey. The defaults are each service's `defaults/<service>.toml`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
    /// The topic consumed.
    pub topic: String,
    /// Where invalid records go, with a `dlq-reason` header.
    pub dlq_topic: String,
    /// Partitions of the two topics when this consumer is the first to create them; existing
    /// topics are left as they are.
    pub topic_partitions: i32,
    /// Most records applied in one transaction.
    pub batch_max_records: usize,
    /// First and largest pause between retries while the database or the DLQ is failing, in
    /// milliseconds; the pause doubles in between.
    #[serde(rename = "retry_initial_ms", with = "crate::settings::millis")]
    pub retry_initial: Duration,
    #[serde(rename = "retry_max_ms", with = "crate::settings::millis")]
    pub retry_max: Duration,
    /// How often a standby process tries to take the consumer lease, in milliseconds: how
    /// long consumption pauses after the active process dies.
    #[serde(rename = "lease_retry_ms", with = "crate::settings::millis")]
    pub lease_retry: Duration,
    /// Bound on each statement of the lease session and on connecting it, in milliseconds; a
    /// batch may take twice this. Past it the lease is given up and the batch read again.
    #[serde(rename = "statement_timeout_ms", with = "crate::settings::millis")]
    pub statement_timeout: Duration,
    /// How often lag (partition ends against the stored checkpoints) and progress are
    /// measured, in milliseconds.
    #[serde(rename = "lag_interval_ms", with = "crate::settings::millis")]
    pub lag_interval: Duration,
    /// Lag with no checkpoint moving for this long, in milliseconds, is a stall: readiness
    /// says so, `<service>_consumer_stalled` is 1, and the active process rebuilds its Kafka
    /// client and seeks its checkpoints again.
    #[serde(rename = "stall_after_ms", with = "crate::settings::millis")]
    pub stall_after: Duration,
}

impl Config {
    /// The rules every consumer's settings obey, checked once here for every consumer
    /// service. Errors name the keys as files spell them (`consumer.batch_max_records`).
    pub fn validate(&self) -> anyhow::Result<()> {
        use crate::settings::{at_least_ms, between_ms};
        anyhow::ensure!(self.topic_partitions > 0, "consumer.topic_partitions: must be at least 1");
        anyhow::ensure!(!self.topic.is_empty(), "consumer.topic: must not be empty");
        anyhow::ensure!(self.topic != self.dlq_topic, "consumer.dlq_topic: must differ from consumer.topic");
        anyhow::ensure!(
            (1..=10_000).contains(&self.batch_max_records),
            "consumer.batch_max_records: must be between 1 and 10000"
        );
        at_least_ms("consumer.retry_initial_ms", self.retry_initial, 1)?;
        anyhow::ensure!(
            self.retry_max >= self.retry_initial,
            "consumer.retry_max_ms: must be at least consumer.retry_initial_ms"
        );
        at_least_ms("consumer.lease_retry_ms", self.lease_retry, 1)?;
        between_ms("consumer.statement_timeout_ms", self.statement_timeout, 100, 600_000)?;
        at_least_ms("consumer.lag_interval_ms", self.lag_interval, 1)?;
        anyhow::ensure!(
            self.stall_after >= 2 * self.lag_interval,
            "consumer.stall_after_ms: must be at least twice consumer.lag_interval_ms (a stall needs two measurements)"
        );
        Ok(())
    }
}

/// How one consumer runs: its service's [`Config`] under a name.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The service name: prefix of the metrics (`notifications_consumer_lag`), `client.id`,
    /// and the `dlq-source` header of dead-lettered copies.
    pub service: &'static str,
    /// The consumer's versioned name, key of its checkpoints and of its lease.
    pub name: String,
    pub config: Config,
}

/// A record that passed validation, with where it was read.
#[derive(Debug, Clone)]
pub struct Valid<T> {
    pub partition: i32,
    pub offset: i64,
    pub value: T,
}

/// Why a record can never be applied: it goes to the DLQ with `dlq-reason: <reason>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// A stable code, the `reason` label of `<service>_dead_lettered_total`.
    pub code: &'static str,
    /// `<code>: <what is wrong>`, bounded in length.
    pub reason: String,
}

/// What applying a batch did, counted by the runtime; `detail` goes back to
/// [`Handler::committed`] once the transaction is committed.
#[derive(Debug)]
pub struct Applied<D> {
    /// Records whose effect was stored now.
    pub applied: u64,
    /// Records seen before (their inbox row exists): no effect.
    pub duplicates: u64,
    pub detail: D,
}

/// What one consumer adds to the runtime.
pub trait Handler: Send + Sync + 'static {
    /// A record turned into domain types.
    type Valid: Send + Sync + 'static;
    /// What [`Handler::committed`] needs to report the effects (log lines, metrics).
    type Detail: Send + 'static;

    /// Parses one record; the same bytes must always give the same answer.
    fn validate(&self, record: &OwnedMessage) -> Result<Self::Valid, Rejection>;

    /// Applies `batch` (in offset order within each partition) inside the runtime's
    /// transaction, which then stores the checkpoints and commits. Every record must have
    /// exactly one effect however often it comes (an inbox), since a batch whose commit was
    /// lost comes again.
    fn apply_batch(
        &self,
        tx: &mut PgConnection,
        batch: &[Valid<Self::Valid>],
    ) -> impl Future<Output = Result<Applied<Self::Detail>, sqlx::Error>> + Send;

    /// Called after the batch's commit: where effects are reported (never before, so a line
    /// is never logged for an effect that was rolled back).
    fn committed(&self, detail: Self::Detail);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn valid() -> Config {
        Config {
            kafka_bootstrap: "127.0.0.1:9092".into(),
            topic: "orders.events".into(),
            dlq_topic: "orders.events.dlq".into(),
            topic_partitions: 6,
            batch_max_records: 500,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_millis(5000),
            lease_retry: Duration::from_millis(1000),
            statement_timeout: Duration::from_millis(10_000),
            lag_interval: Duration::from_millis(5000),
            stall_after: Duration::from_millis(15_000),
        }
    }

    #[test]
    fn the_rules_of_every_consumer_name_their_keys() {
        valid().validate().unwrap();
        type Tweak = fn(&mut Config);
        let cases: [(Tweak, &str); 8] = [
            (|c| c.dlq_topic = c.topic.clone(), "consumer.dlq_topic"),
            (|c| c.topic_partitions = 0, "consumer.topic_partitions"),
            (|c| c.batch_max_records = 0, "consumer.batch_max_records"),
            (|c| c.retry_max = Duration::from_millis(10), "consumer.retry_max_ms"),
            (|c| c.lease_retry = Duration::ZERO, "consumer.lease_retry_ms"),
            (|c| c.statement_timeout = Duration::from_millis(5), "consumer.statement_timeout_ms"),
            (|c| c.lag_interval = Duration::ZERO, "consumer.lag_interval_ms"),
            (|c| c.stall_after = c.lag_interval, "consumer.stall_after_ms"),
        ];
        for (tweak, key) in cases {
            let mut bad = valid();
            tweak(&mut bad);
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.starts_with(key), "{key}: {err}");
        }
    }
}
