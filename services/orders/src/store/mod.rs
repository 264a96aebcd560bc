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

use sqlx::postgres::PgRow;
use sqlx::{FromRow, PgPool};
use uuid::Uuid;

/// A row read by id with whether the shard it came from serves its partition now: a row a move
/// left behind (or is copying in) is not served from here.
#[derive(Debug, sqlx::FromRow)]
pub struct Readable<T> {
    #[sqlx(flatten)]
    pub row: T,
    pub readable: bool,
}

/// The row `id` of `from` (a table, with the alias `columns` use), with whether this shard
/// serves its partition now.
async fn readable_by_id<T>(
    pool: &PgPool,
    columns: &str,
    from: &str,
    id: Uuid,
) -> Result<Option<Readable<T>>, sqlx::Error>
where
    T: for<'r> FromRow<'r, PgRow> + Send + Unpin,
{
    sqlx::query_as(&format!(
        "select {columns}, partition_readable(region, partition) as readable from {from} where id = $1"
    ))
    .bind(id)
    .fetch_optional(pool)
    .await
}
