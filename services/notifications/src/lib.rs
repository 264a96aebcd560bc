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
    /// The consumer's name (default `notifications.v1`): key of its checkpoints and of its
    /// lease in the database. No broker consumer group is used.
    pub consumer_name: String,
    /// The broker, the topics and the runtime's timing (`[consumer]`, the same keys in every
    /// consumer service; see `platform::consumer::Config`).
    pub consumer: platform::consumer::Config,
    /// The shard map whose `[regions]` names are the regions accepted in events (default
    /// `shards.toml`); nothing else of it is read.
    pub shards_file: PathBuf,
    /// Test hook, never set in deployments: abort the process right after the first batch
    /// commit, to prove the checkpoint was committed with the effects (default false).
    pub crash_after_store: bool,
}

platform::defaults_from!(Settings, "defaults/notifications.toml");

impl Settings {
    /// Cross-field rules serde cannot express; fails at start naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(!self.consumer_name.is_empty(), "consumer_name: must not be empty");
        self.consumer.validate()
    }

    /// The runtime's view of these settings.
    pub fn runtime(&self) -> platform::consumer::Settings {
        platform::consumer::Settings {
            service: SERVICE,
            name: self.consumer_name.clone(),
            config: self.consumer.clone(),
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
        let notifier = Notifier::new(regions, settings.consumer.topic.clone(), settings.crash_after_store);
        let consumer = platform::consumer::Consumer::new(settings.runtime(), db.clone(), notifier)?;
        let readiness = Readiness::new(vec![
            Check::postgres("postgres", db.clone()),
            platform::kafka::check("kafka", &settings.consumer.kafka_bootstrap),
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
        self.http.run_beside(shutdown, move |stop| self.consumer.run(stop)).await
    }
}
