//! The outbox relay process: one relay per shard draining its outbox into `orders.events`.
//!
//! This first version is the process shell (settings, ops endpoints, readiness on every shard
//! and the broker); the relay loop itself lands with the outbox issue.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use axum::Router;
use platform::http::Server;
use platform::ops::Readiness;
use serde::{Deserialize, Serialize};
use shard_router::{ShardMap, ShardPools};
use tokio_util::sync::CancellationToken;

pub const SERVICE: &str = "orders-relay";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// Ops HTTP listen address (default `127.0.0.1:3003`).
    pub http_addr: SocketAddr,
    pub shards_file: PathBuf,
    /// Kafka bootstrap servers.
    pub kafka_bootstrap: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            http_addr: SocketAddr::from(([127, 0, 0, 1], 3003)),
            shards_file: PathBuf::from("shards.toml"),
            kafka_bootstrap: "127.0.0.1:9092".into(),
        }
    }
}

pub struct Relay {
    http: Server,
}

impl Relay {
    pub async fn build(settings: Settings, shards: ShardMap) -> anyhow::Result<Self> {
        let pools = ShardPools::connect_lazy(&shards, Duration::from_secs(2))?;
        let mut checks = crate::shard_checks(&pools);
        checks.push(platform::kafka::check("kafka", &settings.kafka_bootstrap));
        let http = Server::bind(settings.http_addr, platform::http::app(Router::new(), Readiness::new(checks))).await?;
        Ok(Self { http })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "orders-relay listening");
        self.http.run(shutdown).await?;
        Ok(())
    }
}
