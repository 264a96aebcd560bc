//! Every statement a move runs on the two shards: ownership states, the logical-replication
//! objects of the copy, the freeze, the switch and the cleanup. Each is idempotent, so a rerun
//! after a crash at any point repeats it harmlessly.
//!
//! **Why logical replication.** Postgres 15 publishes a table with a row filter
//! (`where (partition in (…))`), so one publication carries exactly the moving partitions of
//! every table; the initial copy and the catch-up are one mechanism that keeps the source's
//! commit order, needs no triggers on the hot path and nothing installed. Replica identities are
//! `(id, partition)` since `migrations/shard/0003`, without which a row filter would make every
//! UPDATE on the source fail. The slot is created on the source by a statement of its own (not
//! by `CREATE SUBSCRIPTION`), which is what lets source and destination share an instance.
//!
//! The outbox is never published: the source's relay publishes what was written there, and
//! the destination's relay holds the partitions' new rows until it has (`outbox_hold`).

use std::time::{Duration, Instant};

use shard_router::Partition;
use shard_router::RegionName;
use sqlx::{Connection, PgConnection, PgPool};

use super::plan::MOVED_TABLES;

/// The fence's advisory-lock namespace (`migrations/shard/0003`: `fence_write`).
const FENCE_LOCK: i32 = 1952997377;

/// Tables in the order their rows can be deleted without breaking a foreign key.
const DELETE_ORDER: [&str; 4] = ["orders", "ticket_types", "events", "idempotency_keys"];

fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

fn in_list(partitions: &[Partition]) -> String {
    partitions.iter().map(Partition::to_string).collect::<Vec<_>>().join(", ")
}

/// Where the destination's ownership of the partitions stands.
pub async fn owner_states(
    pool: &PgPool,
    region: &RegionName,
    partitions: &[Partition],
) -> Result<Vec<String>, sqlx::Error> {
    sqlx::query_scalar(
        "select coalesce(o.state, 'NONE') from unnest($2::smallint[]) as t(p) \
         left join partition_owner o on o.region = $1 and o.partition = t.p",
    )
    .bind(region.as_str())
    .bind(partitions)
    .fetch_all(pool)
    .await
}

/// How many of `partitions` are in one of `states` on this shard.
pub async fn in_state(
    conn: &mut PgConnection,
    region: &RegionName,
    partitions: &[Partition],
    states: &[&str],
) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select count(*) from partition_owner where region = $1 and partition = any($2) and state = any($3)",
    )
    .bind(region.as_str())
    .bind(partitions)
    .bind(states)
    .fetch_one(conn)
    .await
}

/// How many of `partitions` this shard serves (OWNED or FROZEN).
pub async fn serving(
    conn: &mut PgConnection,
    region: &RegionName,
    partitions: &[Partition],
) -> Result<i64, sqlx::Error> {
    in_state(conn, region, partitions, &["OWNED", "FROZEN"]).await
}

/// Rows of `partitions` on a shard, over every table that moves with them.
pub async fn rows_of(pool: &PgPool, partitions: &[Partition]) -> Result<i64, sqlx::Error> {
    let mut rows = 0;
    for table in MOVED_TABLES {
        rows += sqlx::query_scalar::<_, i64>(&format!("select count(*) from {table} where partition = any($1)"))
            .bind(partitions)
            .fetch_one(pool)
            .await?;
    }
    Ok(rows)
}

/// Marks the partitions INCOMING on the destination (never over an OWNED or FROZEN row: that
/// shard serves them, and the plan's preflight should have said so).
pub async fn mark_incoming(
    pool: &PgPool,
    region: &RegionName,
    partitions: &[Partition],
    epoch: i64,
) -> anyhow::Result<()> {
    let mut tx = pool.begin().await?;
    let serving = serving(&mut tx, region, partitions).await?;
    anyhow::ensure!(
        serving == 0,
        "the destination already serves {serving} of these partitions; refusing to copy over them"
    );
    sqlx::query(
        "insert into partition_owner (region, partition, state, epoch) select $1, p, 'INCOMING', $3 from unnest($2::smallint[]) as t(p) \
         on conflict (region, partition) do update set state = 'INCOMING', moved_to = null, frozen_until = null, \
         epoch = excluded.epoch, updated_at = now()",
    )
    .bind(region.as_str())
    .bind(partitions)
    .bind(epoch)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(())
}

/// Deletes the partitions' rows from a shard that does not serve them (an INCOMING destination
/// before a fresh copy, or the source after the switch). Refuses when the shard serves any.
pub async fn delete_rows(pool: &PgPool, region: &RegionName, partitions: &[Partition]) -> anyhow::Result<u64> {
    let mut tx = pool.begin().await?;
    let serving = serving(&mut tx, region, partitions).await?;
    anyhow::ensure!(serving == 0, "refusing to delete rows of {serving} partitions this shard serves");
    let mut deleted = 0;
    for table in DELETE_ORDER {
        deleted += sqlx::query(&format!("delete from {table} where partition = any($1)"))
            .bind(partitions)
            .execute(&mut *tx)
            .await?
            .rows_affected();
    }
    tx.commit().await?;
    Ok(deleted)
}

/// The publication of the partitions' rows on the source, with a row filter per table.
pub async fn create_publication(source: &PgPool, name: &str, partitions: &[Partition]) -> Result<(), sqlx::Error> {
    let exists: bool = sqlx::query_scalar("select exists (select 1 from pg_publication where pubname = $1)")
        .bind(name)
        .fetch_one(source)
        .await?;
    if exists {
        return Ok(());
    }
    let filter = in_list(partitions);
    let tables: Vec<String> = MOVED_TABLES.iter().map(|t| format!("{t} where (partition in ({filter}))")).collect();
    sqlx::raw_sql(&format!("create publication {name} for table {}", tables.join(", "))).execute(source).await?;
    Ok(())
}

/// The logical slot the subscription streams from, created on the source by itself.
pub async fn create_slot(source: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "select pg_create_logical_replication_slot($1, 'pgoutput') \
         where not exists (select 1 from pg_replication_slots where slot_name = $1)",
    )
    .bind(name)
    .execute(source)
    .await?;
    Ok(())
}

pub async fn subscription_exists(dest: &PgPool, name: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select exists (select 1 from pg_subscription where subname = $1)")
        .bind(name)
        .fetch_one(dest)
        .await
}

/// The subscription on the destination: copies the partitions' rows, then follows the source.
/// `synchronous_commit = on` so the flush position it reports (what the freeze waits for) is
/// current, not a WAL-writer delay behind.
pub async fn create_subscription(dest: &PgPool, name: &str, source_conninfo: &str) -> Result<(), sqlx::Error> {
    if subscription_exists(dest, name).await? {
        return Ok(());
    }
    sqlx::raw_sql(&format!(
        "create subscription {name} connection {} publication {name} \
         with (create_slot = false, slot_name = {}, copy_data = true, synchronous_commit = 'on')",
        quote_literal(source_conninfo),
        quote_literal(name),
    ))
    .execute(dest)
    .await?;
    Ok(())
}

/// Whether the initial copy of every table is done (all ready), and the rows the destination
/// holds of the partitions.
pub async fn copy_progress(dest: &PgPool, name: &str, partitions: &[Partition]) -> Result<(bool, i64), sqlx::Error> {
    let (tables, ready): (i64, i64) = sqlx::query_as(
        "select count(*), count(*) filter (where r.srsubstate = 'r') from pg_subscription_rel r \
         join pg_subscription s on s.oid = r.srsubid where s.subname = $1",
    )
    .bind(name)
    .fetch_one(dest)
    .await?;
    let rows = rows_of(dest, partitions).await?;
    Ok((tables == MOVED_TABLES.len() as i64 && ready == tables, rows))
}

/// Bytes of WAL between the source's current position and what the destination has confirmed.
pub async fn lag_bytes(source: &PgPool, name: &str) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "select pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn)::bigint from pg_replication_slots where slot_name = $1",
    )
    .bind(name)
    .fetch_optional(source)
    .await
    .map(Option::flatten)
}

/// Freezes the partitions on the source for `lease`: takes each partition's fence lock
/// exclusively (so it waits for the writers in flight, and every later writer sees the freeze),
/// marks them FROZEN, and returns the source's WAL position after the commit, which the
/// destination must reach before the partitions are verified.
pub async fn freeze(
    source: &PgPool,
    region: &RegionName,
    partitions: &[Partition],
    lease: Duration,
    lock_timeout: Duration,
) -> anyhow::Result<String> {
    let mut conn = source.acquire().await?;
    let mut tx = conn.begin().await?;
    sqlx::query(&format!("set local lock_timeout = {}", lock_timeout.as_millis())).execute(&mut *tx).await?;
    lock_partitions(&mut tx, region, partitions).await?;
    let frozen = sqlx::query(
        "update partition_owner set state = 'FROZEN', moved_to = null, \
         frozen_until = now() + make_interval(secs => $3::float8 / 1000), updated_at = now() \
         where region = $1 and partition = any($2) and state in ('OWNED', 'FROZEN')",
    )
    .bind(region.as_str())
    .bind(partitions)
    .bind(lease.as_millis() as f64)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    anyhow::ensure!(
        frozen == partitions.len() as u64,
        "the source owns only {frozen} of the {} partitions it should be moving",
        partitions.len()
    );
    tx.commit().await?;
    let lsn: String = sqlx::query_scalar("select pg_current_wal_lsn()::text").fetch_one(&mut *conn).await?;
    Ok(lsn)
}

/// Ends a freeze that will not be switched (a failed catch-up or verification, or `abort`).
pub async fn unfreeze(source: &PgPool, region: &RegionName, partitions: &[Partition]) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "update partition_owner set state = 'OWNED', frozen_until = null, updated_at = now() \
         where region = $1 and partition = any($2) and state = 'FROZEN'",
    )
    .bind(region.as_str())
    .bind(partitions)
    .execute(source)
    .await?
    .rows_affected())
}

/// Waits until the destination has confirmed everything up to `lsn`, for at most `timeout`.
pub async fn wait_flushed(source: &PgPool, name: &str, lsn: &str, timeout: Duration) -> Result<bool, sqlx::Error> {
    let start = Instant::now();
    loop {
        let done: Option<bool> = sqlx::query_scalar(
            "select confirmed_flush_lsn >= $2::pg_lsn from pg_replication_slots where slot_name = $1",
        )
        .bind(name)
        .bind(lsn)
        .fetch_optional(source)
        .await?
        .flatten();
        if done == Some(true) {
            return Ok(true);
        }
        if start.elapsed() >= timeout {
            return Ok(false);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// The switch on the source: the frozen partitions become MOVED to `dest` at `epoch`, but only
/// while the freeze's lease still holds (with `margin` to spare), since a lapsed lease may have
/// let writes in that the verification did not see. The fence locks are taken exclusively
/// first, so a writer that got in on a lapsed lease is waited for (and then the lease check,
/// on the clock after the locks, fails), and writers after it see MOVED. Returns how many
/// partitions are MOVED to `dest` now (all of them when an earlier run already did it).
pub async fn mark_moved(
    source: &PgPool,
    region: &RegionName,
    partitions: &[Partition],
    dest: &str,
    epoch: i64,
    margin: Duration,
) -> anyhow::Result<u64> {
    let mut tx = source.begin().await?;
    sqlx::query("set local lock_timeout = 1000").execute(&mut *tx).await?;
    lock_partitions(&mut tx, region, partitions).await?;
    let moved = sqlx::query(
        "update partition_owner set state = 'MOVED', moved_to = $3, epoch = $4, frozen_until = null, updated_at = now() \
         where region = $1 and partition = any($2) and state = 'FROZEN' \
           and frozen_until > clock_timestamp() + make_interval(secs => $5::float8 / 1000)",
    )
    .bind(region.as_str())
    .bind(partitions)
    .bind(dest)
    .bind(epoch)
    .bind(margin.as_millis() as f64)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if moved != 0 && moved != partitions.len() as u64 {
        // Some leases lapsed and some did not: switch none of them.
        tx.rollback().await?;
        return Ok(moved_count(source, region, partitions, dest).await?);
    }
    tx.commit().await?;
    Ok(moved_count(source, region, partitions, dest).await?)
}

/// Takes the fence locks of `partitions` exclusively for the transaction, in one order.
async fn lock_partitions(
    tx: &mut PgConnection,
    region: &RegionName,
    partitions: &[Partition],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "select pg_advisory_xact_lock($1, k) from \
         (select distinct partition_lock_key($2, p) as k from unnest($3::smallint[]) as t(p) order by 1) as keys",
    )
    .bind(FENCE_LOCK)
    .bind(region.as_str())
    .bind(partitions)
    .execute(tx)
    .await?;
    Ok(())
}

pub async fn moved_count(
    source: &PgPool,
    region: &RegionName,
    partitions: &[Partition],
    dest: &str,
) -> Result<u64, sqlx::Error> {
    let n: i64 = sqlx::query_scalar(
        "select count(*) from partition_owner where region = $1 and partition = any($2) and state = 'MOVED' and moved_to = $3",
    )
    .bind(region.as_str())
    .bind(partitions)
    .bind(dest)
    .fetch_one(source)
    .await?;
    Ok(u64::try_from(n).unwrap_or(0))
}

/// Undoes the source's half of a switch whose destination never took over: the partitions
/// MOVED to `dest` are the source's again.
pub async fn reclaim(
    source: &PgPool,
    region: &RegionName,
    partitions: &[Partition],
    dest: &str,
) -> Result<u64, sqlx::Error> {
    Ok(sqlx::query(
        "update partition_owner set state = 'OWNED', moved_to = null, frozen_until = null, updated_at = now() \
         where region = $1 and partition = any($2) and state = 'MOVED' and moved_to = $3",
    )
    .bind(region.as_str())
    .bind(partitions)
    .bind(dest)
    .execute(source)
    .await?
    .rows_affected())
}

/// Errors the subscription's workers have hit (apply and initial sync), e.g. a unique
/// violation on the destination: the move cannot make progress, so it stops and says so.
pub async fn subscription_errors(dest: &PgPool, name: &str) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "select coalesce(sum(apply_error_count + sync_error_count), 0)::bigint from pg_stat_subscription_stats where subname = $1",
    )
    .bind(name)
    .fetch_one(dest)
    .await
}

/// Stops and removes the subscription without touching the source (its slot is dropped there
/// separately), so it works whether or not the source is reachable from the destination.
pub async fn drop_subscription(dest: &PgPool, name: &str) -> Result<(), sqlx::Error> {
    if !subscription_exists(dest, name).await? {
        return Ok(());
    }
    sqlx::raw_sql(&format!("alter subscription {name} disable")).execute(dest).await?;
    sqlx::raw_sql(&format!("alter subscription {name} set (slot_name = none)")).execute(dest).await?;
    sqlx::raw_sql(&format!("drop subscription {name}")).execute(dest).await?;
    Ok(())
}

/// The destination's side of the switch, in one transaction: it owns the partitions from
/// `epoch`, and its relay holds their new outbox rows until the source's relay has published
/// the old ones.
pub async fn take_ownership(
    dest: &PgPool,
    region: &RegionName,
    partitions: &[Partition],
    source: &str,
    source_upto: i64,
    epoch: i64,
    move_id: i64,
) -> anyhow::Result<()> {
    let mut tx = dest.begin().await?;
    sqlx::query(
        "insert into outbox_hold (region, partition, source, after_id, source_upto, move_id) \
         select $1, p, $3, (select coalesce(max(id), 0) from outbox), $4, $5 from unnest($2::smallint[]) as t(p) \
         on conflict (region, partition) do nothing",
    )
    .bind(region.as_str())
    .bind(partitions)
    .bind(source)
    .bind(source_upto)
    .bind(move_id)
    .execute(&mut *tx)
    .await?;
    sqlx::query(
        "update partition_owner set state = 'OWNED', epoch = $3, moved_to = null, frozen_until = null, updated_at = now() \
         where region = $1 and partition = any($2) and state = 'INCOMING'",
    )
    .bind(region.as_str())
    .bind(partitions)
    .bind(epoch)
    .execute(&mut *tx)
    .await?;
    let owned = in_state(&mut tx, region, partitions, &["OWNED"]).await?;
    anyhow::ensure!(
        owned == partitions.len() as i64,
        "the destination owns {owned} of the {} partitions after taking them over; nothing published",
        partitions.len()
    );
    tx.commit().await?;
    Ok(())
}

/// After an abort: the destination records that the partitions live on the source, so a
/// process that routes there by mistake is told where to go.
pub async fn mark_elsewhere(
    dest: &PgPool,
    region: &RegionName,
    partitions: &[Partition],
    source: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "update partition_owner set state = 'MOVED', moved_to = $3, updated_at = now() \
         where region = $1 and partition = any($2) and state = 'INCOMING'",
    )
    .bind(region.as_str())
    .bind(partitions)
    .bind(source)
    .execute(dest)
    .await?;
    Ok(())
}

/// Drops the slot (waiting up to `wait` for its walsender to let go) and the publication.
pub async fn drop_source_objects(source: &PgPool, name: &str, wait: Duration) -> anyhow::Result<()> {
    let start = Instant::now();
    loop {
        let slot: Option<bool> = sqlx::query_scalar("select active from pg_replication_slots where slot_name = $1")
            .bind(name)
            .fetch_optional(source)
            .await?;
        match slot {
            None => break,
            Some(true) if start.elapsed() < wait => tokio::time::sleep(Duration::from_millis(50)).await,
            Some(true) => {
                // The walsender of a subscription that is gone: end it, then drop.
                sqlx::query(
                    "select pg_terminate_backend(active_pid) from pg_replication_slots where slot_name = $1 and active",
                )
                .bind(name)
                .execute(source)
                .await?;
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Some(false) => match sqlx::query("select pg_drop_replication_slot($1)").bind(name).execute(source).await {
                Ok(_) => break,
                Err(e) if start.elapsed() < wait + Duration::from_secs(5) => {
                    tracing::debug!(error = %e, "slot busy; retrying its drop");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => return Err(e.into()),
            },
        }
    }
    sqlx::raw_sql(&format!("drop publication if exists {name}")).execute(source).await?;
    Ok(())
}

/// What a move may have left on a shard, by name: slots and publications on a source,
/// subscriptions on a destination. `status` and the tests look for leftovers with it.
pub async fn leftovers(pool: &PgPool, prefix: &str) -> Result<Vec<String>, sqlx::Error> {
    let like = format!("{prefix}%");
    sqlx::query_scalar(
        "select 'slot ' || slot_name::text from pg_replication_slots where slot_name like $1 \
           and database = current_database() \
         union all select 'publication ' || pubname::text from pg_publication where pubname like $1 \
         union all select 'subscription ' || subname::text from pg_subscription where subname like $1 \
           and subdbid = (select oid from pg_database where datname = current_database()) \
         order by 1",
    )
    .bind(like)
    .fetch_all(pool)
    .await
}

/// Partitions of `region` frozen on a shard: the seconds left on their lease, and since the
/// freeze began.
pub async fn frozen(pool: &PgPool, region: &str) -> Result<Vec<(Partition, f64, f64)>, sqlx::Error> {
    sqlx::query_as(
        "select partition, extract(epoch from frozen_until - now())::float8, \
                extract(epoch from now() - updated_at)::float8 from partition_owner \
         where region = $1 and state = 'FROZEN' order by partition",
    )
    .bind(region)
    .fetch_all(pool)
    .await
}

/// The replication objects of exactly one move (`name`), wherever they are on this shard.
pub async fn leftovers_of(pool: &PgPool, name: &str) -> Result<Vec<String>, sqlx::Error> {
    Ok(leftovers(pool, name).await?.into_iter().filter(|l| l.rsplit(' ').next() == Some(name)).collect())
}

/// A dedicated connection, for the statements that must not share a pooled session.
pub async fn connect(url: &str) -> Result<PgConnection, sqlx::Error> {
    PgConnection::connect(url).await
}
