//! notifications: turns order events into notifications, once each.
//!
//! Knows nothing of shards: it reads the one keyed topic `orders.events` in the consumer group
//! `notifications.v1`, and of `shards.toml` only the region names (to refuse events from a
//! region this deployment does not serve). Its own state, the inbox and the notifications,
//! lives in the `notifications` database on the global instance.
//!
//! # Layout
//! - [`Settings`] / [`Application`]: the service, HTTP (ops endpoints and the inspection API)
//!   beside the consumer, one cancellation token for both.
//! - [`event`]: a record's headers and payload parsed into domain types, or why not.
//! - [`store`]: inbox claim plus notification in one transaction; reads for the API.
//! - [`consumer`]: the consume loop: apply or dead-letter, then commit; retries that pause
//!   consumption during outages; commit on revoke; lag metrics.
//! - [`api`]: `GET /api/v1/notifications?orderId=`.

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
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::consumer::Worker;
use crate::event::KnownRegions;

pub const SERVICE: &str = "notifications";

/// The consumer group: versioned, so a consumer with new semantics can start from scratch
/// under a new name while the old one keeps its offsets.
pub const GROUP_ID: &str = "notifications.v1";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address (default `127.0.0.1:3010`).
    pub http_addr: SocketAddr,
    /// The `notifications` database on the global instance.
    pub database_url: String,
    /// How long a query waits for a database connection before failing, in milliseconds
    /// (default 2000). A failing store is retried, so this bounds one attempt, not the wait.
    pub db_acquire_timeout_ms: u64,
    /// Kafka bootstrap servers (default `127.0.0.1:9092`).
    pub kafka_bootstrap: String,
    /// The topic consumed (default `orders.events`).
    pub topic: String,
    /// Where invalid records go, with a `dlq-reason` header (default `orders.events.dlq`).
    pub dlq_topic: String,
    /// The consumer group (default `notifications.v1`).
    pub group_id: String,
    /// Partitions of the two topics when this service is the first to create them (default 6,
    /// as the relay); existing topics are left as they are.
    pub topic_partitions: i32,
    /// Consumer session timeout, in milliseconds (default 10000): how long a member that died
    /// without leaving holds its partitions.
    pub session_timeout_ms: u64,
    /// First and largest pause between retries of a record whose store (or DLQ send) failed,
    /// in milliseconds (defaults 200 and 5000); the pause doubles in between.
    pub retry_initial_ms: u64,
    pub retry_max_ms: u64,
    /// How often the consumer lag per partition is measured, in milliseconds (default 5000).
    pub lag_interval_ms: u64,
    /// The shard map whose `[regions]` names are the regions accepted in events (default
    /// `shards.toml`); nothing else of it is read.
    pub shards_file: PathBuf,
    /// Test hook, never set in deployments: abort the process right after the first record's
    /// effect is committed and before its offset is, to prove a crash there has no second
    /// effect (default false).
    pub crash_after_store: bool,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 3010)),
            database_url: "postgres://postgres@127.0.0.1:5440/notifications".into(),
            db_acquire_timeout_ms: 2000,
            kafka_bootstrap: "127.0.0.1:9092".into(),
            topic: ORDERS_TOPIC.into(),
            dlq_topic: ORDERS_DLQ_TOPIC.into(),
            group_id: GROUP_ID.into(),
            topic_partitions: 6,
            session_timeout_ms: 10_000,
            retry_initial_ms: 200,
            retry_max_ms: 5000,
            lag_interval_ms: 5000,
            shards_file: PathBuf::from("shards.toml"),
            crash_after_store: false,
        }
    }
}

impl Settings {
    /// Cross-field rules serde cannot express; fails at start naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.topic_partitions > 0, "topic_partitions: must be at least 1");
        anyhow::ensure!(self.topic != self.dlq_topic, "dlq_topic: must differ from topic");
        anyhow::ensure!(!self.group_id.is_empty(), "group_id: must not be empty");
        anyhow::ensure!(self.retry_initial_ms > 0, "retry_initial_ms: must be at least 1");
        anyhow::ensure!(self.retry_max_ms >= self.retry_initial_ms, "retry_max_ms: must be at least retry_initial_ms");
        anyhow::ensure!(self.lag_interval_ms > 0, "lag_interval_ms: must be at least 1");
        anyhow::ensure!(
            (1000..=300_000).contains(&self.session_timeout_ms),
            "session_timeout_ms: must be between 1000 and 300000"
        );
        Ok(())
    }
}

pub struct Application {
    /// Ops endpoints and the inspection API, bound at build so tests learn the port.
    http: Server,
    /// The consumer, started by `run_until_stopped`.
    worker: Worker,
}

impl Application {
    /// Binds HTTP and creates the Kafka clients; connects to nothing, so the service starts
    /// (and `/readyz` says what is missing) while a dependency is down.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let regions = KnownRegions::from_shards_file(&settings.shards_file)?;
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_millis(settings.db_acquire_timeout_ms))
            .connect_lazy(&settings.database_url)?;
        let readiness = Readiness::new(vec![
            Check::postgres("postgres", db.clone()),
            platform::kafka::check("kafka", &settings.kafka_bootstrap),
        ]);
        let worker = Worker::new(&settings, db.clone(), regions)?;
        let routes = api::router(db);
        let http = Server::bind(settings.http_addr, platform::http::app(routes, readiness)).await?;
        Ok(Self { http, worker })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    /// Serves HTTP and consumes until `shutdown`; the consumer then commits what is done.
    /// Either part failing stops the other.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "notifications listening");
        let stop = shutdown.child_token();
        let consumer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let result = self.worker.run(stop.clone()).await;
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
