//! Idempotency records: a key is claimed inside the same transaction as the change it guards,
//! so a concurrent duplicate blocks on the record's primary key until the first commits (then
//! replays its answer) or rolls back (then proceeds as the first). The statements are in
//! [`crate::store::idempotency`]; what a record means for the request is decided here.
//!
//! A replay serves the stored body as it was stored (a JSON value, whatever release wrote it),
//! never re-read into today's types, so an answer given once is given the same way again.

use axum::http::HeaderMap;
use platform::code;
use platform::error::ApiError;
use serde::Serialize;
use serde_json::Value;
use sqlx::PgConnection;
use uuid::Uuid;

use crate::AppState;
use crate::domain::IdempotencyKey;
use crate::hints::Lookup;
use crate::shard::{ShardTx, WorkError};
use crate::store::idempotency::{self as store, KeyOf, Stored};

/// The status every fresh keyed answer has: the keyed writes are creations.
const CREATED: i16 = 201;

/// How the OpenAPI document shows the header [`key`] reads (the handlers take the headers
/// whole, so the key is parsed after the caller's role is checked).
#[derive(Debug, utoipa::IntoParams)]
#[into_params(parameter_in = Header)]
#[allow(dead_code, reason = "documents the header; `key` reads it")]
pub struct IdempotencyKeyHeader {
    /// Makes the request safe to retry: the same key with the same request (and caller) gets
    /// the first answer again, with another request a 422. 1 to 255 visible ASCII characters;
    /// `x-idempotency-key` is read too.
    #[param(rename = "Idempotency-Key", value_type = String, required = false, pattern = "^[!-~]{1,255}$",
        example = "2f6e1c1e-checkout-1")]
    idempotency_key: Option<String>,
}

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

/// How a keyed write ended: done now (a 201 with `T`), or answered before (the stored status
/// and body, served as stored).
#[derive(Debug)]
pub enum Answer<T> {
    Fresh(T),
    Replay { status: u16, body: Value },
}

/// The stored answer to replay for a request hashing to `request_hash`; the same key with
/// another request is a 422.
fn replay<T>(stored: Stored, request_hash: &[u8]) -> Result<Answer<T>, ApiError> {
    if stored.request_hash != request_hash {
        return Err(ApiError::Unprocessable {
            code: code::IDEMPOTENCY_KEY_REUSED,
            message: "this Idempotency-Key was used with a different request".into(),
            details: None,
        });
    }
    Ok(Answer::Replay { status: u16::try_from(stored.status_code).unwrap_or(201), body: stored.response })
}

/// Who sends a keyed write: the key's owner, the operation, the key (none: the write is not
/// guarded) and the hash of the request it came with.
pub struct Guard<'a> {
    pub owner: Uuid,
    pub operation: &'static str,
    pub key: Option<&'a IdempotencyKey>,
    pub request_hash: &'a [u8],
}

impl Guard<'_> {
    fn at<'k>(&self, key: &'k IdempotencyKey) -> KeyOf<'k> {
        KeyOf { owner: self.owner, operation: self.operation, key }
    }

    /// The idempotency guard, written once for every keyed write: claim the key in `stx`, run
    /// `work` when the claim is fresh, record its answer and commit, all in that one
    /// transaction; or hand back the stored answer on a replay (nothing to commit).
    pub async fn run<T: Serialize>(
        &self,
        mut stx: ShardTx,
        work: impl AsyncFnOnce(&mut PgConnection) -> Result<T, WorkError>,
    ) -> Result<Answer<T>, WorkError> {
        let partition = stx.partition;
        if let Some(key) = self.key
            && let Some(stored) = store::claim(stx.conn(), self.at(key), self.request_hash, partition).await?
        {
            let answer = replay(stored, self.request_hash)?;
            metrics::counter!("orders_idempotent_replays_total", "operation" => self.operation).increment(1);
            return Ok(answer);
        }
        let body = work(stx.conn()).await?;
        if let Some(key) = self.key {
            let json = serde_json::to_value(&body).map_err(ApiError::internal)?;
            store::record(stx.conn(), self.at(key), CREATED, &json).await?;
        }
        stx.tx.commit().await?;
        Ok(Answer::Fresh(body))
    }

    /// Writes the key's Redis hint, before the write's transaction (a keyed write that skipped
    /// this would break what the hints promise, see [`crate::hints`]), and says whether
    /// [`Guard::seen_elsewhere`] must look on the other shards. A separate step so a caller
    /// can overlap its round trip with another (the order's stock lock).
    pub async fn note(&self, state: &AppState) -> Lookup {
        match self.key {
            Some(key) => state.hints.note(self.at(key)).await,
            None => Lookup::Skip,
        }
    }

    /// Looks for the key on every shard but `home` (an explicit fan-out, only for keyed
    /// requests): a key's record lives with the data it guarded, so the same key sent with a
    /// body that lands on another shard (another region, another event) is only seen there. A
    /// shard that cannot answer is skipped: this check must not take a healthy region down. Two
    /// concurrent requests with one key landing on different shards can still both proceed;
    /// that window is left open (it needs a client sending one key with two different bodies
    /// at once).
    ///
    /// `noted` is what [`Guard::note`] said, which must have run before the write's
    /// transaction: the fan-out is skipped when the hints say the key was not used within the
    /// window ([`crate::hints`]); Redis unavailable means the fan-out, as without hints.
    /// `orders_idempotency_lookups_total` counts each outcome and its reason.
    pub async fn seen_elsewhere<T>(
        &self,
        state: &AppState,
        home: &shard_router::ShardName,
        noted: Lookup,
    ) -> Result<Option<Answer<T>>, ApiError> {
        let Some(key) = self.key else { return Ok(None) };
        let at = self.at(key);
        let (outcome, reason) = match noted {
            Lookup::Skip => ("skipped", "no_hint"),
            Lookup::Needed(reason) => ("performed", reason),
        };
        metrics::counter!("orders_idempotency_lookups_total", "operation" => self.operation, "outcome" => outcome,
            "reason" => reason)
        .increment(1);
        if outcome == "skipped" {
            return Ok(None);
        }
        let lookups = state
            .pools
            .all()
            .filter(|(name, _)| *name != home)
            .map(|(name, pool)| async move { (name, store::answered(pool, at).await) });
        for (shard, row) in futures::future::join_all(lookups).await {
            match row {
                Ok(Some(stored)) => return replay(stored, self.request_hash).map(Some),
                Ok(None) => {}
                Err(e) => tracing::warn!(%shard, error = %e, "idempotency check skipped an unavailable shard"),
            }
        }
        Ok(None)
    }
}
