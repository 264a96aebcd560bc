//! gateway: the one entry point for clients.
//!
//! GraphQL at `/graphql` (GraphiQL on GET, its assets from the binary) over the accounts and
//! orders HTTP APIs, with a Redis cache-aside in front of the event reads. The gateway owns no
//! data: it parses arguments, forwards the caller's token, idempotency key and correlation id,
//! and maps every service answer to a GraphQL result or an error with `extensions.code`.
//!
//! # Layout
//! - [`Settings`] / [`Application`]: the service.
//! - [`http`]: the `/graphql` handler (body limit, document limits, timeout, request scope,
//!   response extensions).
//! - [`graphiql`]: the GraphiQL page and its scripts, from the binary itself (no CDN).
//! - [`limits`]: what a document may cost (fields with fragments expanded, nesting, fragment
//!   cycles, mutation fields), checked before the engine's validation walks it.
//! - [`schema`]: queries, mutations, the per-request [`schema::Scope`] (current user resolved
//!   once, event DataLoader) and [`schema::types`] (the GraphQL types, `Region` scalar).
//! - [`downstream`]: the pooled HTTP client and what every downstream call carries.
//! - [`cache`]: Redis cache-aside with generation keys; degrades to direct reads.
//! - [`error`]: the one error enum, mapped from service answers and to GraphQL codes.

pub mod cache;
pub mod downstream;
pub mod error;
pub mod graphiql;
pub mod http;
pub mod limits;
pub mod schema;
pub mod settings;

use std::sync::Arc;

use platform::http::Server;
use platform::ops::{Check, Readiness};
use shard_router::ShardMap;
use tokio_util::sync::CancellationToken;

pub use settings::Settings;

pub const SERVICE: &str = "gateway";

pub struct Application {
    http: Server,
}

impl Application {
    /// Builds the gateway on a loaded shard map (whose region names it serves); binds the
    /// listener, connects nothing yet.
    pub async fn build(settings: Settings, shards: ShardMap) -> anyhow::Result<Self> {
        settings.validate()?;
        let downstream = downstream::Downstream::new(
            [&settings.accounts_url, &settings.orders_url, &settings.projector_url],
            settings.downstream_timeout,
            settings.downstream_max_idle_per_host,
        )?;
        let redis_timeout = settings.redis_timeout;
        let redis = platform::redis::pool_lazy(&settings.redis_url, settings.redis_pool_size, redis_timeout)?;
        let cache = cache::Cache::new(
            redis,
            &settings.redis_key_prefix,
            settings.cache_ttl.as_secs(),
            redis_timeout,
            settings.redis_retry,
        );
        // Redis is left out on purpose: without it the gateway serves every query (uncached),
        // so its outage must not take the gateway out of rotation. So is the projector: only
        // the read-model queries need it, and they say so when it is away.
        let readiness = Readiness::new(vec![
            Check::http(
                "accounts",
                downstream.client(),
                format!("{}/healthz", downstream.base(downstream::Service::Accounts)),
            ),
            Check::http(
                "orders",
                downstream.client(),
                format!("{}/healthz", downstream.base(downstream::Service::Orders)),
            ),
        ]);
        let gateway = Arc::new(schema::Gateway::new(downstream, cache, &shards));
        let schema = schema::build(gateway.clone(), settings.max_query_depth, settings.max_query_complexity);
        let limits = limits::Limits {
            max_fields: settings.max_query_complexity,
            max_mutation_fields: settings.max_mutation_fields,
        };
        let introspection = schema::build_introspection(gateway.clone(), settings.max_query_complexity);
        let routes = http::router(http::AppState {
            schema,
            introspection,
            gateway,
            max_body_bytes: settings.max_body_bytes,
            limits,
            request_timeout: settings.request_timeout,
        });
        let http = Server::bind(settings.http_addr, platform::http::app(routes, readiness)).await?;
        Ok(Self { http })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        self.http.run(shutdown).await?;
        Ok(())
    }
}
