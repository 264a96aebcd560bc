//! projector: the query side of Ticket Hub (CQRS read models) fed by `orders.events`.
//!
//! Three read models, kept in the `read_models` database on the global instance: sales per
//! (event, ticket type), orders per customer, and every order's timeline. They are built in
//! **generations**: each generation has its own schema and its own consumer of the project's
//! runtime ([`platform::consumer`]: no consumer group, checkpoints committed with the
//! effects, one active process per consumer name), so a rebuild replays the whole topic into
//! a fresh generation beside the LIVE one and readers are switched over atomically once it
//! caught up. Nothing here assumes order across partitions: every effect is keyed by the
//! order's `version`.
//!
//! # Layout
//! - [`Settings`] / [`Application`]: the service: HTTP (read API, ops endpoints) beside the
//!   supervisor, one cancellation token for both.
//! - [`event`]: a record parsed into checked values, or why not (DLQ).
//! - [`store`]: a batch applied to one generation, set-based; the timeline is the inbox.
//! - [`consumer`]: the handler given to the runtime, one per generation.
//! - [`generations`]: generations, rebuild, the atomic switch, progress.
//! - [`supervisor`]: one consumer per LIVE/BUILDING generation; switches when caught up.
//! - [`reads`] / [`api`]: the read API on the public views.
//! - [`cli`]: `projector [serve] | rebuild [--hold-switch] | switch | status`.

pub mod api;
pub mod cli;
pub mod consumer;
pub mod event;
pub mod generations;
pub mod reads;
pub mod store;
pub mod supervisor;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use platform::auth::JwksVerifier;
use platform::http::Server;
use platform::ops::{Check, Readiness};
use platform::settings::{at_least_ms, between_ms, millis};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use crate::generations::Generation;
use crate::supervisor::{LiveConsumer, Supervisor};

pub const SERVICE: &str = "projector";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address (default `127.0.0.1:3020`).
    pub http_addr: SocketAddr,
    /// The `read_models` database on the global instance.
    pub database_url: String,
    /// How long a query waits for a database connection, in milliseconds (default 2000).
    #[serde(rename = "db_acquire_timeout_ms", with = "millis")]
    pub db_acquire_timeout: Duration,
    /// The broker, the topics and the runtime's timing (`[consumer]`, the same keys in every
    /// consumer service; see `platform::consumer::Config`). A rebuild reads invalid records
    /// again and copies them to `consumer.dlq_topic` again (`dlq-source: projector`).
    pub consumer: platform::consumer::Config,
    /// How often the supervisor reads the generations (start/stop consumers, switch), in
    /// milliseconds (default 1000).
    #[serde(rename = "supervise_interval_ms", with = "millis")]
    pub supervise_interval: Duration,
    /// `/readyz` fails while the LIVE generation lags more records than this (default 10000).
    pub max_lag_records: i64,
    /// The orders service, asked who organizes an event (default `http://127.0.0.1:3002`).
    pub orders_url: String,
    /// Bound on one call to orders, in milliseconds (default 2000).
    #[serde(rename = "orders_timeout_ms", with = "millis")]
    pub orders_timeout: Duration,
    /// The accounts JWKS, for verifying access tokens.
    pub accounts_jwks_url: String,
    /// Least time between JWKS refetches caused by unknown key ids, in milliseconds (default 10000).
    #[serde(rename = "jwks_min_refresh_ms", with = "millis")]
    pub jwks_min_refresh: Duration,
    /// Expected `iss` and `aud` of access tokens.
    pub token_issuer: String,
    pub token_audience: String,
}

platform::defaults_from!(Settings, "defaults/projector.toml");

impl Settings {
    /// Cross-field rules serde cannot express; fails at start naming the field.
    pub fn validate(&self) -> anyhow::Result<()> {
        self.consumer.validate()?;
        between_ms("supervise_interval_ms", self.supervise_interval, 10, 60_000)?;
        anyhow::ensure!(self.max_lag_records >= 0, "max_lag_records: must not be negative");
        anyhow::ensure!(
            self.orders_url.starts_with("http://") || self.orders_url.starts_with("https://"),
            "orders_url: must be an http(s) URL"
        );
        at_least_ms("orders_timeout_ms", self.orders_timeout, 1)?;
        anyhow::ensure!(!self.accounts_jwks_url.is_empty(), "accounts_jwks_url: must not be empty");
        Ok(())
    }

    /// The runtime's view of these settings for generation `g`'s consumer. Its metrics carry
    /// `consumer="projector.g<N>"`, which is what keeps two generations' lag apart.
    pub fn runtime(&self, g: Generation) -> platform::consumer::Settings {
        platform::consumer::Settings { service: SERVICE, name: g.consumer_name(), config: self.consumer.clone() }
    }

    /// A pool on the `read_models` database that connects on first use.
    pub fn pool(&self) -> anyhow::Result<sqlx::PgPool> {
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(10)
            .acquire_timeout(self.db_acquire_timeout)
            .connect_lazy(&self.database_url)?)
    }
}

pub struct Application {
    /// The read API and the ops endpoints, bound at build so tests learn the port.
    http: Server,
    /// Runs the generations' consumers; started by `run_until_stopped`.
    supervisor: Supervisor,
}

impl Application {
    /// Binds HTTP and prepares the clients; connects to nothing, so the service starts (and
    /// `/readyz` says what is missing) while a dependency is down.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let pool = settings.pool()?;
        let live = LiveConsumer::default();
        let verifier = JwksVerifier::for_service(
            &settings.accounts_jwks_url,
            &settings.token_issuer,
            &settings.token_audience,
            settings.jwks_min_refresh,
        )?;
        let orders = api::OrdersClient {
            client: reqwest::Client::builder().timeout(settings.orders_timeout).build()?,
            base_url: settings.orders_url.clone(),
        };
        let max_lag = settings.max_lag_records;
        let projection = {
            let live = live.clone();
            Check::new("projection", move || {
                let live = live.clone();
                async move { live.check(max_lag) }
            })
        };
        let readiness = Readiness::new(vec![
            Check::postgres("postgres", pool.clone()),
            platform::kafka::check("kafka", &settings.consumer.kafka_bootstrap),
            projection,
        ]);
        let state = api::AppState { pool: pool.clone(), verifier: Arc::new(verifier), orders: Arc::new(orders) };
        let http = Server::bind(settings.http_addr, platform::http::app(api::router(state), readiness)).await?;
        let supervisor = Supervisor::new(settings, pool, live);
        Ok(Self { http, supervisor })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    /// Serves HTTP and supervises the consumers until `shutdown`; each consumer then finishes
    /// the batch at hand and gives its lease back. Either part failing stops the other.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.http.run_beside(shutdown, move |stop| self.supervisor.run(stop)).await
    }
}
