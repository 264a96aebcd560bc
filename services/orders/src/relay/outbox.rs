//! The outbox table as the relay sees it: every statement the relay runs, in one place.
//!
//! Claims and marks run on the relay's lease connection, so a relay whose connection (and
//! with it the lease) is gone cannot go on claiming: its next statement fails.

use chrono::{DateTime, Utc};
use shard_router::Partition;
use sqlx::PgConnection;
use uuid::Uuid;

/// The advisory lock that makes one relay the publisher of a shard's outbox. Advisory locks
/// are per database, so each shard database has its own lease. Two-key form, so `pg_locks`
/// shows it as (classid, objid, objsubid = 2) for `orders-relay status`.
pub const LEASE_KEY: (i32, i32) = (0x7468_7562, 1); // "thub", relay

/// One claimed outbox row.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct OutboxRow {
    pub id: i64,
    pub aggregate_id: Uuid,
    pub event_type: String,
    /// The payload exactly as stored (jsonb rendered as text): what goes on the topic.
    pub payload: String,
    pub correlation_id: Option<String>,
    /// The W3C `traceparent` of the transaction that wrote the row: the parent of the row's
    /// publish span and, through the record's header, of its consumers' spans.
    pub traceparent: Option<String>,
    /// Publish attempts including this one.
    pub attempts: i32,
    /// When the order transaction wrote the row (its `now()`): the start of the publish lag.
    pub created_at: DateTime<Utc>,
    /// A relay had handed this row to the broker and died before recording the outcome: this
    /// publish may be a redelivery.
    pub was_in_flight: bool,
}

/// Tries to take the shard's lease on `conn`; held until released or the session ends.
pub async fn try_lease(conn: &mut PgConnection) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select pg_try_advisory_lock($1, $2)").bind(LEASE_KEY.0).bind(LEASE_KEY.1).fetch_one(conn).await
}

pub async fn release_lease(conn: &mut PgConnection) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_advisory_unlock($1, $2)").bind(LEASE_KEY.0).bind(LEASE_KEY.1).execute(conn).await?;
    Ok(())
}

/// Claims up to `limit` rows ready to publish, in commit order, and marks them in flight.
///
/// - `txid < pg_snapshot_xmin(…)`: only rows whose transaction committed before every
///   transaction still running, so a row is never published ahead of one that commits earlier
///   but later in id order.
/// - a row waits while an earlier row of its aggregate is pending (in backoff, say): one
///   order's events stay in order, and at most one row per aggregate is in a batch.
/// - a row of a partition that moved here waits while the move's hand-off holds it
///   (`outbox_hold`, see [`held`]): the source shard still has the partition's earlier events.
pub async fn claim(conn: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>, sqlx::Error> {
    let mut rows: Vec<OutboxRow> = sqlx::query_as(
        "with ready as (
             select o.id, o.in_flight as was_in_flight
             from outbox o
             where o.status = 'PENDING'
               and o.next_attempt_at <= now()
               and o.txid < pg_snapshot_xmin(pg_current_snapshot())
               and not exists (
                   select 1 from outbox e
                   where e.aggregate_id = o.aggregate_id and e.status = 'PENDING' and e.id < o.id)
               and not exists (
                   select 1 from outbox_hold h where h.partition = o.partition and o.id > h.after_id)
             order by o.id
             limit $1
             for update
         )
         update outbox o set in_flight = true, attempts = o.attempts + 1
         from ready
         where o.id = ready.id
         returning o.id, o.aggregate_id, o.event_type, o.payload::text as payload, o.correlation_id, o.traceparent,
                   o.attempts, o.created_at, ready.was_in_flight",
    )
    .bind(limit)
    .fetch_all(conn)
    .await?;
    rows.sort_unstable_by_key(|r| r.id);
    Ok(rows)
}

/// The partitions this shard's outbox holds back for a move's hand-off, by source shard, each
/// with the source's watermark (`source_upto`).
pub async fn held(conn: &mut PgConnection) -> Result<Vec<(String, Vec<Partition>, Vec<i64>)>, sqlx::Error> {
    sqlx::query_as(
        "select source, array_agg(partition order by partition), array_agg(source_upto order by partition) \
         from outbox_hold group by source",
    )
    .fetch_all(conn)
    .await
}

/// Of `partitions`, those that still have PENDING rows at or below their watermark in this
/// (the source's) outbox: rows written before the move that its relay has not published yet.
pub async fn pending_partitions(
    conn: &mut PgConnection,
    partitions: &[Partition],
    upto: &[i64],
) -> Result<Vec<Partition>, sqlx::Error> {
    sqlx::query_scalar(
        "select p from unnest($1::smallint[], $2::bigint[]) as t(p, upto) \
         where exists (select 1 from outbox o where o.status = 'PENDING' and o.partition = t.p and o.id <= t.upto)",
    )
    .bind(partitions)
    .bind(upto)
    .fetch_all(conn)
    .await
}

/// The outbox's watermark: what a switch records as the source's `source_upto`.
pub async fn watermark(pool: &sqlx::PgPool) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select coalesce(max(id), 0) from outbox").fetch_one(pool).await
}

/// Ends the hand-off of `partitions` from `source`: their rows here are published from now on.
pub async fn release_held(conn: &mut PgConnection, source: &str, partitions: &[Partition]) -> Result<u64, sqlx::Error> {
    let done = sqlx::query("delete from outbox_hold where source = $1 and partition = any($2)")
        .bind(source)
        .bind(partitions)
        .execute(conn)
        .await?;
    Ok(done.rows_affected())
}

/// The broker acknowledged these rows.
pub async fn mark_sent(conn: &mut PgConnection, ids: &[i64]) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("update outbox set status = 'SENT', sent_at = now(), in_flight = false where id = any($1)")
        .bind(ids)
        .execute(conn)
        .await?;
    Ok(())
}

/// A failure that says nothing about the rows (the broker is unreachable): they stay first in
/// line, with the error recorded.
pub async fn release(conn: &mut PgConnection, ids: &[i64], error: &str) -> Result<(), sqlx::Error> {
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query("update outbox set in_flight = false, last_error = $2 where id = any($1)")
        .bind(ids)
        .bind(error)
        .execute(conn)
        .await?;
    Ok(())
}

/// A failure of this row: try again after `delay_ms`.
pub async fn schedule_retry(conn: &mut PgConnection, id: i64, error: &str, delay_ms: i64) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update outbox set in_flight = false, last_error = $2,
                next_attempt_at = now() + make_interval(secs => $3::float8 / 1000)
         where id = $1",
    )
    .bind(id)
    .bind(error)
    .bind(delay_ms)
    .execute(conn)
    .await?;
    Ok(())
}

/// The row used up its attempts and is in the DLQ.
pub async fn mark_failed(conn: &mut PgConnection, id: i64, error: &str) -> Result<(), sqlx::Error> {
    sqlx::query("update outbox set status = 'FAILED', in_flight = false, last_error = $2 where id = $1")
        .bind(id)
        .bind(error)
        .execute(conn)
        .await?;
    Ok(())
}

/// Row counts for the backlog gauges.
pub async fn backlog(conn: &mut PgConnection) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(
        "select count(*) filter (where status = 'PENDING'), count(*) filter (where status = 'FAILED')
         from outbox where status in ('PENDING', 'FAILED')",
    )
    .fetch_one(conn)
    .await
}

/// What `orders-relay status` prints for a shard.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct ShardStatus {
    pub pending: i64,
    pub failed: i64,
    pub oldest_pending_secs: Option<f64>,
    /// The session holding the lease: `application_name (backend pid N)`.
    pub leader: Option<String>,
}

pub async fn status(conn: &mut PgConnection) -> Result<ShardStatus, sqlx::Error> {
    sqlx::query_as(
        "select count(*) filter (where status = 'PENDING') as pending,
                count(*) filter (where status = 'FAILED') as failed,
                extract(epoch from now() - min(created_at) filter (where status = 'PENDING'))::float8
                    as oldest_pending_secs,
                (select a.application_name || ' (backend pid ' || a.pid || ')'
                 from pg_locks l join pg_stat_activity a on a.pid = l.pid
                 where l.locktype = 'advisory' and l.granted
                   and l.database = (select oid from pg_database where datname = current_database())
                   and l.classid::bigint = $1 and l.objid::bigint = $2 and l.objsubid = 2
                 limit 1) as leader
         from outbox where status in ('PENDING', 'FAILED')",
    )
    .bind(i64::from(LEASE_KEY.0))
    .bind(i64::from(LEASE_KEY.1))
    .fetch_one(conn)
    .await
}

/// Outcome of re-queuing FAILED rows.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Requeued {
    /// Rows set back to PENDING with a fresh attempt budget.
    pub ids: Vec<i64>,
    /// Requested ids that exist but are not FAILED, with their status.
    pub not_failed: Vec<(i64, String)>,
    /// Requested ids with no row.
    pub missing: Vec<i64>,
}

/// Sets FAILED rows back to PENDING (all of them, or the given ids) with their attempts reset,
/// so the relay publishes them again. The last error stays for the record.
pub async fn requeue(conn: &mut PgConnection, ids: Option<&[i64]>) -> Result<Requeued, sqlx::Error> {
    let mut requeued: Vec<i64> = sqlx::query_scalar(
        "update outbox set status = 'PENDING', attempts = 0, in_flight = false, next_attempt_at = now()
         where status = 'FAILED' and ($1::bigint[] is null or id = any($1))
         returning id",
    )
    .bind(ids)
    .fetch_all(&mut *conn)
    .await?;
    requeued.sort_unstable();
    let mut out = Requeued { ids: requeued, ..Requeued::default() };
    if let Some(ids) = ids {
        let others: Vec<(i64, String)> =
            sqlx::query_as("select id, status from outbox where id = any($1) and not (id = any($2))")
                .bind(ids)
                .bind(&out.ids)
                .fetch_all(&mut *conn)
                .await?;
        out.missing =
            ids.iter().copied().filter(|id| !out.ids.contains(id) && !others.iter().any(|(o, _)| o == id)).collect();
        out.not_failed = others;
        out.not_failed.sort_unstable();
    }
    Ok(out)
}
