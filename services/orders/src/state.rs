//! What every handler shares ([`AppState`]) and the few helpers on it that turn a path id, a
//! region or a shard into what a handler needs. Kept out of `lib.rs` so that file reads as the
//! service's map and wiring only.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use platform::auth::Verifier;
use platform::error::ApiError;
use platform::ops::Check;
use proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use shard_router::{RouteError, ShardMap, ShardName, ShardPools};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use uuid::Uuid;

use crate::{customers, hints, lock, placement};

/// One readiness check per shard, named `postgres:<shard>`.
pub fn shard_checks(pools: &ShardPools) -> Vec<Check> {
    pools.all().map(|(name, pool)| Check::postgres(format!("postgres:{name}"), pool.clone())).collect()
}

/// What every handler shares. The shard map, the live placement and the pools are the only way
/// to a database.
#[derive(Clone)]
pub struct AppState {
    /// `shards.toml`: regions, shards and their connections (the desired placement).
    pub shards: Arc<ShardMap>,
    /// The live placement requests route by.
    pub placement: placement::LivePlacement,
    pub pools: ShardPools,
    pub verifier: Verifier,
    /// accounts over gRPC (a lazily connected channel).
    pub accounts: AccountsServiceClient<Channel>,
    pub lock: lock::StockLock,
    /// Which idempotency keys were used lately, so a keyed write looks on other shards only
    /// when its key may be there.
    pub hints: hints::Hints,
    /// Customers accounts confirmed lately, so an order need not ask again within the TTL.
    pub customers: Arc<customers::CustomerCache>,
    pub max_per_order: i32,
    /// How long a PENDING order holds its tickets.
    pub reservation_ttl: Duration,
}

impl FromRef<AppState> for Verifier {
    fn from_ref(state: &AppState) -> Self {
        state.verifier.clone()
    }
}

impl AppState {
    /// Parses an id from a path: malformed → 400 naming `what`, an id this system never handed
    /// out → 404. Routing happens per attempt ([`crate::shard`]), by the map in force then.
    pub fn parse_id(&self, raw: &str, what: &str) -> Result<Uuid, ApiError> {
        shard_router::ids::parse(raw).map(|(id, _)| id).map_err(|e| match e {
            shard_router::ids::IdError::Malformed => {
                ApiError::field("id", format!("`{}` is not a valid {what} id", platform::error::shown(raw)))
            }
            shard_router::ids::IdError::NotRoutable => ApiError::NotFound(format!("no {what} with id {raw}")),
        })
    }

    /// The region a request body names: required, and one of the shard map's (the message
    /// names the known ones).
    pub fn required_region(&self, raw: Option<&str>) -> Result<shard_router::RegionName, String> {
        match raw.map(str::trim) {
            None | Some("") => Err("is required".to_owned()),
            Some(r) => self.shards.parse_region(r).map(|r| r.name.clone()),
        }
    }

    pub fn pool(&self, shard: &ShardName) -> Result<&PgPool, ApiError> {
        self.pools.get(shard).ok_or_else(|| ApiError::internal(anyhow::anyhow!("no pool for shard {shard}")))
    }

    /// A database error on `shard`: a shard that cannot be reached is a retryable 503 naming
    /// the region, while the other regions keep working; anything else is internal.
    pub fn shard_error(&self, shard: &ShardName, region: &shard_router::RegionName, e: sqlx::Error) -> ApiError {
        if platform::error::db_unavailable(&e) {
            metrics::counter!("orders_shard_unavailable_total", "shard" => shard.to_string()).increment(1);
            ApiError::Unavailable {
                message: format!("region {region} is temporarily unavailable (shard {shard}); retry shortly"),
                retry_after_secs: 2,
            }
        } else {
            ApiError::internal(e)
        }
    }
}

/// A key the router refuses although it came from the router itself (a region parsed against the
/// same shard map): a bug, not a client error.
pub fn routing_bug(e: RouteError) -> ApiError {
    ApiError::internal(anyhow::anyhow!("routing: {e}"))
}

/// Publishes each shard pool's busy and idle connections every few seconds until `stop`.
pub(crate) async fn report_pool_usage(pools: ShardPools, stop: CancellationToken) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            _ = tick.tick() => {}
        }
        for (shard, pool) in pools.all() {
            let (size, idle) = (pool.size(), u32::try_from(pool.num_idle()).unwrap_or(u32::MAX));
            let labels = [("shard", shard.to_string())];
            metrics::gauge!("orders_shard_pool_busy_connections", &labels).set(f64::from(size.saturating_sub(idle)));
            metrics::gauge!("orders_shard_pool_idle_connections", &labels).set(f64::from(idle));
        }
    }
}
