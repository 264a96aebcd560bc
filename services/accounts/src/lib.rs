//! accounts: the global user directory.
//!
//! Users live in the `accounts` database on the global Postgres instance (not sharded: a user
//! buys in every region). This crate serves the HTTP API and, later, gRPC for internal lookups.
//!
//! # Layout
//! - [`Settings`]: figment-loaded configuration.
//! - [`Application`]: binds listeners (`build`) apart from serving (`run_until_stopped`), so tests
//!   start the real service on port 0.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use platform::http::Server;
use platform::ops::{Check, Readiness};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "accounts";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address (default `127.0.0.1:3001`).
    pub http_addr: SocketAddr,
    /// The `accounts` database on the global instance.
    pub database_url: String,
    pub redis_url: String,
    /// Upper bound on waiting for a database connection, in milliseconds.
    pub db_acquire_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 3001)),
            database_url: "postgres://postgres@127.0.0.1:5440/accounts".into(),
            redis_url: "redis://127.0.0.1:6379".into(),
            db_acquire_timeout_ms: 2000,
        }
    }
}

pub struct Application {
    http: Server,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let db = sqlx::postgres::PgPoolOptions::new()
            .acquire_timeout(Duration::from_millis(settings.db_acquire_timeout_ms))
            .connect_lazy(&settings.database_url)?;
        let redis = platform::redis::pool_lazy(&settings.redis_url, 16, Duration::from_secs(2))?;
        let readiness = Readiness::new(vec![
            Check::postgres("postgres", db),
            Check::redis("redis", redis),
        ]);
        let http = Server::bind(
            settings.http_addr,
            platform::http::app(Router::new(), readiness),
        )
        .await?;
        Ok(Self { http })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "accounts listening");
        self.http.run(shutdown).await?;
        Ok(())
    }
}
