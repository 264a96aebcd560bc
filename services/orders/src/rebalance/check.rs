//! `verify`: re-checks a finished move against the shards as they are now.
//!
//! The move's partitions must be served by exactly the shard the live map names (a later move
//! may have taken them elsewhere: the map is the reference), no other shard of the region may
//! hold or serve any of their rows, the source must not have written an outbox row of them
//! after the switch, stock must add up on the owner, and the move's replication objects must be
//! gone from both shards.

use shard_router::{Partition, PartitionMap, RegionName, ShardMap, ShardPools};

use super::journal::{MoveRow, Phase};
use super::plan::Check;
use super::{shards, verify};

fn check(name: impl Into<String>, ok: bool, detail: impl Into<String>) -> Check {
    Check { name: name.into(), ok, detail: detail.into() }
}

pub async fn finished(map: &ShardMap, pools: &ShardPools, live: &PartitionMap, mv: &MoveRow, name: &str) -> Vec<Check> {
    let mut checks = vec![check("finished", mv.phase == Phase::Done, format!("phase {}", mv.phase))];
    let Ok(region) = RegionName::parse(&mv.region) else {
        checks.push(check("region", false, format!("`{}` is not a region name", mv.region)));
        return checks;
    };
    let parts = &mv.partitions;
    for shard in map.shards().filter(|s| s.region == region) {
        let Some(pool) = pools.get(&shard.name) else { continue };
        let mine: Vec<Partition> =
            parts.iter().copied().filter(|p| live.owner(&region, *p) == Some(&shard.name)).collect();
        let others: Vec<Partition> = parts.iter().copied().filter(|p| !mine.contains(p)).collect();
        let label = shard.name.as_str();
        match owned(pool, &region, &mine).await {
            Ok(n) if n == mine.len() as i64 => {
                if !mine.is_empty() {
                    checks.push(check(
                        format!("{label} owns its partitions"),
                        true,
                        format!("{n} OWNED, as the live map says"),
                    ));
                }
            }
            Ok(n) => checks.push(check(
                format!("{label} owns its partitions"),
                false,
                format!("the live map gives it {}, it owns {n}", mine.len()),
            )),
            Err(e) => checks.push(check(format!("{label} reachable"), false, e.to_string())),
        }
        if !mine.is_empty() {
            match verify::stock_mismatches(pool, &mine).await {
                Ok(0) => {
                    checks.push(check(format!("{label} stock"), true, "remaining = total - sold for every ticket type"))
                }
                Ok(n) => checks.push(check(format!("{label} stock"), false, format!("{n} ticket types do not add up"))),
                Err(e) => checks.push(check(format!("{label} stock"), false, e.to_string())),
            }
        }
        if !others.is_empty() {
            match held(pool, &region, &others).await {
                Ok((0, 0)) => checks.push(check(
                    format!("{label} holds nothing of the others"),
                    true,
                    format!("no rows and no ownership of the {} partitions it does not own", others.len()),
                )),
                Ok((rows, serving)) => checks.push(check(
                    format!("{label} holds nothing of the others"),
                    false,
                    format!("{rows} rows left, {serving} partitions still served"),
                )),
                Err(e) => checks.push(check(format!("{label} reachable"), false, e.to_string())),
            }
        }
        if label == mv.source || label == mv.dest {
            match shards::leftovers_of(pool, name).await {
                Ok(left) if left.is_empty() => {
                    checks.push(check(format!("{label} replication objects"), true, "none left"))
                }
                Ok(left) => checks.push(check(format!("{label} replication objects"), false, left.join(", "))),
                Err(e) => checks.push(check(format!("{label} replication objects"), false, e.to_string())),
            }
        }
        if label == mv.source
            && let Some(switched) = mv.switched_at
        {
            let late: Result<i64, _> =
                sqlx::query_scalar("select count(*) from outbox where partition = any($1) and created_at > $2")
                    .bind(&others)
                    .bind(switched)
                    .fetch_one(pool)
                    .await;
            match late {
                Ok(0) => checks.push(check(
                    format!("{label} wrote nothing after the switch"),
                    true,
                    "no outbox row of the moved partitions since",
                )),
                Ok(n) => checks.push(check(
                    format!("{label} wrote nothing after the switch"),
                    false,
                    format!("{n} outbox rows since"),
                )),
                Err(e) => checks.push(check(format!("{label} wrote nothing after the switch"), false, e.to_string())),
            }
        }
    }
    checks
}

async fn owned(pool: &sqlx::PgPool, region: &RegionName, parts: &[Partition]) -> Result<i64, sqlx::Error> {
    let mut conn = pool.acquire().await?;
    shards::in_state(&mut conn, region, parts, &["OWNED"]).await
}

/// Rows of `parts` on a shard, and how many of them it serves.
async fn held(pool: &sqlx::PgPool, region: &RegionName, parts: &[Partition]) -> Result<(i64, i64), sqlx::Error> {
    let rows = shards::rows_of(pool, parts).await?;
    let mut conn = pool.acquire().await?;
    Ok((rows, shards::serving(&mut conn, region, parts).await?))
}
