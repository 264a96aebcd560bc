//! orders: events, ticket types, orders and payment, each stored on its region's shard.
//!
//! Every database call goes through `shard-router`: the shard map from `shards.toml` and one
//! pool per shard. The outbox relay (`orders-relay`) is a second binary of this crate because
//! it shares the shard map and the outbox schema.
//!
//! # Layout
//! A request goes through three layers: [`http`] parses it into [`domain`] types and answers
//! with [`platform::contract`] types; a service ([`catalog`], [`orders`], [`lifecycle`],
//! [`listing`]) decides; [`store`] holds every statement. Between the last two, [`shard`] is
//! the one place a shard transaction begins (routing, fence, retry on "moved", metrics, and the
//! mapping of a failed statement), and [`idempotency`] the one guard every keyed write runs in.
//!
//! - [`settings`]: [`Settings`], durations typed, validated before anything starts.
//! - [`state`]: [`AppState`], what every handler shares, and its helpers (path ids, regions,
//!   pools, the shard-unavailable answer).
//! - [`Application`]: the orders HTTP service, wired here.
//! - [`http`]: the routes, one module per resource (catalog, orders), documented in OpenAPI
//!   ([`openapi`]).
//! - [`domain`]: request input parsed once (cents, quantities, texts, timestamps, keys, new
//!   events and orders).
//! - [`catalog`]: events (concerts) and their ticket types, created on their region's shard,
//!   read by id. Named so that "event" in this crate means one thing: an `OrderEvent` on the
//!   outbox.
//! - [`orders`]: order creation, one transaction on the event's shard, and reading an order.
//!   [`customers`]: the customer check's short-lived positive cache.
//!   [`lock`]: the Redis stock lock that spaces out contention (the database guard is what
//!   prevents overselling).
//! - [`lifecycle`]: pay, cancel, and the sweeper that cancels expired reservations.
//! - [`listing`]: reads that span shards (events, a customer's orders), fanned out by name.
//! - [`store`]: the SQL, one module per aggregate, typed rows, `sqlx::Error` only.
//! - [`idempotency`]: `Idempotency-Key` parsing and the guard (claim → work → record → commit);
//!   [`hints`]: the Redis hints that let a keyed write skip looking for its key on other shards.
//! - [`placement`]: the live partition → shard map this process routes by, and how it follows
//!   changes; [`shard`]: the one place a shard transaction begins.
//! - [`relay`]: the outbox relay process.
//! - [`rebalance`]: `orders-rebalance`, the tool that carries a changed `shards.toml` out.

pub mod catalog;
pub mod customers;
pub mod domain;
pub mod hints;
pub mod http;
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
pub mod state;
pub mod store;

use std::sync::Arc;
use std::time::Duration;

use platform::auth::JwksVerifier;
use platform::http::Server;
use platform::ops::{Check, Readiness};
use proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use shard_router::{LiveStore, ShardMap, ShardPools};
use tokio_util::sync::CancellationToken;
use tonic::transport::Endpoint;

pub use settings::Settings;
pub use state::{AppState, routing_bug, shard_checks};

pub const SERVICE: &str = "orders";

/// The OpenAPI document this service serves at `/openapi.json` (and `openapi/orders.json`
/// holds), built without starting anything.
pub fn openapi() -> utoipa::openapi::OpenApi {
    platform::openapi::document(http::routes(), &http::API)
}

pub struct Application {
    http: Server,
    pools: ShardPools,
    placement: placement::LivePlacement,
    settings: Settings,
    state: AppState,
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
        let verifier = JwksVerifier::for_service(
            &settings.accounts_jwks_url,
            &settings.token_issuer,
            &settings.token_audience,
            settings.jwks_min_refresh,
        )?;
        let state = AppState {
            shards,
            placement: placement.clone(),
            pools,
            verifier: Arc::new(verifier),
            accounts: AccountsServiceClient::new(channel),
            hints: hints::Hints::new(
                redis.clone(),
                settings.redis_key_prefix.clone(),
                settings.idempotency_hint_window,
            ),
            lock: lock::StockLock {
                pool: redis,
                prefix: settings.redis_key_prefix.clone(),
                ttl: settings.lock_ttl,
                wait: settings.lock_wait,
            },
            customers: Arc::new(customers::CustomerCache::new(
                settings.customer_cache_ttl,
                settings.customer_cache_max_entries,
            )),
            max_per_order: settings.max_quantity_per_order,
            reservation_ttl: settings.reservation_ttl,
        };
        let pools_for_metrics = state.pools.clone();
        let readiness = {
            let placement = placement.clone();
            Readiness::new(checks).with_note("placement", move || placement.describe())
        };
        let routes = http::routes()
            .layer(axum::middleware::from_fn_with_state(settings.request_timeout, platform::http::deadline))
            .with_state(state.clone());
        let http = Server::bind(settings.http_addr, platform::openapi::app(routes, readiness, &http::API)).await?;
        Ok(Self { http, pools: pools_for_metrics, placement, settings, state })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tokio::spawn(state::report_pool_usage(self.pools, shutdown.clone()));
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
