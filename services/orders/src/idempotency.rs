//! Idempotency records: a key is claimed inside the same transaction as the change it guards,
//! so a concurrent duplicate blocks on the record's primary key until the first commits (then
//! replays its answer) or rolls back (then proceeds as the first).

use axum::http::HeaderMap;
use platform::code;
use platform::error::ApiError;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::domain::IdempotencyKey;
use crate::shard::WorkError;

/// The request's `Idempotency-Key` (or `x-idempotency-key`), if any.
pub fn key(headers: &HeaderMap) -> Result<Option<IdempotencyKey>, ApiError> {
    let Some(v) = headers.get("idempotency-key").or_else(|| headers.get("x-idempotency-key")) else {
        return Ok(None);
    };
    let raw = v.to_str().map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?;
    IdempotencyKey::parse(raw).map(Some).map_err(|m| ApiError::field("Idempotency-Key", m))
}

/// A stable 64-bit number from the key's owner and text: where keyed data is placed, so a
/// replay reaches the shard holding the record.
pub fn placement_seed(owner: Uuid, key: &IdempotencyKey) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in owner.as_bytes().iter().chain(key.as_str().as_bytes()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

pub enum Claim {
    /// This request owns the key: do the work, then [`record`] the answer.
    Fresh,
    /// An earlier request with the same key and body already answered this.
    Replay(u16, Value),
}

/// Claims `key` for `owner`'s `operation`; the same key with another request hash is a 422.
/// The record carries `partition`, that of the data it guards, so it moves with that data.
pub async fn claim(
    tx: &mut PgConnection,
    owner: Uuid,
    operation: &str,
    key: &IdempotencyKey,
    request_hash: &[u8],
    partition: u16,
) -> Result<Result<Claim, ApiError>, sqlx::Error> {
    let claimed = sqlx::query(
        "insert into idempotency_keys (owner_id, operation, key, request_hash, status_code, response, partition) \
         values ($1, $2, $3, $4, 0, '{}', $5) on conflict do nothing",
    )
    .bind(owner)
    .bind(operation)
    .bind(key.as_str())
    .bind(request_hash)
    .bind(shard_router::live::partition_i16(partition))
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if claimed == 1 {
        return Ok(Ok(Claim::Fresh));
    }
    let (hash, status, response): (Vec<u8>, i16, Value) = sqlx::query_as(
        "select request_hash, status_code, response from idempotency_keys where owner_id = $1 and operation = $2 and key = $3",
    )
    .bind(owner)
    .bind(operation)
    .bind(key.as_str())
    .fetch_one(&mut *tx)
    .await?;
    if hash != request_hash {
        return Ok(Err(ApiError::Unprocessable {
            code: code::IDEMPOTENCY_KEY_REUSED,
            message: "this Idempotency-Key was used with a different request".into(),
            details: None,
        }));
    }
    metrics::counter!("orders_idempotent_replays_total", "operation" => operation.to_owned()).increment(1);
    Ok(Ok(Claim::Replay(u16::try_from(status).unwrap_or(201), response)))
}

/// Stores the answer of a fresh claim, in the same transaction as the work.
pub async fn record(
    tx: &mut PgConnection,
    owner: Uuid,
    operation: &str,
    key: &IdempotencyKey,
    status: u16,
    response: &Value,
) -> Result<(), sqlx::Error> {
    sqlx::query("update idempotency_keys set status_code = $4, response = $5 where owner_id = $1 and operation = $2 and key = $3")
        .bind(owner)
        .bind(operation)
        .bind(key.as_str())
        .bind(i16::try_from(status).unwrap_or(201))
        .bind(response)
        .execute(tx)
        .await
        .map(drop)
}

/// Who sends a keyed write: the key's owner, the operation, the key (none: the write is not
/// guarded) and the hash of the request it came with.
pub struct Guard<'a> {
    pub owner: Uuid,
    pub operation: &'static str,
    pub key: Option<&'a IdempotencyKey>,
    pub request_hash: &'a [u8],
}

/// How a guarded write ended: done now (commit it) or answered before (nothing to commit).
pub enum Answer {
    Fresh(u16, Value),
    Replay(u16, Value),
}

impl Guard<'_> {
    /// The idempotency guard, written once for every keyed write: [`claim`] the key in `tx`,
    /// run `work` when the claim is fresh and [`record`] its answer in the same transaction,
    /// or hand back the stored answer on a replay. `db` maps a database error on the shard.
    pub async fn run(
        &self,
        tx: &mut PgConnection,
        partition: u16,
        db: impl Fn(sqlx::Error) -> WorkError,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<(u16, Value), WorkError>,
    ) -> Result<Answer, WorkError> {
        let Some(key) = self.key else {
            let (status, body) = work(tx).await?;
            return Ok(Answer::Fresh(status, body));
        };
        match claim(tx, self.owner, self.operation, key, self.request_hash, partition).await.map_err(&db)?? {
            Claim::Replay(status, body) => return Ok(Answer::Replay(status, body)),
            Claim::Fresh => {}
        }
        let (status, body) = work(&mut *tx).await?;
        record(tx, self.owner, self.operation, key, status, &body).await.map_err(&db)?;
        Ok(Answer::Fresh(status, body))
    }
}

/// Looks for `key` on every shard but `home` (an explicit fan-out, only for keyed requests): a
/// key's record lives with the data it guarded, so the same key sent with a body that lands on
/// another shard (another region, another event) is only seen there. A shard that cannot
/// answer is skipped: this check must not take a healthy region down. Two concurrent requests
/// with one key landing on different shards can still both proceed; that window is left open
/// (it needs a client sending one key with two different bodies at once).
pub async fn seen_elsewhere(
    state: &crate::AppState,
    home: &shard_router::ShardName,
    owner: Uuid,
    operation: &str,
    key: &IdempotencyKey,
    request_hash: &[u8],
) -> Result<Option<(u16, Value)>, ApiError> {
    let lookups = state.pools.all().filter(|(name, _)| *name != home).map(|(name, pool)| async move {
        let row: Result<Option<(Vec<u8>, i16, Value)>, sqlx::Error> = sqlx::query_as(
            "select request_hash, status_code, response from idempotency_keys \
             where owner_id = $1 and operation = $2 and key = $3 and status_code <> 0",
        )
        .bind(owner)
        .bind(operation)
        .bind(key.as_str())
        .fetch_optional(pool)
        .await;
        (name, row)
    });
    for (shard, row) in futures::future::join_all(lookups).await {
        match row {
            Ok(Some((hash, status, response))) => {
                if hash != request_hash {
                    return Err(ApiError::Unprocessable {
                        code: code::IDEMPOTENCY_KEY_REUSED,
                        message: "this Idempotency-Key was used with a different request".into(),
                        details: None,
                    });
                }
                return Ok(Some((u16::try_from(status).unwrap_or(201), response)));
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(%shard, error = %e, "idempotency check skipped an unavailable shard"),
        }
    }
    Ok(None)
}
