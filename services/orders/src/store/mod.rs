//! Every SQL statement of the orders HTTP service, one module per aggregate, each returning
//! typed rows (the [`platform::contract`] types where the API shows a row as it is) and
//! `sqlx::Error`, never an HTTP error: what a failed statement means is decided once, by the
//! shard it ran on ([`crate::shard::WorkError::Db`]), and what a result means by the services.
//!
//! Writes take the connection of a transaction begun by [`crate::shard`] (routed, fenced,
//! timed); reads take the pool of the shard a read was routed to.
//!
//! # Layout
//! - [`catalog`]: events and their ticket types.
//! - [`orders`]: orders, their stock, their outbox rows, and the expiry sweeper's queries.
//! - [`idempotency`]: `Idempotency-Key` records.

pub mod catalog;
pub mod idempotency;
pub mod orders;

/// A row read by id with whether the shard it came from serves its partition now: a row a move
/// left behind (or is copying in) is not served from here.
#[derive(Debug, sqlx::FromRow)]
pub struct Readable<T> {
    #[sqlx(flatten)]
    pub row: T,
    pub readable: bool,
}
