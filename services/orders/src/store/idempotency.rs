//! `idempotency_keys`: one record per owner, operation and key, on the shard of the data it
//! guards (its `partition` moves with that data).

use serde_json::Value;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::domain::IdempotencyKey;
use shard_router::Partition;

/// Who asks under which key: the record's primary key.
#[derive(Debug, Clone, Copy)]
pub struct KeyOf<'a> {
    pub owner: Uuid,
    pub operation: &'a str,
    pub key: &'a IdempotencyKey,
}

/// A record already there: the hash of the request that made it and the answer it got.
#[derive(Debug, sqlx::FromRow)]
pub struct Stored {
    pub request_hash: Vec<u8>,
    pub status_code: i16,
    pub response: Value,
}

/// Inserts a blank record for `at` (status 0 until [`record`]), or returns the one there: a
/// concurrent claim of the same key waits here on the primary key until the first commits or
/// rolls back.
pub async fn claim(
    tx: &mut PgConnection,
    at: KeyOf<'_>,
    request_hash: &[u8],
    partition: Partition,
) -> Result<Option<Stored>, sqlx::Error> {
    let claimed = sqlx::query(
        "insert into idempotency_keys (owner_id, operation, key, request_hash, status_code, response, partition) \
         values ($1, $2, $3, $4, 0, '{}', $5) on conflict do nothing",
    )
    .bind(at.owner)
    .bind(at.operation)
    .bind(at.key.as_str())
    .bind(request_hash)
    .bind(partition)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 1 {
        return Ok(None);
    }
    sqlx::query_as(
        "select request_hash, status_code, response from idempotency_keys \
         where owner_id = $1 and operation = $2 and key = $3",
    )
    .bind(at.owner)
    .bind(at.operation)
    .bind(at.key.as_str())
    .fetch_one(tx)
    .await
    .map(Some)
}

/// Stores the answer of a fresh claim, in the same transaction as the work.
pub async fn record(tx: &mut PgConnection, at: KeyOf<'_>, status: i16, response: &Value) -> Result<(), sqlx::Error> {
    sqlx::query("update idempotency_keys set status_code = $4, response = $5 where owner_id = $1 and operation = $2 and key = $3")
        .bind(at.owner)
        .bind(at.operation)
        .bind(at.key.as_str())
        .bind(status)
        .bind(response)
        .execute(tx)
        .await
        .map(drop)
}

/// The answered record for `at` on one shard's `pool`, if any (a blank claim is not one).
pub async fn answered(pool: &PgPool, at: KeyOf<'_>) -> Result<Option<Stored>, sqlx::Error> {
    sqlx::query_as(
        "select request_hash, status_code, response from idempotency_keys \
         where owner_id = $1 and operation = $2 and key = $3 and status_code <> 0",
    )
    .bind(at.owner)
    .bind(at.operation)
    .bind(at.key.as_str())
    .fetch_optional(pool)
    .await
}
