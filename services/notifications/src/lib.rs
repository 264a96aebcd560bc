//! notifications: turns order events into notifications, once each.
//!
//! Knows nothing of shards: it reads the one keyed topic `orders.events`. Its own state (inbox
//! and notifications) lives in the `notifications` database on the global instance.
//!
//! # Layout
//! - [`Settings`] / [`Application`]: the service; the consumer lands with its issue.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use platform::http::Server;
use platform::ops::{Check, Readiness};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "notifications";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address (default `127.0.0.1:3010`).
    pub http_addr: SocketAddr,
    /// The `notifications` database on the global instance.
    pub database_url: String,
    pub kafka_bootstrap: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 3010)),
            database_url: "postgres://postgres@127.0.0.1:5440/notifications".into(),
            kafka_bootstrap: "127.0.0.1:9092".into(),
        }
    }
}

pub struct Application {
    http: Server,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_secs(2))
            .connect_lazy(&settings.database_url)?;
        let readiness = Readiness::new(vec![
            Check::postgres("postgres", db),
            platform::kafka::check("kafka", &settings.kafka_bootstrap),
        ]);
        let http = Server::bind(settings.http_addr, platform::http::app(Router::new(), readiness)).await?;
        Ok(Self { http })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "notifications listening");
        self.http.run(shutdown).await?;
        Ok(())
    }
}
