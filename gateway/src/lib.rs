//! gateway: the one entry point for clients.
//!
//! GraphQL at `/graphql` over the accounts and orders HTTP APIs, with a Redis cache in front of
//! the hot reads. This first version is the process shell: ops endpoints and readiness on
//! Redis and both downstream services.
//!
//! # Layout
//! - [`Settings`] / [`Application`]: the service.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use platform::http::Server;
use platform::ops::{Check, Readiness};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "gateway";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address (default `127.0.0.1:4000`).
    pub http_addr: SocketAddr,
    pub redis_url: String,
    /// Base URL of the accounts HTTP API.
    pub accounts_url: String,
    /// Base URL of the orders HTTP API.
    pub orders_url: String,
    /// Timeout of every downstream call, in milliseconds.
    pub downstream_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 4000)),
            redis_url: "redis://127.0.0.1:6379".into(),
            accounts_url: "http://127.0.0.1:3001".into(),
            orders_url: "http://127.0.0.1:3002".into(),
            downstream_timeout_ms: 3000,
        }
    }
}

pub struct Application {
    http: Server,
}

impl Application {
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        let timeout = Duration::from_millis(settings.downstream_timeout_ms);
        let client = reqwest::Client::builder().timeout(timeout).pool_max_idle_per_host(64).build()?;
        let redis = platform::redis::pool_lazy(&settings.redis_url, 32, Duration::from_secs(1))?;
        let readiness = Readiness::new(vec![
            Check::redis("redis", redis),
            Check::http("accounts", client.clone(), format!("{}/healthz", settings.accounts_url)),
            Check::http("orders", client, format!("{}/healthz", settings.orders_url)),
        ]);
        let http = Server::bind(settings.http_addr, platform::http::app(Router::new(), readiness)).await?;
        Ok(Self { http })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "gateway listening");
        self.http.run(shutdown).await?;
        Ok(())
    }
}
