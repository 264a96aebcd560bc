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
//! - [`Settings`], [`Handler`] and the types it sees ([`Valid`], [`Rejection`], [`Applied`]).
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
use sqlx::PgConnection;

pub use runtime::Consumer;
pub use status::{Role, Status};

/// How a consumer runs; each service maps its own settings (and their validation) onto this.
#[derive(Debug, Clone)]
pub struct Settings {
    /// The service name: prefix of the metrics (`notifications_consumer_lag`), `client.id`,
    /// and the `dlq-source` header of dead-lettered copies.
    pub service: &'static str,
    /// The consumer's versioned name, key of its checkpoints and of its lease.
    pub name: String,
    pub bootstrap: String,
    pub topic: String,
    pub dlq_topic: String,
    /// Partitions of the topics when this consumer is the first to create them.
    pub topic_partitions: i32,
    /// Most records applied in one transaction.
    pub batch_max_records: usize,
    /// First and largest pause between retries during an outage (doubling in between).
    pub retry_initial: Duration,
    pub retry_max: Duration,
    /// How often a standby tries the lease.
    pub lease_retry: Duration,
    /// Bound on each statement of the lease session and on connecting it; a batch that takes
    /// longer ends the lease (and is read again).
    pub statement_timeout: Duration,
    /// How often lag and progress are measured.
    pub lag_interval: Duration,
    /// Lag with no progress for this long is a stall: reported, and the client rebuilt.
    pub stall_after: Duration,
}

impl Settings {
    /// The rules every consumer's settings obey. Errors name the keys the services expose
    /// these under (`batch_max_records`, `retry_initial_ms`, …), the same in every consumer
    /// service, so each checks them once through here rather than with a copy of its own.
    pub fn validate(&self) -> anyhow::Result<()> {
        use crate::settings::{at_least_ms, between_ms};
        anyhow::ensure!(self.topic_partitions > 0, "topic_partitions: must be at least 1");
        anyhow::ensure!(!self.topic.is_empty(), "topic: must not be empty");
        anyhow::ensure!(self.topic != self.dlq_topic, "dlq_topic: must differ from topic");
        anyhow::ensure!(
            (1..=10_000).contains(&self.batch_max_records),
            "batch_max_records: must be between 1 and 10000"
        );
        at_least_ms("retry_initial_ms", self.retry_initial, 1)?;
        anyhow::ensure!(self.retry_max >= self.retry_initial, "retry_max_ms: must be at least retry_initial_ms");
        at_least_ms("lease_retry_ms", self.lease_retry, 1)?;
        between_ms("statement_timeout_ms", self.statement_timeout, 100, 600_000)?;
        at_least_ms("lag_interval_ms", self.lag_interval, 1)?;
        anyhow::ensure!(
            self.stall_after >= 2 * self.lag_interval,
            "stall_after_ms: must be at least twice lag_interval_ms (a stall needs two measurements)"
        );
        Ok(())
    }
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
