//! What every Ticket Hub service needs, written once.
//!
//! A service's `main.rs` is a few lines because of this crate: load [`settings`], start
//! [`telemetry`], build the app, mount the [`ops`] endpoints, and [`shutdown`] on a signal.
//!
//! # Layout
//! - [`settings`]: figment layering (defaults → service TOML → `TICKET_HUB_<SERVICE>__*` env);
//!   [`cli`]: the `--config FILE` flag every binary shares.
//! - [`telemetry`]: JSON logs through `tracing`, and OpenTelemetry traces over OTLP when the
//!   `OTEL_*` variables name a collector. [`trace_context`]: the W3C `traceparent` carried
//!   across HTTP, gRPC, Kafka and the outbox, next to the correlation id.
//! - [`metrics`]: the process-wide Prometheus recorder.
//! - [`ops`]: `/healthz`, `/readyz` (dependency checks), `/metrics`.
//! - [`correlation`]: the `x-correlation-id` carried across HTTP, gRPC and Kafka.
//! - [`error`]: the one API error enum and its mapping to HTTP (and gRPC with `grpc`), and the
//!   one decision that a database is unavailable. [`code`]: the error codes services share.
//! - [`http`]: serving with graceful shutdown, and a JSON extractor with clear 4xx errors.
//!   [`openapi`]: the OpenAPI 3.1 document a service's handlers describe, served at
//!   `/openapi.json`, and the error answers every document shares.
//! - [`events`]: the Kafka event contracts of `orders.events`. [`contract`]: the HTTP contract
//!   of the orders API (bodies, order status, cursors) and the user [`contract::Role`], shared by
//!   orders and the gateway (GraphQL types with feature `graphql`); [`contract::read_models`]:
//!   the projector's read API, shared by the projector, the gateway and the audit.
//! - [`db`]: database creation and migrations. [`redis`]: the Redis pool. [`kafka`]: admin
//!   and readiness for the broker (feature `kafka`).
//! - [`consumer`]: the one Kafka consumer runtime: lease, checkpoints with the effects,
//!   batches, DLQ, watchdog (feature `kafka`).
//! - [`parse`]: client values every service reads (UUIDs).
//! - [`shutdown`]: one cancellation token fired by SIGTERM or Ctrl-C.
//! - [`auth`]: roles, token claims, and verification against the accounts JWKS (feature `auth`).

#[cfg(feature = "auth")]
pub mod auth;
pub mod cli;
pub mod code;
#[cfg(feature = "kafka")]
pub mod consumer;
pub mod contract;
pub mod correlation;
pub mod db;
pub mod error;
pub mod events;
pub mod http;
#[cfg(feature = "kafka")]
pub mod kafka;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod parse;
pub mod redis;
pub mod settings;
pub mod shutdown;
pub mod telemetry;
pub mod trace_context;
