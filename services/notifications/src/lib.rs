//! notifications: turns order events into notifications, once each.
//!
//! Knows nothing of shards: it reads the one keyed topic `orders.events` as the consumer
//! `notifications.v1` of the project's consumer runtime ([`platform::consumer`]: partitions
//! assigned by hand, checkpoints committed with the effects, one active process per lease),
//! and of `shards.toml` only the region names (to refuse events from a region this deployment
//! does not serve). Its own state, the inbox, the notifications and the checkpoints, lives in
//! the `notifications` database on the global instance.
//!
//! # Layout
//! - [`Settings`] / [`Application`]: the service, HTTP (ops endpoints and the inspection API)
//!   beside the consumer, one cancellation token for both.
//! - [`event`]: a record's headers and payload parsed into domain types, or why not.
//! - [`store`]: a batch's inbox claims and notifications, set-based; reads for the API.
//! - [`consumer`]: the handler given to the runtime: validate a record, apply a batch, report
//!   what was sent once committed.
//! - [`api`]: `GET /api/v1/notifications?orderId=`, documented in OpenAPI ([`openapi`]).

pub mod api;
pub mod consumer;
pub mod event;
pub mod store;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use platform::events::{ORDERS_DLQ_TOPIC, ORDERS_TOPIC};
use platform::http::Server;
use platform::ops::{Check, Readiness};
use platform::settings::millis;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::consumer::Notifier;
use crate::event::KnownRegions;

pub const SERVICE: &str = "notifications";

/// The OpenAPI document this service serves at `/openapi.json` (and
/// `openapi/notifications.json` holds), built without starting anything.
pub fn openapi() -> utoipa::openapi::OpenApi {
    platform::openapi::document(api::routes(), &api::API)
}

/// The consumer's name, key of its checkpoints and lease: versioned, so a consumer with new
/// semantics can start from scratch under a new name while the old one keeps its checkpoints.
pub const CONSUMER_NAME: &str = "notifications.v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address (default `127.0.0.1:3010`).
    pub http_addr: SocketAddr,
    /// The `notifications` database on the global instance.
    pub database_url: String,
    /// How long a query waits for a database connection before failing, in milliseconds
    /// (default 2000). A failing store is retried, so this bounds one attempt, not the wait.
    #[serde(rename = "db_acquire_timeout_ms", with = "millis")]
    pub db_acquire_timeout: Duration,
    /// Kafka bootstrap servers (default `127.0.0.1:9092`).
    pub kafka_bootstrap: String,
    /// The topic consumed (default `orders.events`).
    pub topic: String,
    /// Where invalid records go, with a `dlq-reason` header (default `orders.events.dlq`).
    pub dlq_topic: String,
    /// The consumer's name (default `notifications.v1`): key of its checkpoints and of its
    /// lease in the database. No broker consumer group is used.
    pub consumer_name: String,
    /// Partitions of the two topics when this service is the first to create them (default 6,
    /// as the relay); existing topics are left as they are.
    pub topic_partitions: i32,
    /// Most records applied in one transaction (default 500).
    pub batch_max_records: usize,
    /// First and largest pause between retries while the database or the DLQ is failing, in
    /// milliseconds (defaults 200 and 5000); the pause doubles in between.
    #[serde(rename = "retry_initial_ms", with = "millis")]
    pub retry_initial: Duration,
    #[serde(rename = "retry_max_ms", with = "millis")]
    pub retry_max: Duration,
    /// How often a standby process tries to take the consumer lease, in milliseconds
    /// (default 1000): how long consumption pauses after the active process dies.
    #[serde(rename = "lease_retry_ms", with = "millis")]
    pub lease_retry: Duration,
    /// Bound on each statement of the consumer's lease session and on connecting it, in
    /// milliseconds (default 10000); a batch may take twice this. Past it the lease is given
    /// up and the batch read again.
    #[serde(rename = "statement_timeout_ms", with = "millis")]
    pub statement_timeout: Duration,
    /// How often lag (partition ends against the stored checkpoints) and progress are
    /// measured, in milliseconds (default 5000).
    #[serde(rename = "lag_interval_ms", with = "millis")]
    pub lag_interval: Duration,
    /// Lag with no checkpoint moving for this long, in milliseconds (default 15000), is a
    /// stall: `/readyz` says so, `notifications_consumer_stalled` is 1, and the active process
    /// rebuilds its Kafka client and seeks its checkpoints again.
    #[serde(rename = "stall_after_ms", with = "millis")]
    pub stall_after: Duration,
    /// The shard map whose `[regions]` names are the regions accepted in events (default
    /// `shards.toml`); nothing else of it is read.
    pub shards_file: PathBuf,
    /// Test hook, never set in deployments: abort the process right after the first batch
    /// commit, to prove the checkpoint was committed with the effects (default false).
    pub crash_after_store: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 3010)),
            database_url: "postgres://postgres@127.0.0.1:5440/notifications".into(),
            db_acquire_timeout: Duration::from_millis(2000),
            kafka_bootstrap: "127.0.0.1:9092".into(),
            topic: ORDERS_TOPIC.into(),
            dlq_topic: ORDERS_DLQ_TOPIC.into(),
            consumer_name: CONSUMER_NAME.into(),
            topic_partitions: 6,
            batch_max_records: 500,
            retry_initial: Duration::from_millis(200),
            retry_max: Duration::from_millis(5000),
            lease_retry: Duration::from_millis(1000),
            statement_timeout: Duration::from_millis(10_000),
            lag_interval: Duration::from_millis(5000),
            stall_after: Duration::from_millis(15_000),
            shards_file: PathBuf::from("shards.toml"),
            crash_after_store: false,
        }
    }
}

impl Settings {
    /// Cross-field rules serde cannot express; fails at start naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.consumer_name.is_empty(), "consumer_name: must not be empty");
        self.consumer().validate()
    }

    /// The runtime's view of these settings.
    pub fn consumer(&self) -> platform::consumer::Settings {
        platform::consumer::Settings {
            service: SERVICE,
            name: self.consumer_name.clone(),
            bootstrap: self.kafka_bootstrap.clone(),
            topic: self.topic.clone(),
            dlq_topic: self.dlq_topic.clone(),
            topic_partitions: self.topic_partitions,
            batch_max_records: self.batch_max_records,
            retry_initial: self.retry_initial,
            retry_max: self.retry_max,
            lease_retry: self.lease_retry,
            statement_timeout: self.statement_timeout,
            lag_interval: self.lag_interval,
            stall_after: self.stall_after,
        }
    }
}

pub struct Application {
    /// Ops endpoints and the inspection API, bound at build so tests learn the port.
    http: Server,
    /// The consumer, started by `run_until_stopped`.
    consumer: platform::consumer::Consumer<Notifier>,
}

impl Application {
    /// Binds HTTP and creates the Kafka clients; connects to nothing, so the service starts
    /// (and `/readyz` says what is missing) while a dependency is down.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let regions = KnownRegions::from_shards_file(&settings.shards_file)?;
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(settings.db_acquire_timeout)
            .connect_lazy(&settings.database_url)?;
        let notifier = Notifier::new(regions, settings.topic.clone(), settings.crash_after_store);
        let consumer = platform::consumer::Consumer::new(settings.consumer(), db.clone(), notifier)?;
        let readiness = Readiness::new(vec![
            Check::postgres("postgres", db.clone()),
            platform::kafka::check("kafka", &settings.kafka_bootstrap),
            consumer.check("consumer"),
        ]);
        let app = platform::openapi::app(api::routes().with_state(db), readiness, &api::API);
        let http = Server::bind(settings.http_addr, app).await?;
        Ok(Self { http, consumer })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    /// Serves HTTP and consumes until `shutdown`; the consumer then finishes the batch at hand
    /// and gives its lease back. Either part failing stops the other.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "notifications listening");
        let stop = shutdown.child_token();
        let consumer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let result = self.consumer.run(stop.clone()).await;
                stop.cancel();
                result
            })
        };
        let http = self.http.run(stop.clone()).await;
        stop.cancel();
        let consumed = consumer.await;
        http?;
        consumed??;
        Ok(())
    }
}
