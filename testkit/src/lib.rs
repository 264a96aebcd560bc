//! Test support for Ticket Hub's integration tests: real Postgres, Redis and Kafka, isolated
//! per test.
//!
//! Every test gets fresh resources named after a random id, so tests run in parallel against
//! the one local stack (`./dev test` starts it) and leave nothing behind:
//!
//! # Layout
//! - [`stack`]: where the stack's Postgres instances, Redis and broker are (env-overridable).
//! - [`db`]: [`TestDb`], a fresh database with migrations applied, dropped afterwards;
//!   [`TestShards`], one per shard instance, with the matching shard map.
//! - [`redis`]: [`TestRedis`], a pool plus a key prefix whose keys are deleted afterwards.
//! - [`kafka`]: [`TestKafka`], a fresh topic, DLQ topic and consumer group on the running
//!   broker; [`PrivateBroker`], a broker of the test's own that it can stop and restart.
//! - [`postgres`]: [`PrivatePostgres`], an instance of the test's own that it can stop and start.
//! - [`app`]: [`TestApp`], a service started on port 0 with an HTTP client pointed at it,
//!   and the assertions every service must pass on its ops endpoints.
//! - [`process`]: a service binary run as a real process, stopped by SIGTERM or SIGKILL.
//! - [`published`]: committed files generated from the code (the GraphQL schema, the OpenAPI
//!   documents) kept current, and a running service checked against its OpenAPI document.

#![allow(clippy::expect_used, clippy::unwrap_used, reason = "test support: a failed expectation is a failed test")]

pub mod app;
pub mod db;
pub mod kafka;
pub mod postgres;
pub mod process;
pub mod published;
pub mod redis;
pub mod stack;

pub use app::TestApp;
pub use db::{TestDb, TestShards};
pub use kafka::{PrivateBroker, RelayProducer, TestKafka};
pub use postgres::PrivatePostgres;
pub use redis::TestRedis;

/// A short random id for naming a test's resources.
pub fn unique_id() -> String {
    uuid::Uuid::new_v4().simple().to_string()[..12].to_owned()
}

/// Runs async work from `Drop`, where no runtime may be at hand (or the test's runtime is
/// blocked in that very drop): on a thread of its own with a small runtime, waited for. `None`
/// when that runtime could not be made or the work panicked. The work must open its own
/// connections: sockets of the test's runtime would wait forever for it.
pub fn block_on_detached<F, T>(fut: F) -> Option<T>
where
    F: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let handle = std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread().enable_all().build().ok().map(|rt| rt.block_on(fut))
    });
    handle.join().ok().flatten()
}

/// [`block_on_detached`] for a clean-up whose outcome nobody waits for.
pub(crate) fn block_on_cleanup<F>(fut: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    block_on_detached(fut);
}
