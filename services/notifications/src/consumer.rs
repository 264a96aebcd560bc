//! The consumer of `orders.events`: one message at a time, effect first, offset after.
//!
//! For each record the [`Worker`] either applies it (inbox claim plus notification, one
//! transaction, see [`crate::store`]) or, when it is invalid, copies it to the DLQ topic with a
//! `dlq-reason` header. Only once that is done is the record's offset stored and committed.
//! So:
//! - a crash between the database commit and the offset commit redelivers the record, and the
//!   inbox turns the redelivery into a no-op;
//! - a database (or DLQ) outage pauses consumption on the record at hand: it is retried with
//!   capped exponential backoff, nothing after it is read and no offset moves, until the
//!   outage ends or the service is stopped (then the record is redelivered at the next start);
//! - before partitions are revoked in a rebalance, the offsets of what is done are committed
//!   synchronously ([`GroupContext`]), so the next owner starts right after them.

use std::fmt::Display;
use std::sync::Arc;
use std::time::Duration;

use platform::correlation::CorrelationId;
use platform::events::headers;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::Settings;
use crate::event::{self, Envelope, Invalid, KnownRegions, RecordHeaders};
use crate::store::{self, Origin, Outcome};

/// The consumer's librdkafka context: commits on revoke, and logs what the group does.
pub struct GroupContext;

impl ClientContext for GroupContext {}

impl ConsumerContext for GroupContext {
    fn pre_rebalance(&self, consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Revoke(tpl) => {
                // Each applied record's offset is stored before the next record is read, and
                // committed asynchronously; make sure those commits land before another member
                // owns the partitions, or it would redeliver (harmlessly, but needlessly).
                match consumer.commit_consumer_state(CommitMode::Sync) {
                    Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
                    Err(e) => tracing::warn!(error = %e, "commit before revoke failed; the next owner redelivers"),
                }
                tracing::info!(partitions = %describe(tpl), "partitions revoked");
            }
            Rebalance::Assign(tpl) => tracing::info!(partitions = %describe(tpl), "partitions assigned"),
            Rebalance::Error(e) => tracing::warn!(error = %e, "rebalance error"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = %describe(offsets), "offsets committed"),
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(e) => tracing::warn!(error = %e, offsets = %describe(offsets), "offset commit failed"),
        }
    }
}

/// `topic[partition]@offset, …` for logs.
fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| match e.offset() {
            Offset::Offset(o) => format!("{}[{}]@{o}", e.topic(), e.partition()),
            _ => format!("{}[{}]", e.topic(), e.partition()),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

type GroupConsumer = StreamConsumer<GroupContext>;

/// The consume loop and what it needs.
pub struct Worker {
    /// Shared with the lag reporter, which reads positions and watermarks.
    consumer: Arc<GroupConsumer>,
    /// Idempotent producer for the DLQ topic; each send is awaited before the offset moves.
    dlq: FutureProducer,
    /// The `notifications` database: inbox and notifications.
    pool: PgPool,
    /// The regions an event may name.
    regions: KnownRegions,
    /// Topics, group, retry pacing and the test hook.
    settings: Settings,
}

impl Worker {
    /// Creates the clients; connects nothing yet (the broker may come up later).
    pub fn new(settings: &Settings, pool: PgPool, regions: KnownRegions) -> anyhow::Result<Self> {
        // read_uncommitted comes with consumer_config: the lag reporter's watermark queries
        // would otherwise hit Tansu's broken read_committed query.
        let consumer: GroupConsumer = platform::kafka::consumer_config(&settings.kafka_bootstrap, &settings.group_id)
            .set("client.id", crate::SERVICE)
            // Offsets are stored by hand once a record is done, never on delivery to the app.
            .set("enable.auto.offset.store", "false")
            .set("session.timeout.ms", settings.session_timeout_ms.to_string())
            .create_with_context(GroupContext)?;
        let dlq: FutureProducer = platform::kafka::client_config(&settings.kafka_bootstrap)
            .set("client.id", format!("{}-dlq", crate::SERVICE))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // A send that cannot be acknowledged in this time fails and is retried by the loop.
            .set("message.timeout.ms", "10000")
            .create()?;
        Ok(Self { consumer: Arc::new(consumer), dlq, pool, regions, settings: settings.clone() })
    }

    /// Consumes until `stop` is cancelled, then commits what is done and leaves the group.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let s = &self.settings;
        let topics = [(s.topic.as_str(), s.topic_partitions), (s.dlq_topic.as_str(), s.topic_partitions)];
        let ensured =
            self.retry("creating topics", &stop, || platform::kafka::ensure_topics(&s.kafka_bootstrap, &topics)).await;
        if ensured.is_none() {
            return Ok(());
        }
        self.consumer.subscribe(&[&s.topic])?;
        tracing::info!(topic = %s.topic, group = %s.group_id, "consuming");
        let lag_stop = stop.child_token();
        let lag = tokio::spawn(report_lag(
            self.consumer.clone(),
            s.topic.clone(),
            Duration::from_millis(s.lag_interval_ms),
            lag_stop.clone(),
        ));

        loop {
            let received = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                m = self.consumer.recv() => m,
            };
            let msg = match received {
                Ok(m) => m,
                Err(e) => {
                    // Broker trouble surfaces here; librdkafka reconnects by itself.
                    tracing::warn!(error = %e, "consumer error");
                    tokio::select! {
                        () = stop.cancelled() => break,
                        () = tokio::time::sleep(Duration::from_millis(500)) => continue,
                    }
                }
            };
            let owned = msg.detach();
            if !self.handle(&owned, &stop).await {
                break; // stopped mid-record: not done, so not committed; redelivered next start
            }
            if let Err(e) = self.consumer.store_offset_from_message(&msg) {
                // The partition was revoked meanwhile: its next owner redelivers the record.
                tracing::warn!(error = %e, "storing the offset failed");
            } else if let Err(e) = self.consumer.commit_consumer_state(CommitMode::Async) {
                tracing::warn!(error = %e, "offset commit failed");
            }
        }

        // Waited for, not aborted: it holds the consumer, which must be closed by the time
        // `run` returns (librdkafka 2.12 crashes on the metadata of a topic deleted under a
        // consumer that is still open, as tests do when they clean up their topics).
        lag_stop.cancel();
        if let Err(e) = lag.await {
            tracing::warn!(error = %e, "lag reporter failed");
        }
        // What is done is committed before the group is left (a sync commit blocks, so off the
        // async threads).
        // Bounded: with the broker gone a sync commit can wait for a coordinator for long, and
        // an uncommitted record is only redelivered, which the inbox absorbs.
        let consumer = self.consumer.clone();
        let commit = tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync));
        match tokio::time::timeout(Duration::from_secs(10), commit).await {
            Ok(Ok(Ok(()) | Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)))) => {}
            Ok(Ok(Err(e))) => tracing::warn!(error = %e, "final offset commit failed"),
            Ok(Err(e)) => tracing::warn!(error = %e, "final offset commit panicked"),
            Err(_) => tracing::warn!("final offset commit did not finish within 10 s"),
        }
        self.consumer.unsubscribe();
        // The last reference: closing leaves the group now, so the partitions go to another
        // member at once instead of after the session timeout.
        drop(self);
        tracing::info!("consumer stopped");
        Ok(())
    }

    /// Applies or dead-letters one record. `false` when stopped before it was done.
    async fn handle(&self, msg: &OwnedMessage, stop: &CancellationToken) -> bool {
        let mut h = RecordHeaders::default();
        let mut correlation = None;
        if let Some(hs) = msg.headers() {
            for header in hs.iter() {
                match header.key {
                    headers::TYPE => h.event_type = header.value,
                    headers::OUTBOX_ID => h.outbox_id = header.value,
                    headers::SHARD => h.source = header.value,
                    headers::CORRELATION_ID => {
                        correlation =
                            header.value.and_then(|v| std::str::from_utf8(v).ok()).and_then(CorrelationId::parse);
                    }
                    _ => {}
                }
            }
        }
        let correlation = correlation.unwrap_or_else(CorrelationId::generate);
        let span = tracing::info_span!(
            "message",
            correlation_id = %correlation,
            topic = msg.topic(),
            partition = msg.partition(),
            offset = msg.offset(),
        );
        let work = async {
            match event::parse(h, msg.payload(), &self.regions) {
                Ok(env) => self.apply(&env, msg, &correlation, stop).await,
                Err(invalid) => self.dead_letter(msg, &invalid, stop).await,
            }
        };
        correlation.clone().scope(work.instrument(span)).await
    }

    async fn apply(
        &self,
        env: &Envelope,
        msg: &OwnedMessage,
        correlation: &CorrelationId,
        stop: &CancellationToken,
    ) -> bool {
        let origin = Origin {
            topic: msg.topic(),
            partition: msg.partition(),
            offset: msg.offset(),
            correlation_id: correlation.as_str(),
        };
        let Some(outcome) =
            self.retry("storing the notification", stop, || store::apply(&self.pool, env, &origin)).await
        else {
            return false;
        };
        let topic = self.settings.topic.clone();
        match outcome {
            Outcome::Sent { notification_id, recipient } => {
                metrics::counter!("notifications_consumed_total", "topic" => topic, "outcome" => "sent").increment(1);
                metrics::counter!("notifications_sent_total", "event" => env.event.name(), "channel" => "log")
                    .increment(1);
                // The `log` channel: this line is the delivery.
                tracing::info!(
                    channel = "log",
                    notification_id,
                    recipient = recipient.map_or_else(|| "unknown".to_owned(), |r| r.to_string()),
                    order_id = %env.event.order_id(),
                    event = env.event.name(),
                    outbox_id = env.outbox_id.as_str(),
                    text = store::render(&env.event),
                    "notification sent"
                );
            }
            Outcome::Duplicate => {
                metrics::counter!("notifications_consumed_total", "topic" => topic.clone(), "outcome" => "duplicate")
                    .increment(1);
                metrics::counter!("notifications_duplicates_total", "topic" => topic).increment(1);
                tracing::info!(
                    outbox_id = env.outbox_id.as_str(),
                    source = env.source.as_str(),
                    "already applied (redelivery): no second notification"
                );
            }
        }
        if self.settings.crash_after_store {
            // Test hook: die the worst possible way at the worst possible moment, the effect
            // committed and the offset not.
            tracing::error!("crash_after_store is set: aborting between the database commit and the offset commit");
            std::process::abort();
        }
        true
    }

    /// Copies `msg` to the DLQ topic (key, payload, headers and timestamp kept; `dlq-reason` and
    /// where it came from added) and waits for the broker's acknowledgement.
    async fn dead_letter(&self, msg: &OwnedMessage, invalid: &Invalid, stop: &CancellationToken) -> bool {
        let reason = invalid.reason();
        tracing::warn!(reason, "invalid message: dead-lettering it");
        let mut hs = OwnedHeaders::new();
        if let Some(original) = msg.headers() {
            for h in original.iter() {
                hs = hs.insert(Header { key: h.key, value: h.value });
            }
        }
        let (partition, offset) = (msg.partition().to_string(), msg.offset().to_string());
        let hs = hs
            .insert(Header { key: headers::DLQ_REASON, value: Some(reason.as_str()) })
            .insert(Header { key: "dlq-source", value: Some(crate::SERVICE) })
            .insert(Header { key: "dlq-topic", value: Some(msg.topic()) })
            .insert(Header { key: "dlq-partition", value: Some(partition.as_str()) })
            .insert(Header { key: "dlq-offset", value: Some(offset.as_str()) });
        let sent = self
            .retry("dead-lettering", stop, || async {
                let mut record: FutureRecord<'_, [u8], [u8]> =
                    FutureRecord::to(&self.settings.dlq_topic).headers(hs.clone());
                if let Some(key) = msg.key() {
                    record = record.key(key);
                }
                if let Some(payload) = msg.payload() {
                    record = record.payload(payload);
                }
                if let Some(ms) = msg.timestamp().to_millis() {
                    record = record.timestamp(ms);
                }
                self.dlq.send(record, Duration::from_secs(5)).await.map_err(|(e, _)| e)
            })
            .await;
        if sent.is_none() {
            return false;
        }
        let topic = self.settings.topic.clone();
        metrics::counter!("notifications_consumed_total", "topic" => topic.clone(), "outcome" => "dead_lettered")
            .increment(1);
        metrics::counter!("notifications_dead_lettered_total", "topic" => topic, "reason" => invalid.code())
            .increment(1);
        true
    }

    /// Runs `attempt` until it succeeds, sleeping between failures (capped exponential
    /// backoff). `None` when `stop` was cancelled first. There is no attempt limit on purpose:
    /// giving up would mean skipping the record or committing past it.
    async fn retry<T, E, F, Fut>(&self, what: &'static str, stop: &CancellationToken, mut attempt: F) -> Option<T>
    where
        E: Display,
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, E>>,
    {
        let max = Duration::from_millis(self.settings.retry_max_ms);
        let mut delay = Duration::from_millis(self.settings.retry_initial_ms).min(max);
        let mut failures = 0_u32;
        let paused = metrics::gauge!("notifications_consumer_paused", "topic" => self.settings.topic.clone());
        loop {
            match attempt().await {
                Ok(v) => {
                    if failures > 0 {
                        paused.set(0.0);
                        tracing::info!(what, failures, "recovered: consumption resumes");
                    }
                    return Some(v);
                }
                Err(e) => {
                    failures += 1;
                    paused.set(1.0);
                    metrics::counter!("notifications_retries_total", "topic" => self.settings.topic.clone(), "operation" => what)
                        .increment(1);
                    tracing::warn!(
                        error = %e,
                        what,
                        failures,
                        retry_in_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
                        "failed: consumption paused on this record, retrying it"
                    );
                    tokio::select! {
                        () = stop.cancelled() => return None,
                        () = tokio::time::sleep(delay) => {}
                    }
                    delay = (delay * 2).min(max);
                }
            }
        }
    }
}

/// Publishes `notifications_consumer_lag{topic,partition}` (records between the consumer's
/// position and the partition's end) every `every`, until `stop`.
async fn report_lag(consumer: Arc<GroupConsumer>, topic: String, every: Duration, stop: CancellationToken) {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        let c = consumer.clone();
        // Watermarks and committed offsets are broker round trips on blocking calls.
        match tokio::task::spawn_blocking(move || lag_by_partition(&c)).await {
            Ok(Ok(lags)) => {
                for (partition, lag) in lags {
                    #[allow(clippy::cast_precision_loss, reason = "a gauge; lags far below 2^52")]
                    metrics::gauge!("notifications_consumer_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                        .set(lag as f64);
                }
            }
            Ok(Err(e)) => tracing::debug!(error = %e, "lag not measured"),
            Err(e) => tracing::debug!(error = %e, "lag task failed"),
        }
    }
}

/// `(partition, lag)` for each assigned partition. Where nothing was read yet since the
/// assignment, the group's committed offset stands for the position.
fn lag_by_partition(c: &GroupConsumer) -> KafkaResult<Vec<(i32, i64)>> {
    let timeout = Duration::from_secs(2);
    let positions = c.position()?;
    let mut committed = None;
    let mut out = Vec::new();
    for e in positions.elements() {
        let (low, high) = c.fetch_watermarks(e.topic(), e.partition(), timeout)?;
        let next = match e.offset() {
            Offset::Offset(o) => o,
            _ => {
                if committed.is_none() {
                    committed = Some(c.committed(timeout)?);
                }
                committed
                    .as_ref()
                    .and_then(|tpl| tpl.find_partition(e.topic(), e.partition()))
                    .and_then(|p| match p.offset() {
                        Offset::Offset(o) => Some(o),
                        _ => None,
                    })
                    .unwrap_or(low)
            }
        };
        out.push((e.partition(), (high - next).max(0)));
    }
    Ok(out)
}
