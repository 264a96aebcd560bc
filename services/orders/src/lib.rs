//! orders: events, ticket types, orders and payment, each stored on its region's shard.
//!
//! Every database call goes through `shard-router`: the shard map from `shards.toml` and one
//! pool per shard. The outbox relay (`orders-relay`) is a second binary of this crate because
//! it shares the shard map and the outbox schema.
//!
//! # Layout
//! - [`settings`]: [`Settings`], durations typed, validated before anything starts.
//! - [`Application`]: the orders HTTP service.
//! - [`domain`]: request input parsed once (cents, quantities, texts, timestamps, keys).
//! - [`catalog`]: events (concerts) and their ticket types, created on their region's shard,
//!   read by id. Named so that "event" in this crate means one thing: an `OrderEvent` on the
//!   outbox.
//! - [`idempotency`]: `Idempotency-Key` records, and the one guard (claim → work → record)
//!   every keyed write runs inside its shard transaction.
//! - [`listing`]: reads that span shards (events, a customer's orders), fanned out by name.
//! - [`orders`]: order creation, one transaction on the event's shard. [`lock`]: the Redis
//!   stock lock that spaces out contention (the database guard is what prevents overselling).
//! - [`lifecycle`]: pay, cancel, and the sweeper that cancels expired reservations.
//! - [`relay`]: the outbox relay process.
//! - [`placement`]: the live partition → shard map this process routes by, and how it follows
//!   changes; [`shard`]: the one place a shard transaction begins (fence, retry on "moved",
//!   metrics).
//! - [`rebalance`]: `orders-rebalance`, the tool that carries a changed `shards.toml` out.

pub mod catalog;
pub mod domain;
pub mod idempotency;
pub mod lifecycle;
pub mod listing;
pub mod lock;
pub mod orders;
pub mod placement;
pub mod rebalance;
pub mod relay;
pub mod settings;
pub mod shard;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRef;
use platform::auth::{JwksVerifier, TokenPolicy, Verifier};
use platform::error::ApiError;
use platform::http::Server;
use platform::ops::{Check, Readiness};
use proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use shard_router::{LiveStore, Route, RouteError, ShardMap, ShardName, ShardPools};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};
use uuid::Uuid;

pub use settings::Settings;

pub const SERVICE: &str = "orders";

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
    /// out → 404. Routing happens per attempt ([`shard`]), by the map in force then.
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

pub struct Application {
    http: Server,
    pools: ShardPools,
    placement: placement::LivePlacement,
    settings: Settings,
    state: AppState,
}

/// Publishes each shard pool's busy and idle connections every few seconds until `stop`.
async fn report_pool_usage(pools: ShardPools, stop: CancellationToken) {
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

/// Records how long a shard transaction took, by region, shard and operation.
pub fn observe_tx(route: &Route, operation: &'static str, started: std::time::Instant) {
    let labels =
        [("region", route.region.to_string()), ("shard", route.shard.to_string()), ("operation", operation.to_owned())];
    metrics::histogram!("orders_shard_transaction_seconds", &labels).record(started.elapsed().as_secs_f64());
}

impl Application {
    /// Builds the service on an already loaded shard map (tests pass one pointing at fresh
    /// databases).
    pub async fn build(settings: Settings, shards: ShardMap) -> anyhow::Result<Self> {
        settings.validate()?;
        let pools = ShardPools::connect_lazy(&shards, settings.shard_acquire_timeout)?;
        let redis = platform::redis::pool_lazy(&settings.redis_url, 32, Duration::from_secs(2))?;
        let shards = Arc::new(shards);
        let store = LiveStore::connect_lazy(&settings.placement_url, settings.shard_acquire_timeout)?;
        let placement = placement::LivePlacement::start(store.clone(), shards.clone(), pools.clone()).await?;
        let mut checks = shard_checks(&pools);
        checks.push(Check::redis("redis", redis.clone()));
        checks.push(Check::postgres("postgres:placement", store.pool().clone()));
        let timeout = settings.accounts_timeout;
        let channel = Endpoint::from_shared(settings.accounts_grpc_url.clone())?
            .connect_timeout(timeout)
            .timeout(timeout)
            .connect_lazy();
        let policy = TokenPolicy { issuer: settings.token_issuer.clone(), audience: settings.token_audience.clone() };
        let verifier = JwksVerifier::new(
            settings.accounts_jwks_url.clone(),
            reqwest::Client::builder().timeout(Duration::from_secs(3)).build()?,
            policy,
            settings.jwks_min_refresh,
        );
        let state = AppState {
            shards,
            placement: placement.clone(),
            pools,
            verifier: Arc::new(verifier),
            accounts: AccountsServiceClient::new(channel),
            lock: lock::StockLock {
                pool: redis,
                prefix: settings.redis_key_prefix.clone(),
                ttl: settings.lock_ttl,
                wait: settings.lock_wait,
            },
            max_per_order: settings.max_quantity_per_order,
            reservation_ttl: settings.reservation_ttl,
        };
        let pools_for_metrics = state.pools.clone();
        let readiness = {
            let placement = placement.clone();
            Readiness::new(checks).with_note("placement", move || placement.describe())
        };
        let routes = catalog::router(state.clone())
            .merge(listing::router(state.clone()))
            .merge(placement::router(state.clone()))
            .merge(orders::router(state.clone()))
            .merge(lifecycle::router(state.clone()))
            .layer(axum::middleware::from_fn_with_state(settings.request_timeout, platform::http::deadline));
        let http = Server::bind(settings.http_addr, platform::http::app(routes, readiness)).await?;
        Ok(Self { http, pools: pools_for_metrics, placement, settings, state })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(port = self.port(), "orders listening");
        tokio::spawn(report_pool_usage(self.pools, shutdown.clone()));
        tokio::spawn(lifecycle::sweep(
            self.state,
            self.settings.expiry_sweep_interval,
            self.settings.expiry_sweep_batch,
            shutdown.clone(),
        ));
        if self.settings.placement_follow {
            tokio::spawn(self.placement.follow(self.settings.placement_poll, shutdown.clone()));
        }
        self.http.run(shutdown).await?;
        Ok(())
    }
}
