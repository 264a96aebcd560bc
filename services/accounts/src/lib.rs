//! accounts: the global user directory and token issuer.
//!
//! Users live in the `accounts` database on the global Postgres instance (not sharded: a user
//! buys in every region). Accounts signs EdDSA access tokens and publishes the public key as a
//! JWKS, so the gateway and orders verify tokens locally; other services look users up over
//! gRPC.
//!
//! # Layout
//! - [`settings`]: figment-loaded configuration.
//! - [`domain`]: `Email`, `UserName`, `Password`, `UserId`, signup roles — input parsed once.
//! - [`keys`]: the Ed25519 signing key, token issuance, the JWKS document.
//! - [`password`]: argon2id hashing off the async threads.
//! - [`repo`]: the `users` table. [`throttle`]: failed-login limits in Redis.
//! - [`http`]: signup, login, me, JWKS, documented in OpenAPI ([`openapi`]). [`grpc`]:
//!   `GetUserById` and the health service.
//! - [`cli`]: `serve`, `create-admin`, `gen-key`.
//! - [`Application`]: binds both listeners (`build`) apart from serving (`run_until_stopped`),
//!   so tests start the real service on port 0.

pub mod cli;
pub mod domain;
pub mod grpc;
pub mod http;
pub mod keys;
pub mod password;
pub mod repo;
pub mod settings;
pub mod throttle;

use std::sync::Arc;
use std::time::Duration;

use platform::http::Server;
use platform::ops::{Check, Readiness};
use proto::accounts::v1::accounts_service_server::AccountsServiceServer;
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

pub use settings::Settings;

pub const SERVICE: &str = "accounts";

/// The OpenAPI document this service serves at `/openapi.json` (and `openapi/accounts.json`
/// holds), built without starting anything.
pub fn openapi() -> utoipa::openapi::OpenApi {
    platform::openapi::document(http::routes(), &http::API)
}

pub struct Application {
    http: Server,
    grpc: TcpListener,
    grpc_port: u16,
    grpc_service: grpc::Accounts,
}

impl Application {
    /// Loads the signing key (refusing to start without one), prepares pools that connect on
    /// first use, and binds both listeners.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let keys = Arc::new(keys::SigningKeys::from_settings(&settings.jwt)?);
        let db = sqlx::postgres::PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(settings.db_acquire_timeout)
            .connect_lazy(&settings.database_url)?;
        let redis = platform::redis::pool_lazy(&settings.redis_url, 16, Duration::from_secs(1))?;
        let state = http::AppState {
            db: db.clone(),
            hasher: password::Hasher::new(&settings.argon2).await?,
            verifier: Arc::new(keys.verifier()?),
            keys,
            throttle: throttle::Throttle::new(
                redis.clone(),
                settings.redis_key_prefix.clone(),
                settings.login_throttle.clone(),
            ),
        };
        let readiness = Readiness::new(vec![Check::postgres("postgres", db.clone()), Check::redis("redis", redis)]);
        let app = platform::openapi::app(http::routes().with_state(state), readiness, &http::API);
        let http = Server::bind(settings.http_addr, app).await?;
        let grpc = TcpListener::bind(settings.grpc_addr).await?;
        let grpc_port = grpc.local_addr()?.port();
        Ok(Self { http, grpc, grpc_port, grpc_service: grpc::Accounts { db } })
    }

    pub fn port(&self) -> u16 {
        self.http.port()
    }

    pub fn grpc_port(&self) -> u16 {
        self.grpc_port
    }

    /// Serves HTTP and gRPC until `shutdown` is cancelled; either failing stops both.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        let (reporter, health) = tonic_health::server::health_reporter();
        reporter.set_serving::<AccountsServiceServer<grpc::Accounts>>().await;
        tracing::info!(grpc_port = self.grpc_port, "gRPC listening");
        let grpc_shutdown = shutdown.clone();
        let grpc = tonic::transport::Server::builder()
            .add_service(health)
            .add_service(AccountsServiceServer::new(self.grpc_service))
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.grpc), grpc_shutdown.cancelled_owned());
        let http = self.http.run(shutdown.clone());
        let result = tokio::try_join!(async { http.await.map_err(anyhow::Error::from) }, async {
            grpc.await.map_err(anyhow::Error::from)
        });
        shutdown.cancel();
        result.map(drop)
    }
}
