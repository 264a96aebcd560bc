//! orders: events, ticket types, orders and payment, each stored on its region's shard.
//!
//! Every database call goes through `shard-router`: the shard map from `shards.toml` and one
//! pool per shard. The outbox relay (`orders-relay`) is a second binary of this crate because
//! it shares the shard map and the outbox schema.
//!
//! # Layout
//! - [`Settings`] / [`Application`]: the orders HTTP service.
//! - [`domain`]: request input parsed once (cents, quantities, texts, timestamps, keys).
//! - [`relay`]: the outbox relay process.

pub mod domain;
pub mod relay;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use platform::http::Server;
use platform::ops::{Check, Readiness};
use serde::{Deserialize, Serialize};
use shard_router::{ShardMap, ShardPools};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "orders";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address (default `127.0.0.1:3002`).
    pub http_addr: SocketAddr,
    /// The shard map (default `shards.toml` in the working directory).
    pub shards_file: PathBuf,
    pub redis_url: String,
    /// How long a request waits for a shard connection before it answers 503, in milliseconds.
    pub shard_acquire_timeout_ms: u64,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 3002)),
            shards_file: PathBuf::from("shards.toml"),
            redis_url: "redis://127.0.0.1:6379".into(),
            shard_acquire_timeout_ms: 1500,
        }
    }
}

/// One readiness check per shard, named `postgres:<shard>`.
pub fn shard_checks(pools: &ShardPools) -> Vec<Check> {
    pools.all().map(|(name, pool)| Check::postgres(format!("postgres:{name}"), pool.clone())).collect()
}

pub struct Application {
    http: Server,
}

impl Application {
    /// Builds the service on an already loaded shard map (tests pass one pointing at fresh
    /// databases).
    pub async fn build(settings: Settings, shards: ShardMap) -> anyhow::Result<Self> {
        let pools = ShardPools::connect_lazy(&shards, Duration::from_millis(settings.shard_acquire_timeout_ms))?;
        let redis = platform::redis::pool_lazy(&settings.redis_url, 32, Duration::from_secs(2))?;
        let mut checks = shard_checks(&pools);
        checks.push(Check::redis("redis", redis));
        let http = Server::bind(settings.http_addr, platform::http::app(Router::new(), Readiness::new(checks))).await?;
        Ok(Self { http })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "orders listening");
        self.http.run(shutdown).await?;
        Ok(())
    }
}
