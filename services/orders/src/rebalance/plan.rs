//! `plan`: what applying `shards.toml` would move, and whether it can. Changes nothing.
//!
//! The plan is the difference between the live map and the placement `shards.toml` asks for
//! (consistent hashing: adding a shard moves about 1/n of a region's partitions, all to the
//! new shard). For each source → destination pair it counts the rows and bytes of the moving
//! partitions, estimates the copy time, and runs the preflight checks a move needs: every
//! shard involved reachable and on the same schema version, the destination holding nothing of
//! those partitions, `wal_level = logical` and a free replication slot on the source.

use std::collections::BTreeMap;
use std::fmt;

use shard_router::placement::Share;
use shard_router::{Move, Partition, PartitionMap, RegionName, ShardMap, ShardName, ShardPools};
use sqlx::PgPool;

/// The tables a partition's data lives in; each carries `partition` and moves with it.
pub const MOVED_TABLES: [&str; 4] = ["events", "ticket_types", "orders", "idempotency_keys"];

/// Rows a logical-replication initial copy moves per second on this machine kind (measured in
/// `shared/notes/rebalancing.md`: 31,250 rows in 0.62 s); a rough figure for the estimate.
const COPY_ROWS_PER_SEC: f64 = 50_000.0;
/// What a batch costs beyond its copy: catch-up, freeze, verification and switch.
const SWITCH_SECS_PER_BATCH: f64 = 2.0;

/// The moves from one shard to another, with what they carry.
#[derive(Debug, Clone)]
pub struct Step {
    pub from: ShardName,
    pub to: ShardName,
    pub partitions: Vec<Partition>,
    /// Rows and bytes per table, summed over the partitions.
    pub rows: BTreeMap<&'static str, i64>,
    pub bytes: i64,
    pub checks: Vec<Check>,
}

/// One preflight check and its outcome.
#[derive(Debug, Clone)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

#[derive(Debug, Clone)]
pub struct Plan {
    pub epoch: i64,
    pub steps: Vec<Step>,
    /// Partitions per shard, live now and as `shards.toml` asks, per region.
    pub regions: Vec<(RegionName, BTreeMap<ShardName, Share>)>,
}

impl Plan {
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    pub fn ready(&self) -> bool {
        self.steps.iter().all(|s| s.checks.iter().all(|c| c.ok))
    }

    pub fn rows(&self) -> i64 {
        self.steps.iter().flat_map(|s| s.rows.values()).sum()
    }

    /// A rough duration of applying the plan, in seconds.
    pub fn estimate_secs(&self, batch: usize) -> f64 {
        let batches: usize = self.steps.iter().map(|s| s.partitions.len().div_ceil(batch.max(1))).sum();
        self.rows() as f64 / COPY_ROWS_PER_SEC + batches as f64 * SWITCH_SECS_PER_BATCH
    }
}

/// Computes the plan from the live map `live` to what `map` asks for.
pub async fn compute(map: &ShardMap, live: &PartitionMap, pools: &ShardPools) -> Plan {
    let desired = PartitionMap::desired(map);
    let mut by_pair: BTreeMap<(ShardName, ShardName), Vec<Partition>> = BTreeMap::new();
    for Move { partition, from, to, .. } in live.moves_to(&desired) {
        by_pair.entry((from, to)).or_default().push(partition);
    }
    let mut steps = Vec::new();
    for ((from, to), partitions) in by_pair {
        let (rows, bytes, mut checks) = match pools.get(&from) {
            Some(pool) => measure(pool, &partitions).await,
            None => (BTreeMap::new(), 0, vec![fail(format!("{from} reachable"), "not defined in shards.toml")]),
        };
        checks.extend(preflight(pools, &from, &to, &partitions).await);
        steps.push(Step { from, to, partitions, rows, bytes, checks });
    }
    let regions = map.regions().map(|r| (r.name.clone(), live.shares(&desired, &r.name))).collect();
    Plan { epoch: live.epoch, steps, regions }
}

fn pass(name: impl Into<String>, detail: impl Into<String>) -> Check {
    Check { name: name.into(), ok: true, detail: detail.into() }
}

fn fail(name: impl Into<String>, detail: impl Into<String>) -> Check {
    Check { name: name.into(), ok: false, detail: detail.into() }
}

/// Rows and bytes of `partitions` on the source, per table.
async fn measure(pool: &PgPool, partitions: &[Partition]) -> (BTreeMap<&'static str, i64>, i64, Vec<Check>) {
    let mut rows = BTreeMap::new();
    let mut bytes = 0;
    for table in MOVED_TABLES {
        let sql = format!(
            "select count(*), coalesce(sum(pg_column_size(t.*)), 0)::bigint from {table} t where partition = any($1)"
        );
        match sqlx::query_as::<_, (i64, i64)>(&sql).bind(partitions).fetch_one(pool).await {
            Ok((n, b)) => {
                rows.insert(table, n);
                bytes += b;
            }
            Err(e) => return (rows, bytes, vec![fail("source reachable", e.to_string())]),
        }
    }
    (rows, bytes, Vec::new())
}

/// The checks a move of `partitions` from `from` to `to` must pass before it starts.
pub async fn preflight(pools: &ShardPools, from: &ShardName, to: &ShardName, partitions: &[Partition]) -> Vec<Check> {
    let mut checks = Vec::new();
    let (Some(src), Some(dst)) = (pools.get(from), pools.get(to)) else {
        checks.push(fail("shards defined", format!("{from} or {to} is not in shards.toml")));
        return checks;
    };
    let version = |pool: PgPool| async move {
        sqlx::query_scalar::<_, Option<i64>>("select max(version) from _sqlx_migrations where success")
            .fetch_one(&pool)
            .await
    };
    match (version(src.clone()).await, version(dst.clone()).await) {
        (Ok(a), Ok(b)) if a == b => checks.push(pass("same schema version", format!("{} on both", a.unwrap_or(0)))),
        (Ok(a), Ok(b)) => checks.push(fail(
            "same schema version",
            format!("{from} at {}, {to} at {}: run stackctl migrate shards", a.unwrap_or(0), b.unwrap_or(0)),
        )),
        (Err(e), _) => checks.push(fail(format!("{from} reachable"), e.to_string())),
        (_, Err(e)) => checks.push(fail(format!("{to} reachable"), e.to_string())),
    }
    let mut held = 0i64;
    for table in MOVED_TABLES {
        let sql = format!("select count(*) from {table} where partition = any($1)");
        held += sqlx::query_scalar::<_, i64>(&sql).bind(partitions).fetch_one(dst).await.unwrap_or(-1);
    }
    let owned: i64 = sqlx::query_scalar(
        "select count(*) from partition_owner where partition = any($1) and state in ('OWNED', 'FROZEN')",
    )
    .bind(partitions)
    .fetch_one(dst)
    .await
    .unwrap_or(-1);
    if held == 0 && owned == 0 {
        checks.push(pass("destination empty", format!("{to} holds nothing of the {} partitions", partitions.len())));
    } else {
        checks.push(fail("destination empty", format!("{to} holds {held} rows and owns {owned} of these partitions")));
    }
    checks.push(key_collisions(src, dst, to, partitions).await);
    let wal: Result<String, _> = sqlx::query_scalar("show wal_level").fetch_one(src).await;
    match wal {
        Ok(level) if level == "logical" => checks.push(pass("wal_level", format!("logical on {from}"))),
        Ok(level) => checks.push(fail(
            "wal_level",
            format!("{level} on {from}; set wal_level = logical and restart it (./dev does for new instances)"),
        )),
        Err(e) => checks.push(fail("wal_level", e.to_string())),
    }
    let slots: Result<(i64, i64), _> = sqlx::query_as(
        "select current_setting('max_replication_slots')::bigint, (select count(*) from pg_replication_slots)",
    )
    .fetch_one(src)
    .await;
    match slots {
        Ok((max, used)) if used < max => {
            checks.push(pass("replication slot free", format!("{used} of {max} used on {from}")))
        }
        Ok((max, used)) => checks.push(fail("replication slot free", format!("{used} of {max} used on {from}"))),
        Err(e) => checks.push(fail("replication slot free", e.to_string())),
    }
    checks
}

/// Idempotency keys are unique per shard by (owner, operation, key), without the partition: a
/// key the destination holds for another partition would make the copy fail on a unique
/// violation. Rare (the same caller's key accepted on two shards of a region), but it must be
/// seen before the move, not as a stuck subscription.
async fn key_collisions(src: &PgPool, dst: &PgPool, to: &ShardName, partitions: &[Partition]) -> Check {
    let keys: Result<Vec<(uuid::Uuid, String, String)>, _> =
        sqlx::query_as("select owner_id, operation, key from idempotency_keys where partition = any($1)")
            .bind(partitions)
            .fetch_all(src)
            .await;
    let keys = match keys {
        Ok(k) => k,
        Err(e) => return fail("idempotency keys unique", e.to_string()),
    };
    let (owners, rest): (Vec<uuid::Uuid>, Vec<(String, String)>) =
        keys.into_iter().map(|(o, op, k)| (o, (op, k))).unzip();
    let (ops, names): (Vec<String>, Vec<String>) = rest.into_iter().unzip();
    let clash: Result<i64, _> = sqlx::query_scalar(
        "select count(*) from idempotency_keys i join unnest($1::uuid[], $2::text[], $3::text[]) as t(o, op, k) \
         on i.owner_id = t.o and i.operation = t.op and i.key = t.k where not (i.partition = any($4))",
    )
    .bind(&owners)
    .bind(&ops)
    .bind(&names)
    .bind(partitions)
    .fetch_one(dst)
    .await;
    match clash {
        Ok(0) => pass("idempotency keys unique", format!("none of the {} keys is on {to} already", owners.len())),
        Ok(n) => fail(
            "idempotency keys unique",
            format!("{n} keys of these partitions are also on {to} for other partitions; the copy would fail on them"),
        ),
        Err(e) => fail("idempotency keys unique", e.to_string()),
    }
}

/// Live partitions per shard name, over every region of the plan.
pub fn live_counts(plan: &Plan) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (_, counts) in &plan.regions {
        for (shard, share) in counts {
            *out.entry(shard.to_string()).or_insert(0) += share.live;
        }
    }
    out
}

pub fn human_bytes(b: i64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// Partition numbers as ranges: `3-5, 9`.
fn ranges(partitions: &[Partition]) -> String {
    let mut out: Vec<String> = Vec::new();
    let mut iter = partitions.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek().is_some_and(|next| next.get() == end.get() + 1) {
            end = iter.next().unwrap_or(end);
        }
        out.push(if start == end { start.to_string() } else { format!("{start}-{end}") });
    }
    if out.len() > 12 {
        let shown = out[..12].join(", ");
        return format!("{shown}, … ({} ranges)", out.len());
    }
    out.join(", ")
}

impl fmt::Display for Plan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "live placement: epoch {}", self.epoch)?;
        for (region, counts) in &self.regions {
            writeln!(f, "  region {region}: partitions per shard, live -> shards.toml")?;
            for (shard, Share { live, target }) in counts {
                let mark = if live == target { "" } else { "  *" };
                writeln!(f, "    {:<10} {live:>5} -> {target:<5}{mark}", shard.as_str())?;
            }
        }
        if self.is_empty() {
            return writeln!(f, "\nnothing to move: the live placement is what shards.toml asks for");
        }
        for step in &self.steps {
            let rows: i64 = step.rows.values().sum();
            writeln!(
                f,
                "\nmove {} partitions {} -> {}: {} rows, {}",
                step.partitions.len(),
                step.from,
                step.to,
                rows,
                human_bytes(step.bytes)
            )?;
            writeln!(f, "  partitions: {}", ranges(&step.partitions))?;
            let per_table: Vec<String> = step.rows.iter().map(|(t, n)| format!("{t} {n}")).collect();
            writeln!(f, "  rows: {}", per_table.join(", "))?;
            for c in &step.checks {
                writeln!(f, "  [{}] {}: {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.detail)?;
            }
        }
        writeln!(
            f,
            "\n{} partitions, {} rows; estimated {:.0} s in batches of 64 (apply --batch). {}",
            self.steps.iter().map(|s| s.partitions.len()).sum::<usize>(),
            self.rows(),
            self.estimate_secs(64),
            if self.ready() { "Preflight passed." } else { "Preflight FAILED: fix the checks above first." }
        )
    }
}
