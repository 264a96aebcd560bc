//! The live placement map in the database, and each shard's ownership fence.
//!
//! The map lives in the `placement` database on the global instance
//! (`migrations/placement/`): one row per partition naming its shard, and an epoch raised by
//! every change, announced on the `placement` channel. It is seeded from `shards.toml` once per
//! region, the first time a service finds the region missing; after that only a move changes it.
//!
//! Each shard keeps its own word on what it owns (`partition_owner`, `migrations/shard/0003`),
//! and every writing transaction calls `fence_write` first, so a process routing by a stale map
//! is refused on the old owner ([`Fenced`]) instead of writing there.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::{PgConnection, PgPool};

use crate::placement::{PartitionMap, PlacementError};
use crate::{Partition, RegionName, ShardMap, ShardName};

/// The channel a change of the live map is announced on (payload: the new epoch).
pub const CHANNEL: &str = "placement";

/// Why the live map could not be read or seeded.
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("placement database: {0}")]
    Db(#[from] sqlx::Error),
    #[error(transparent)]
    Map(#[from] PlacementError),
}

/// The `placement` database.
#[derive(Debug, Clone)]
pub struct LiveStore {
    pool: PgPool,
}

/// What a shard's fence answered instead of letting a write through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fenced {
    /// The partition lives on `to` since `epoch`: refresh the map, retry there.
    Moved { to: String, epoch: i64 },
    /// A move is switching the partition: retry shortly.
    Frozen,
    /// This shard has no ownership of the partition (not seeded here, or still incoming).
    NotOwned,
}

impl Fenced {
    /// The fence's answer inside a database error, if that is what the error is.
    pub fn from_error(e: &sqlx::Error) -> Option<Self> {
        let sqlx::Error::Database(db) = e else { return None };
        let pg = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?;
        match pg.code() {
            "TH001" => Some(Self::Moved {
                to: pg.hint().unwrap_or_default().to_owned(),
                epoch: pg.detail().and_then(|d| d.parse().ok()).unwrap_or(0),
            }),
            "TH002" => Some(Self::Frozen),
            "TH003" => Some(Self::NotOwned),
            _ => None,
        }
    }
}

/// Calls the fence for `partition` of `region` in `tx`: the first statement of every writing
/// transaction on a shard. Returns the ownership epoch; a refusal is an error that
/// [`Fenced::from_error`] recognises.
pub async fn fence_write(tx: &mut PgConnection, region: &RegionName, partition: Partition) -> Result<i64, sqlx::Error> {
    sqlx::query_scalar("select fence_write($1, $2)").bind(region.as_str()).bind(partition).fetch_one(tx).await
}

/// Records on `shard` that it owns `partitions` of `region` at `epoch`, where it has no word on
/// them yet: the seed of a shard's fence. Existing rows (moved, frozen, incoming) are never
/// touched, so a stale caller cannot undo a move.
pub async fn ensure_owned(
    pool: &PgPool,
    region: &RegionName,
    partitions: &[Partition],
    epoch: i64,
) -> Result<u64, sqlx::Error> {
    let done = sqlx::query(
        "insert into partition_owner (region, partition, state, epoch) \
         select $1, p, 'OWNED', $3 from unnest($2::smallint[]) as t(p) on conflict do nothing",
    )
    .bind(region.as_str())
    .bind(partitions)
    .bind(epoch)
    .execute(pool)
    .await?;
    Ok(done.rows_affected())
}

impl LiveStore {
    pub fn connect_lazy(url: &str, acquire_timeout: Duration) -> Result<Self, sqlx::Error> {
        let pool = PgPoolOptions::new().max_connections(4).acquire_timeout(acquire_timeout).connect_lazy(url)?;
        Ok(Self { pool })
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The live map: every region of `map` that has none yet is seeded from the desired
    /// placement first. Returns the map and the regions this call seeded.
    pub async fn load_or_seed(&self, map: &ShardMap) -> Result<(PartitionMap, Vec<RegionName>), LiveError> {
        let desired = PartitionMap::desired(map);
        let mut seeded = Vec::new();
        for region in map.regions() {
            if self.seed_region(&desired, &region.name).await? {
                seeded.push(region.name.clone());
            }
        }
        Ok((self.load(map).await?, seeded))
    }

    /// Seeds `region` from `desired` unless it is seeded already; true when this call did it.
    /// Safe to race: the region row's primary key lets one seeder through, and the others find
    /// it done.
    async fn seed_region(&self, desired: &PartitionMap, region: &RegionName) -> Result<bool, sqlx::Error> {
        let Some(owners) = desired.owners(region) else { return Ok(false) };
        let mut tx = self.pool.begin().await?;
        let fresh =
            sqlx::query("insert into placement_region (region, partitions) values ($1, $2) on conflict do nothing")
                .bind(region.as_str())
                .bind(i16::try_from(owners.len()).map_err(|e| sqlx::Error::Encode(e.into()))?)
                .execute(&mut *tx)
                .await?
                .rows_affected()
                == 1;
        if !fresh {
            return Ok(false);
        }
        let epoch: i64 = sqlx::query_scalar("update placement_epoch set epoch = epoch + 1 returning epoch")
            .fetch_one(&mut *tx)
            .await?;
        let parts: Vec<Partition> = Partition::first(owners.len()).collect();
        let shards: Vec<&str> = owners.iter().map(ShardName::as_str).collect();
        sqlx::query(
            "insert into partition_placement (region, partition, shard, epoch) \
             select $1, p, s, $4 from unnest($2::smallint[], $3::text[]) as t(p, s)",
        )
        .bind(region.as_str())
        .bind(&parts)
        .bind(&shards)
        .bind(epoch)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        tracing::info!(%region, epoch, "seeded the live placement of a region from shards.toml");
        Ok(true)
    }

    /// The live map as stored, checked against `map`, read in one snapshot.
    pub async fn load(&self, map: &ShardMap) -> Result<PartitionMap, LiveError> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("set transaction isolation level repeatable read, read only").execute(&mut *tx).await?;
        let epoch: i64 = sqlx::query_scalar("select epoch from placement_epoch").fetch_one(&mut *tx).await?;
        let rows: Vec<(String, Partition, String)> =
            sqlx::query_as("select region, partition, shard from partition_placement").fetch_all(&mut *tx).await?;
        tx.commit().await?;
        Ok(PartitionMap::from_rows(map, epoch, rows)?)
    }

    /// The live map's epoch: what a poll compares before reloading.
    pub async fn epoch(&self) -> Result<i64, sqlx::Error> {
        sqlx::query_scalar("select epoch from placement_epoch").fetch_one(&self.pool).await
    }

    /// Records that `process` (of `service`, running since `started_at`) routes by `epoch`
    /// now: what `orders-rebalance status` lists, so a process behind a switch is visible.
    pub async fn heartbeat(
        &self,
        process: &str,
        service: &str,
        epoch: i64,
        started_at: chrono::DateTime<chrono::Utc>,
    ) -> Result<(), sqlx::Error> {
        sqlx::query(
            "insert into placement_process (process, service, epoch, started_at) values ($1, $2, $3, $4) \
             on conflict (process) do update set epoch = excluded.epoch, seen_at = now()",
        )
        .bind(process)
        .bind(service)
        .bind(epoch)
        .bind(started_at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// A listener on [`CHANNEL`].
    pub async fn listen(&self) -> Result<PgListener, sqlx::Error> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(CHANNEL).await?;
        Ok(listener)
    }
}
