//! The gateway's settings: defaults for the local stack, then `config/gateway.toml`, then
//! `TICKET_HUB_GATEWAY__*`.

use std::net::SocketAddr;
use std::path::PathBuf;

use std::time::Duration;

use platform::settings::{at_least_ms, millis, secs};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address (default `127.0.0.1:4000`).
    pub http_addr: SocketAddr,
    /// The shard map whose regions the `Region` scalar accepts and `regions` lists (default
    /// `shards.toml` in the working directory). Only names are read; no database is touched.
    pub shards_file: PathBuf,
    /// Base URL of the accounts HTTP API (default `http://127.0.0.1:3001`).
    pub accounts_url: String,
    /// Base URL of the orders HTTP API (default `http://127.0.0.1:3002`).
    pub orders_url: String,
    /// Base URL of the projector's read API (default `http://127.0.0.1:3020`): `eventSales`,
    /// `customerOrders`, `orderTimeline`.
    pub projector_url: String,
    /// Bound on each downstream call, connect to last byte, in milliseconds (default 3000);
    /// past it the field fails with `UNAVAILABLE`.
    #[serde(rename = "downstream_timeout_ms", with = "millis")]
    pub downstream_timeout: Duration,
    /// Idle keep-alive connections kept per downstream host (default 64).
    pub downstream_max_idle_per_host: usize,
    /// Redis of the cache (default `redis://127.0.0.1:6379`). Optional at run time: while it
    /// is down every read goes to the services directly.
    pub redis_url: String,
    /// Prefix of every Redis key the gateway writes (default `gateway:`), so several
    /// gateways or tests can share one Redis.
    pub redis_key_prefix: String,
    /// Connections to Redis (default 32); each operation holds one for a round trip.
    pub redis_pool_size: u32,
    /// Bound on each cache operation, connection checkout included, in milliseconds
    /// (default 200): what a Redis outage may add to a query, at most once per
    /// `redis_retry_ms`.
    #[serde(rename = "redis_timeout_ms", with = "millis")]
    pub redis_timeout: Duration,
    /// After a failed cache operation, how long reads skip Redis before trying it again, in
    /// milliseconds (default 1000).
    #[serde(rename = "redis_retry_ms", with = "millis")]
    pub redis_retry: Duration,
    /// Lifetime of cached event pages and events, in seconds (default 30). Also the longest a
    /// value can stay stale when a mutation could not reach Redis to invalidate it.
    #[serde(rename = "cache_ttl_secs", with = "secs")]
    pub cache_ttl: Duration,
    /// Deepest selection nesting a query may have (default 10).
    pub max_query_depth: usize,
    /// Highest complexity a query may have (default 5000): one per field, list fields
    /// multiplied by their `first`. Also the most fields a document may select once its
    /// fragments are expanded, counted before the engine validates it.
    pub max_query_complexity: usize,
    /// Most root fields one mutation may have (default 5), fragments and aliases included: they
    /// run one after another, and `login`/`signup` each hash a password.
    pub max_mutation_fields: usize,
    /// Bound on executing one GraphQL request, in milliseconds (default 10000); past it the
    /// client gets `UNAVAILABLE` and the request's work is dropped.
    #[serde(rename = "request_timeout_ms", with = "millis")]
    pub request_timeout: Duration,
    /// Largest request body, in bytes (default 65536); larger is a 413.
    pub max_body_bytes: usize,
}

platform::defaults_from!(Settings, "defaults/gateway.toml");

impl Settings {
    /// Cross-field and range checks serde cannot express; each error names its key.
    pub fn validate(&self) -> anyhow::Result<()> {
        for (key, url) in [
            ("accounts_url", &self.accounts_url),
            ("orders_url", &self.orders_url),
            ("projector_url", &self.projector_url),
        ] {
            let parsed = reqwest::Url::parse(url).map_err(|e| anyhow::anyhow!("{key}: `{url}` is not a URL: {e}"))?;
            anyhow::ensure!(matches!(parsed.scheme(), "http" | "https"), "{key}: must be an http(s) URL");
        }
        at_least_ms("downstream_timeout_ms", self.downstream_timeout, 1)?;
        at_least_ms("redis_timeout_ms", self.redis_timeout, 1)?;
        at_least_ms("request_timeout_ms", self.request_timeout, 1)?;
        anyhow::ensure!(self.cache_ttl >= Duration::from_secs(1), "cache_ttl_secs: must be at least 1");
        anyhow::ensure!(self.redis_pool_size > 0, "redis_pool_size: must be greater than 0");
        anyhow::ensure!(self.max_query_depth >= 3, "max_query_depth: must be at least 3");
        anyhow::ensure!(self.max_query_complexity >= 10, "max_query_complexity: must be at least 10");
        anyhow::ensure!(self.max_body_bytes >= 1024, "max_body_bytes: must be at least 1024");
        anyhow::ensure!((1..=100).contains(&self.max_mutation_fields), "max_mutation_fields: must be from 1 to 100");
        anyhow::ensure!(
            self.request_timeout >= self.downstream_timeout,
            "request_timeout_ms: must be at least downstream_timeout_ms ({}): a request waits on at least one \
             downstream call",
            self.downstream_timeout.as_millis()
        );
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_are_named() {
        Settings::default().validate().unwrap_or_else(|e| panic!("{e}"));
        let bad = Settings { orders_url: "orders:3002".into(), ..Settings::default() };
        assert!(bad.validate().is_err_and(|e| e.to_string().contains("orders_url")));
        let bad = Settings { cache_ttl: Duration::ZERO, ..Settings::default() };
        assert!(bad.validate().is_err_and(|e| e.to_string().contains("cache_ttl_secs")));
        for bad in [
            Settings { max_mutation_fields: 0, ..Settings::default() },
            Settings { request_timeout: Duration::ZERO, ..Settings::default() },
            Settings {
                request_timeout: Duration::from_millis(1000),
                downstream_timeout: Duration::from_millis(3000),
                ..Settings::default()
            },
        ] {
            let err = bad.validate().unwrap_err().to_string();
            assert!(err.contains("max_mutation_fields") || err.contains("request_timeout_ms"), "{err}");
        }
    }
}
