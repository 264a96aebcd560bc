//! The consumer's state in its own database: the lease and the checkpoints.
//!
//! Both live in the same database as the consumer's effects (table `consumer_checkpoint`, see
//! `migrations/notifications/0002_consumer_checkpoints.sql`), so a checkpoint commits in the
//! transaction of the effects it covers, and the lease is held by the very session that writes
//! them: a process whose session is gone can neither hold the lease nor commit a checkpoint.

use std::collections::BTreeMap;

use sqlx::PgConnection;

/// Advisory-lock class of consumer leases (`'cons'`); the object id is a hash of the consumer
/// and topic names, so different consumers of one database never share a lease.
const LEASE_CLASS: i32 = 0x636f_6e73;

/// The first offset not yet applied, per partition.
pub type Positions = BTreeMap<i32, i64>;

/// Takes the consumer's lease on this session if it is free: `true` when held now.
pub async fn try_lease(conn: &mut PgConnection, consumer: &str, topic: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("select pg_try_advisory_lock($1, hashtext($2 || '/' || $3))")
        .bind(LEASE_CLASS)
        .bind(consumer)
        .bind(topic)
        .fetch_one(conn)
        .await
}

/// Gives the lease back (at shutdown, so a standby takes over at once).
pub async fn release_lease(conn: &mut PgConnection, consumer: &str, topic: &str) -> Result<(), sqlx::Error> {
    sqlx::query("select pg_advisory_unlock($1, hashtext($2 || '/' || $3))")
        .bind(LEASE_CLASS)
        .bind(consumer)
        .bind(topic)
        .execute(conn)
        .await?;
    Ok(())
}

/// Every stored checkpoint of `consumer` on `topic`.
pub async fn load<'e, E>(executor: E, consumer: &str, topic: &str) -> Result<Positions, sqlx::Error>
where
    E: sqlx::PgExecutor<'e>,
{
    let rows: Vec<(i32, i64)> = sqlx::query_as(
        "select kafka_partition, next_offset from consumer_checkpoint where consumer = $1 and topic = $2",
    )
    .bind(consumer)
    .bind(topic)
    .fetch_all(executor)
    .await?;
    Ok(rows.into_iter().collect())
}

/// Moves the checkpoints forward to `next` (inside the caller's transaction). Never backwards:
/// a second consumer that somehow applied an older batch (it cannot hold the lease at the same
/// time, but a stale session could linger) leaves the newer checkpoint in place.
pub async fn advance(
    conn: &mut PgConnection,
    consumer: &str,
    topic: &str,
    next: &Positions,
) -> Result<(), sqlx::Error> {
    let (partitions, offsets): (Vec<i32>, Vec<i64>) = next.iter().map(|(p, o)| (*p, *o)).unzip();
    sqlx::query(
        "insert into consumer_checkpoint (consumer, topic, kafka_partition, next_offset)
         select $1, $2, p, o from unnest($3::int[], $4::bigint[]) as t(p, o)
         on conflict (consumer, topic, kafka_partition) do update
           set next_offset = excluded.next_offset, updated_at = now()
           where consumer_checkpoint.next_offset < excluded.next_offset",
    )
    .bind(consumer)
    .bind(topic)
    .bind(&partitions)
    .bind(&offsets)
    .execute(conn)
    .await?;
    Ok(())
}
