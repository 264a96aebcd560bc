//! The orders service's settings: defaults, then `config/orders.toml`, then
//! `TICKET_HUB_ORDERS__*` (see `platform::settings`). Durations are `Duration`s kept under their
//! unit-named keys (`lock_ttl_ms`), and [`Settings::validate`] refuses what the service cannot
//! run with, naming the key, instead of clamping it.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use platform::settings::{at_least_ms, millis, secs};
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// HTTP listen address (default `127.0.0.1:3002`).
    pub http_addr: SocketAddr,
    /// The shard map (default `shards.toml` in the working directory).
    pub shards_file: PathBuf,
    pub redis_url: String,
    /// How long a request waits for a shard connection before it answers 503
    /// (`shard_acquire_timeout_ms`, default 1500).
    #[serde(rename = "shard_acquire_timeout_ms", with = "millis")]
    pub shard_acquire_timeout: Duration,
    /// The accounts JWKS that tokens are verified with (fetched, cached, refetched on an
    /// unknown key id; never asked per request).
    pub accounts_jwks_url: String,
    /// Least time between two JWKS refetches caused by unknown key ids (`jwks_min_refresh_ms`).
    #[serde(rename = "jwks_min_refresh_ms", with = "millis")]
    pub jwks_min_refresh: Duration,
    /// Expected token issuer and audience.
    pub token_issuer: String,
    pub token_audience: String,
    /// The accounts gRPC endpoint, for the customer check.
    pub accounts_grpc_url: String,
    /// Timeout of the customer check (`accounts_timeout_ms`).
    #[serde(rename = "accounts_timeout_ms", with = "millis")]
    pub accounts_timeout: Duration,
    /// How long this process trusts accounts' "yes, a CUSTOMER" for a user id
    /// (`customer_cache_ttl_ms`, default 5000; 0 asks accounts on every order). Also the most
    /// time a deleted or demoted account can still place orders. Refusals are never cached.
    #[serde(rename = "customer_cache_ttl_ms", with = "millis")]
    pub customer_cache_ttl: Duration,
    /// Most user ids that cache holds (default 50000, at least 1); when full, expired entries
    /// are dropped, or else all of them.
    pub customer_cache_max_entries: usize,
    /// Most tickets one order may buy (at least 1).
    pub max_quantity_per_order: i32,
    /// Prefix of every Redis key this service writes.
    pub redis_key_prefix: String,
    /// Lease of the per-ticket-type stock lock (`lock_ttl_ms`).
    #[serde(rename = "lock_ttl_ms", with = "millis")]
    pub lock_ttl: Duration,
    /// How long an order waits for that lock before going on without it (`lock_wait_ms`).
    #[serde(rename = "lock_wait_ms", with = "millis")]
    pub lock_wait: Duration,
    /// W of the idempotency hints (`idempotency_hint_window_secs`, default 86400; 0 turns them
    /// off): a keyed write skips looking for its key on the other shards when Redis has no
    /// hint of the key and has held every hint for at least W. So a key reused with a body
    /// that lands on another shard is refused for W after its last use (on its own shard,
    /// always); after a Redis restart or a failed hint write, keyed writes look everywhere
    /// for W again. See `src/hints.rs`.
    #[serde(rename = "idempotency_hint_window_secs", with = "secs")]
    pub idempotency_hint_window: Duration,
    /// Upper bound on handling one request; past it the answer is 503 (`request_timeout_ms`).
    #[serde(rename = "request_timeout_ms", with = "millis")]
    pub request_timeout: Duration,
    /// The live placement map (`placement` on the global instance): which shard owns each
    /// partition now. Seeded from `shards_file` on the very first start.
    pub placement_url: String,
    /// Whether this process follows changes of the live map as they happen (LISTEN and a poll).
    /// Off only in tests of a stale process: it still reloads when a shard answers "moved".
    pub placement_follow: bool,
    /// How often the live map's epoch is polled, in case a notice was missed
    /// (`placement_poll_ms`, at least 100).
    #[serde(rename = "placement_poll_ms", with = "millis")]
    pub placement_poll: Duration,
    /// How long a PENDING order holds its tickets (`reservation_ttl_secs`, default 900): past it
    /// the order can no longer be paid, and the sweeper cancels it with reason `EXPIRED`.
    #[serde(rename = "reservation_ttl_secs", with = "secs")]
    pub reservation_ttl: Duration,
    /// How often each shard is swept for expired reservations (`expiry_sweep_interval_ms`,
    /// default 5000).
    #[serde(rename = "expiry_sweep_interval_ms", with = "millis")]
    pub expiry_sweep_interval: Duration,
    /// Most orders one sweep transaction cancels (one partition's; default 200).
    pub expiry_sweep_batch: i64,
}

platform::defaults_from!(Settings, "defaults/orders.toml");

impl Settings {
    /// Refuses values the service cannot run with, naming the key as files and the environment
    /// spell it. Nothing is clamped silently.
    pub fn validate(&self) -> anyhow::Result<()> {
        at_least_ms("shard_acquire_timeout_ms", self.shard_acquire_timeout, 1)?;
        at_least_ms("accounts_timeout_ms", self.accounts_timeout, 1)?;
        at_least_ms("lock_ttl_ms", self.lock_ttl, 1)?;
        at_least_ms("request_timeout_ms", self.request_timeout, 1)?;
        at_least_ms("placement_poll_ms", self.placement_poll, 100)?;
        anyhow::ensure!(self.reservation_ttl >= Duration::from_secs(1), "reservation_ttl_secs: must be at least 1");
        at_least_ms("expiry_sweep_interval_ms", self.expiry_sweep_interval, 10)?;
        anyhow::ensure!(
            (1..=10_000).contains(&self.expiry_sweep_batch),
            "expiry_sweep_batch: must be between 1 and 10000"
        );
        anyhow::ensure!(self.customer_cache_max_entries >= 1, "customer_cache_max_entries: must be at least 1");
        anyhow::ensure!(self.max_quantity_per_order >= 1, "max_quantity_per_order: must be at least 1");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_bad_values_name_their_key() {
        Settings::default().validate().unwrap();
        type Case = (fn(&mut Settings), &'static str);
        let cases: [Case; 5] = [
            (|s| s.customer_cache_max_entries = 0, "customer_cache_max_entries"),
            (|s| s.max_quantity_per_order = 0, "max_quantity_per_order"),
            (|s| s.placement_poll = Duration::from_millis(20), "placement_poll_ms"),
            (|s| s.request_timeout = Duration::ZERO, "request_timeout_ms"),
            (|s| s.expiry_sweep_batch = 0, "expiry_sweep_batch"),
        ];
        for (bad, key) in cases {
            let mut s = Settings::default();
            bad(&mut s);
            let err = s.validate().unwrap_err().to_string();
            assert!(err.starts_with(key), "{key}: {err}");
        }
    }
}
