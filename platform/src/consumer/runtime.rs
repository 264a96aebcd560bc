//! The consumer: lease, assignment at the checkpoints, the batch loop, DLQ, shutdown.

use std::fmt::Display;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt as _;
use rdkafka::consumer::{Consumer as _, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, Headers, OwnedHeaders, OwnedMessage};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgConnection, PgPool};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::checkpoint::{self, Positions};
use super::{Applied, Handler, Rejection, Role, Settings, Status, Valid, watchdog};
use crate::ops::Check;

/// How long the loop waits for a first record before it looks at stop, rebuild requests and
/// the lease session again.
const IDLE_POLL: Duration = Duration::from_millis(250);

/// Metric names, `<service>_…`, made once.
#[derive(Debug)]
pub struct Names {
    pub consumed: String,
    pub duplicates: String,
    pub dead_lettered: String,
    pub retries: String,
    pub paused: String,
    pub lag: String,
    pub stalled: String,
    pub active: String,
    pub rebuilds: String,
    pub batch: String,
    pub batch_seconds: String,
}

impl Names {
    fn new(service: &str) -> Self {
        Self {
            consumed: format!("{service}_consumed_total"),
            duplicates: format!("{service}_duplicates_total"),
            dead_lettered: format!("{service}_dead_lettered_total"),
            retries: format!("{service}_retries_total"),
            paused: format!("{service}_consumer_paused"),
            lag: format!("{service}_consumer_lag"),
            stalled: format!("{service}_consumer_stalled"),
            active: format!("{service}_consumer_active"),
            rebuilds: format!("{service}_consumer_rebuilds_total"),
            batch: format!("{service}_consumer_batch_size"),
            batch_seconds: format!("{service}_consumer_batch_seconds"),
        }
    }
}

/// Why this process stopped consuming as the lease holder; it campaigns again after a pause.
#[derive(Debug, thiserror::Error)]
enum Stepped {
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    #[error("database: no answer within {0:?}")]
    Timeout(Duration),
    #[error("broker: {0}")]
    Kafka(#[from] KafkaError),
}

/// Capped exponential backoff.
struct Backoff {
    initial: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    fn new(s: &Settings) -> Self {
        Self {
            initial: s.config.retry_initial,
            max: s.config.retry_max,
            next: s.config.retry_initial.min(s.config.retry_max),
        }
    }

    fn step(&mut self) -> Duration {
        let d = self.next;
        self.next = (self.next * 2).min(self.max);
        d
    }

    fn reset(&mut self) {
        self.next = self.initial.min(self.max);
    }
}

/// Sleeps `d`; `false` when `stop` came first.
async fn sleep_or_stop(d: Duration, stop: &CancellationToken) -> bool {
    tokio::select! {
        () = stop.cancelled() => false,
        () = tokio::time::sleep(d) => true,
    }
}

/// A consumer of one topic with handler `H`.
pub struct Consumer<H: Handler> {
    settings: Settings,
    /// The consumer's database: the lease session is opened with its options, the watchdog
    /// reads checkpoints through it.
    pool: PgPool,
    handler: Arc<H>,
    /// Shared with the watchdog and the readiness check.
    status: Arc<Status>,
    /// Idempotent producer for DLQ copies; each send is awaited before the checkpoint moves.
    dlq: FutureProducer,
    names: Arc<Names>,
}

impl<H: Handler> Consumer<H> {
    /// Creates the DLQ producer; connects to nothing yet.
    pub fn new(settings: Settings, pool: PgPool, handler: H) -> anyhow::Result<Self> {
        let dlq: FutureProducer = crate::kafka::client_config(&settings.config.kafka_bootstrap)
            .set("client.id", format!("{}-dlq", settings.service))
            .set("enable.idempotence", "true")
            .set("acks", "all")
            // A send that cannot be acknowledged in this time fails and is retried by the loop.
            .set("message.timeout.ms", "10000")
            .create()?;
        Ok(Self {
            status: Arc::new(Status::new(settings.config.stall_after)),
            names: Arc::new(Names::new(settings.service)),
            settings,
            pool,
            handler: Arc::new(handler),
            dlq,
        })
    }

    /// The readiness check `name`: down while the consumer is paused by an outage, stalled,
    /// or positioned past the log's end.
    pub fn check(&self, name: impl Into<String>) -> Check {
        let status = self.status.clone();
        Check::new(name, move || {
            let status = status.clone();
            async move { status.check() }
        })
    }

    pub fn status(&self) -> Arc<Status> {
        self.status.clone()
    }

    /// Every metric of the runtime carries the topic and the consumer's name, so two consumers
    /// of one service (the projector's live and rebuilding generations) stay apart.
    fn labels(&self) -> [(&'static str, String); 2] {
        [("topic", self.settings.config.topic.clone()), ("consumer", self.settings.name.clone())]
    }

    /// Consumes until `stop`: campaigns for the lease, consumes while holding it, stands by
    /// otherwise. Returns once the lease is released and every client is closed.
    pub async fn run(self, stop: CancellationToken) -> anyhow::Result<()> {
        let s = &self.settings;
        let topics = [
            (s.config.topic.as_str(), s.config.topic_partitions),
            (s.config.dlq_topic.as_str(), s.config.topic_partitions),
        ];
        let mut backoff = Backoff::new(s);
        loop {
            match crate::kafka::ensure_topics(&s.config.kafka_bootstrap, &topics).await {
                Ok(()) => break,
                Err(e) => {
                    self.retried("broker", &e, backoff.next);
                    if !sleep_or_stop(backoff.step(), &stop).await {
                        return Ok(());
                    }
                }
            }
        }
        let watch_stop = stop.child_token();
        let watchdog = tokio::spawn(watchdog::run(
            s.clone(),
            self.pool.clone(),
            self.status.clone(),
            self.names.clone(),
            watch_stop.clone(),
        ));
        tracing::info!(topic = %s.config.topic, consumer = %s.name, "consumer started: campaigning for the lease");
        backoff.reset();
        while !stop.is_cancelled() {
            let conn = match self.campaign(&stop).await {
                Ok(Some(conn)) => conn,
                Ok(None) => break,
                Err(e) => {
                    self.pause(Some(format!("database: {e}")));
                    self.retried("database", &e, backoff.next);
                    sleep_or_stop(backoff.step(), &stop).await;
                    continue;
                }
            };
            tracing::info!(topic = %s.config.topic, consumer = %s.name, "won the consumer lease: consuming");
            let led_since = Instant::now();
            self.status.set_role(Role::Active);
            metrics::gauge!(self.names.active.clone(), &self.labels()).set(1.0);
            let led = self.lead(conn, &stop).await;
            metrics::gauge!(self.names.active.clone(), &self.labels()).set(0.0);
            self.status.set_role(Role::Standby);
            if led_since.elapsed() > s.config.retry_max {
                // It worked for a while: this failure starts a new series of retries.
                backoff.reset();
            }
            if let Err(e) = led {
                // The session (hence the lease) is presumed gone: read again from the
                // checkpoints once it is back, whoever moved them meanwhile.
                self.pause(Some(e.to_string()));
                let op = if matches!(e, Stepped::Kafka(_)) { "broker" } else { "database" };
                self.retried(op, &e, backoff.next);
                sleep_or_stop(backoff.step(), &stop).await;
            }
        }
        self.status.set_role(Role::Stopped);
        watch_stop.cancel();
        if let Err(e) = watchdog.await {
            tracing::warn!(error = %e, "watchdog failed");
        }
        tracing::info!("consumer stopped");
        Ok(())
    }

    fn pause(&self, why: Option<String>) {
        metrics::gauge!(self.names.paused.clone(), &self.labels()).set(if why.is_some() { 1.0 } else { 0.0 });
        self.status.set_paused(why);
    }

    fn retried(&self, operation: &'static str, error: &dyn Display, next: Duration) {
        metrics::counter!(
            self.names.retries.clone(),
            "topic" => self.settings.config.topic.clone(),
            "consumer" => self.settings.name.clone(),
            "operation" => operation
        )
        .increment(1);
        tracing::warn!(
            error = %error,
            operation,
            retry_in_ms = u64::try_from(next.as_millis()).unwrap_or(u64::MAX),
            "consumer paused: nothing is skipped, retrying"
        );
    }

    /// The lease session: the pool's connection options, this process named in
    /// `application_name` (so `pg_locks` shows who holds it), every statement bounded.
    async fn connect(&self) -> Result<PgConnection, Stepped> {
        let opts: PgConnectOptions = (*self.pool.connect_options())
            .clone()
            .application_name(&format!("{} consumer pid {}", self.settings.service, std::process::id()))
            .options([
                ("statement_timeout", ms(self.settings.config.statement_timeout)),
                ("idle_in_transaction_session_timeout", ms(self.settings.config.statement_timeout)),
                ("idle_session_timeout", ms(self.idle_limit())),
            ])
            .log_statements(tracing::log::LevelFilter::Trace);
        match tokio::time::timeout(self.settings.config.statement_timeout, opts.connect()).await {
            Ok(conn) => Ok(conn?),
            Err(_) => Err(Stepped::Timeout(self.settings.config.statement_timeout)),
        }
    }

    /// How long the lease session may sit idle before the server ends it. The active loop
    /// touches it at least every `lag_interval` (`select 1` when there is nothing to do), so
    /// only a process that is frozen (SIGSTOP, a hung host) or stuck retrying something else
    /// goes past this: its lease is then freed for a standby, and it campaigns again when it
    /// comes back. Without this, a frozen process would hold the lease forever, since its
    /// kernel still answers the socket.
    fn idle_limit(&self) -> Duration {
        (self.settings.config.lag_interval * 3).max(self.settings.config.statement_timeout).max(Duration::from_secs(1))
    }

    /// The session holding the lease, or `None` when stopped first.
    async fn campaign(&self, stop: &CancellationToken) -> Result<Option<PgConnection>, Stepped> {
        let mut conn = self.connect().await?;
        let s = &self.settings;
        let mut announced = false;
        loop {
            if stop.is_cancelled() {
                let _ = conn.close().await;
                return Ok(None);
            }
            let won = self.bounded(checkpoint::try_lease(&mut conn, &s.name, &s.config.topic)).await?;
            // The database answers: whatever paused us is over.
            self.pause(None);
            if won {
                return Ok(Some(conn));
            }
            if !announced {
                tracing::info!(topic = %s.config.topic, consumer = %s.name, "another process holds the consumer lease: standing by");
                announced = true;
            }
            self.status.set_role(Role::Standby);
            if !sleep_or_stop(s.config.lease_retry, stop).await {
                let _ = conn.close().await;
                return Ok(None);
            }
        }
    }

    /// A database step bounded by the statement timeout (also when the server does not answer
    /// at all, which its own `statement_timeout` cannot catch).
    async fn bounded<T>(&self, fut: impl Future<Output = Result<T, sqlx::Error>>) -> Result<T, Stepped> {
        let limit = self.settings.config.statement_timeout;
        match tokio::time::timeout(limit, fut).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(Stepped::Timeout(limit)),
        }
    }

    /// The partition count of the topic (retried while the broker does not answer).
    async fn partition_count(&self, stop: &CancellationToken) -> Option<usize> {
        let mut backoff = Backoff::new(&self.settings);
        loop {
            match crate::kafka::partition_count(&self.settings.config.kafka_bootstrap, &self.settings.config.topic)
                .await
            {
                Ok(Some(n)) if n > 0 => return Some(n),
                Ok(_) => self.retried("broker", &"the topic does not exist", backoff.next),
                Err(e) => self.retried("broker", &e, backoff.next),
            }
            if !sleep_or_stop(backoff.step(), stop).await {
                return None;
            }
        }
    }

    /// A fresh client assigned every partition at its checkpoint (the log's start where none
    /// is stored yet).
    fn client(&self, positions: &Positions, partitions: usize) -> Result<StreamConsumer, KafkaError> {
        let client: StreamConsumer =
            crate::kafka::assigned_consumer_config(&self.settings.config.kafka_bootstrap, &self.settings.name)
                .set("client.id", self.settings.service)
                .create()?;
        let mut tpl = TopicPartitionList::new();
        for p in 0..i32::try_from(partitions).unwrap_or(i32::MAX) {
            let at = positions.get(&p).map_or(Offset::Beginning, |o| Offset::Offset(*o));
            tpl.add_partition_offset(&self.settings.config.topic, p, at)?;
        }
        client.assign(&tpl)?;
        self.status.fetched();
        Ok(client)
    }

    /// Consumes while holding the lease on `conn`; `Ok` only when stopped (lease released).
    async fn lead(&self, mut conn: PgConnection, stop: &CancellationToken) -> Result<(), Stepped> {
        let s = &self.settings;
        let mut positions = self.bounded(checkpoint::load(&mut conn, &s.name, &s.config.topic)).await?;
        let Some(mut partitions) = self.partition_count(stop).await else {
            return self.release(conn, None).await;
        };
        let mut client = self.client(&positions, partitions)?;
        tracing::info!(partitions, checkpoints = ?positions, "assigned every partition at its checkpoint");
        let mut last_session_check = Instant::now();
        loop {
            if stop.is_cancelled() {
                return self.release(conn, Some(client)).await;
            }
            let watched = self.status.partitions();
            let grew = watched.is_some_and(|n| n != partitions);
            if self.status.take_rebuild() || grew {
                // The truth is in the database, not in the old client's positions.
                positions = self.bounded(checkpoint::load(&mut conn, &s.name, &s.config.topic)).await?;
                partitions = watched.unwrap_or(partitions);
                close(client).await;
                client = self.client(&positions, partitions)?;
                metrics::counter!(self.names.rebuilds.clone(), &self.labels()).increment(1);
                tracing::warn!(partitions, checkpoints = ?positions, "rebuilt the Kafka client and sought the checkpoints again");
            }
            let Some(batch) = next_batch(&client, s.config.batch_max_records, stop).await else {
                return self.release(conn, Some(client)).await;
            };
            if !batch.is_empty() {
                self.status.fetched();
            }
            if batch.is_empty() {
                if last_session_check.elapsed() >= s.config.lag_interval {
                    // Idle: make sure the lease session is still there, so a lost lease is
                    // noticed (and said) now rather than at the next record.
                    self.bounded(sqlx::query("select 1").execute(&mut conn)).await?;
                    last_session_check = Instant::now();
                }
                continue;
            }
            if !self.process(&mut conn, &mut positions, batch, stop).await? {
                return self.release(conn, Some(client)).await;
            }
            last_session_check = Instant::now();
        }
    }

    /// Gives the lease back and closes the clients (shutdown).
    async fn release(&self, mut conn: PgConnection, client: Option<StreamConsumer>) -> Result<(), Stepped> {
        let s = &self.settings;
        let _ = tokio::time::timeout(
            Duration::from_secs(2),
            checkpoint::release_lease(&mut conn, &s.name, &s.config.topic),
        )
        .await;
        let _ = tokio::time::timeout(Duration::from_secs(2), conn.close()).await;
        if let Some(c) = client {
            close(c).await;
        }
        Ok(())
    }

    /// Validates, dead-letters and applies one batch, then moves the checkpoints in the same
    /// transaction. `false` when stopped before it was done (nothing committed: read again at
    /// the next start).
    async fn process(
        &self,
        conn: &mut PgConnection,
        positions: &mut Positions,
        batch: Vec<OwnedMessage>,
        stop: &CancellationToken,
    ) -> Result<bool, Stepped> {
        // Anything below a checkpoint was applied already (a reset to the log's start, say).
        let batch: Vec<OwnedMessage> = batch
            .into_iter()
            .filter(|m| positions.get(&m.partition()).is_none_or(|next| m.offset() >= *next))
            .collect();
        if batch.is_empty() {
            return Ok(true);
        }
        let mut next = Positions::new();
        let (mut valid, mut invalid) = (Vec::new(), Vec::new());
        // Tracing: the batch is a root span linked to each record's trace (a batch holds many
        // orders' records, so it can be the child of none); each record gets an `apply` span
        // that is the child of its record's `traceparent`, open from validation to the commit
        // that made its effect durable, so the order's own trace shows when it was applied.
        let batch_span = tracing::info_span!(
            parent: None,
            "consume batch",
            otel.kind = "consumer",
            consumer = %self.settings.name,
            messaging.destination.name = %self.settings.config.topic,
            records = batch.len(),
        );
        let mut record_spans = Vec::with_capacity(batch.len());
        for m in &batch {
            let at = next.entry(m.partition()).or_insert(0);
            *at = (*at).max(m.offset() + 1);
            let cx = crate::trace_context::kafka::extract(m.headers());
            crate::trace_context::add_link(&batch_span, &cx);
            let span = tracing::info_span!(
                parent: &batch_span,
                "apply",
                otel.kind = "consumer",
                consumer = %self.settings.name,
                messaging.destination.name = %self.settings.config.topic,
                partition = m.partition(),
                offset = m.offset(),
                outcome = tracing::field::Empty,
            );
            crate::trace_context::set_parent(&span, cx);
            match span.in_scope(|| self.handler.validate(m)) {
                Ok(value) => valid.push(Valid { partition: m.partition(), offset: m.offset(), value }),
                Err(rejection) => {
                    span.record("outcome", "dead_lettered");
                    invalid.push((m, rejection));
                    continue;
                }
            }
            record_spans.push(span);
        }
        if !invalid.is_empty() && !self.dead_letter(&invalid, stop).await {
            return Ok(false);
        }
        let s = &self.settings;
        let handler = &*self.handler;
        let started = Instant::now();
        let work = async {
            let mut tx = conn.begin().await?;
            let applied = if valid.is_empty() { None } else { Some(handler.apply_batch(&mut tx, &valid).await?) };
            checkpoint::advance(&mut tx, &s.name, &s.config.topic, &next).await?;
            tx.commit().await?;
            Ok::<_, sqlx::Error>(applied)
        };
        // A whole batch may take a few statements' time, not more.
        let limit = s.config.statement_timeout * 2;
        let applied = match tokio::time::timeout(limit, work).instrument(batch_span.clone()).await {
            Ok(r) => r?,
            Err(_) => return Err(Stepped::Timeout(limit)),
        };
        for span in &record_spans {
            span.record("outcome", "applied");
        }
        // The record spans end here, at the commit.
        drop(record_spans);
        let took = started.elapsed();
        tracing::debug!(records = batch.len(), took_ms = took.as_secs_f64() * 1000.0, checkpoints = ?next, "batch committed");
        metrics::histogram!(self.names.batch_seconds.clone(), &self.labels()).record(took.as_secs_f64());
        positions.extend(next);
        self.status.progressed();
        self.pause(None);
        #[allow(clippy::cast_precision_loss, reason = "a histogram of small counts")]
        metrics::histogram!(self.names.batch.clone(), &self.labels()).record(batch.len() as f64);
        let (topic, name) = (s.config.topic.clone(), s.name.clone());
        if let Some(Applied { applied, duplicates, detail }) = applied {
            let c = &self.names.consumed;
            metrics::counter!(c.clone(), "topic" => topic.clone(), "consumer" => name.clone(), "outcome" => "sent")
                .increment(applied);
            metrics::counter!(c.clone(), "topic" => topic.clone(), "consumer" => name.clone(), "outcome" => "duplicate")
                .increment(duplicates);
            metrics::counter!(self.names.duplicates.clone(), &self.labels()).increment(duplicates);
            self.handler.committed(detail);
        }
        if !invalid.is_empty() {
            let c = &self.names.consumed;
            let n = u64::try_from(invalid.len()).unwrap_or(u64::MAX);
            metrics::counter!(c.clone(), "topic" => topic, "consumer" => name, "outcome" => "dead_lettered")
                .increment(n);
        }
        Ok(true)
    }

    /// Copies each invalid record to the DLQ topic (key, payload, headers and timestamp kept;
    /// `dlq-reason` and where it came from added), in order, and waits until the broker
    /// acknowledged all; failed copies are retried with backoff. `false` when stopped first.
    async fn dead_letter(&self, invalid: &[(&OwnedMessage, Rejection)], stop: &CancellationToken) -> bool {
        let mut pending: Vec<usize> = (0..invalid.len()).collect();
        let mut backoff = Backoff::new(&self.settings);
        loop {
            let sends = pending.iter().map(|&i| {
                let (msg, rejection) = &invalid[i];
                async move { (i, self.send_dlq(msg, rejection).await) }
            });
            let results = futures::future::join_all(sends).await;
            let mut failed = Vec::new();
            let mut last_error = None;
            for (i, r) in results {
                match r {
                    Ok(()) => {
                        let (msg, rejection) = &invalid[i];
                        tracing::warn!(
                            reason = rejection.reason,
                            partition = msg.partition(),
                            offset = msg.offset(),
                            "invalid record dead-lettered"
                        );
                        metrics::counter!(
                            self.names.dead_lettered.clone(),
                            "topic" => self.settings.config.topic.clone(),
                            "consumer" => self.settings.name.clone(),
                            "reason" => rejection.code
                        )
                        .increment(1);
                    }
                    Err(e) => {
                        failed.push(i);
                        last_error = Some(e);
                    }
                }
            }
            let Some(e) = last_error else {
                return true;
            };
            pending = failed;
            self.pause(Some(format!("dead-letter topic: {e}")));
            self.retried("dlq", &e, backoff.next);
            if !sleep_or_stop(backoff.step(), stop).await {
                return false;
            }
        }
    }

    async fn send_dlq(&self, msg: &OwnedMessage, rejection: &Rejection) -> Result<(), KafkaError> {
        let mut hs = OwnedHeaders::new();
        if let Some(original) = msg.headers() {
            for h in original.iter() {
                hs = hs.insert(Header { key: h.key, value: h.value });
            }
        }
        let (partition, offset) = (msg.partition().to_string(), msg.offset().to_string());
        let hs = hs
            .insert(Header { key: crate::events::headers::DLQ_REASON, value: Some(rejection.reason.as_str()) })
            .insert(Header { key: crate::events::headers::DLQ_SOURCE, value: Some(self.settings.service) })
            .insert(Header { key: "dlq-topic", value: Some(msg.topic()) })
            .insert(Header { key: "dlq-partition", value: Some(partition.as_str()) })
            .insert(Header { key: "dlq-offset", value: Some(offset.as_str()) });
        let mut record: FutureRecord<'_, [u8], [u8]> = FutureRecord::to(&self.settings.config.dlq_topic).headers(hs);
        if let Some(key) = msg.key() {
            record = record.key(key);
        }
        if let Some(payload) = msg.payload() {
            record = record.payload(payload);
        }
        if let Some(ms) = msg.timestamp().to_millis() {
            record = record.timestamp(ms);
        }
        self.dlq.send(record, Duration::from_secs(5)).await.map(drop).map_err(|(e, _)| e)
    }
}

/// Up to `max` records: waits [`IDLE_POLL`] for the first, then takes what is already
/// fetched. Empty when none came; `None` when stopped.
async fn next_batch(client: &StreamConsumer, max: usize, stop: &CancellationToken) -> Option<Vec<OwnedMessage>> {
    let first = tokio::select! {
        biased;
        () = stop.cancelled() => return None,
        () = tokio::time::sleep(IDLE_POLL) => return Some(Vec::new()),
        m = client.recv() => m,
    };
    let mut batch = Vec::with_capacity(max.min(1024));
    match first {
        Ok(m) => batch.push(m.detach()),
        Err(e) => {
            // Broker trouble surfaces here; the client reconnects by itself, and the watchdog
            // rebuilds it when that does not lead anywhere.
            tracing::warn!(error = %e, "consumer error");
            return Some(batch);
        }
    }
    while batch.len() < max {
        match client.recv().now_or_never() {
            Some(Ok(m)) => batch.push(m.detach()),
            Some(Err(e)) => {
                tracing::warn!(error = %e, "consumer error");
                break;
            }
            None => break,
        }
    }
    Some(batch)
}

fn ms(d: Duration) -> String {
    d.as_millis().to_string()
}

/// Closes a client off the async threads (librdkafka may wait for its broker threads).
async fn close(client: StreamConsumer) {
    let _ = tokio::task::spawn_blocking(move || drop(client)).await;
}
