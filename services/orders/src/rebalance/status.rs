//! `status`: where the live placement and its moves stand, and who routes by which epoch.

use shard_router::{ShardMap, ShardPools};
use sqlx::PgPool;

use super::plan::{Plan, human_bytes};
use super::{journal, shards};

/// Processes that reported within this many seconds are listed.
const SEEN_WITHIN_SECS: f64 = 30.0;

pub async fn print(map: &ShardMap, pools: &ShardPools, placement: &PgPool, plan: &Plan) -> anyhow::Result<()> {
    println!("live placement: epoch {}", plan.epoch);
    for (region, counts) in &plan.regions {
        let shown: Vec<String> =
            counts.iter().filter(|(_, c)| c.live > 0).map(|(s, c)| format!("{s} {}", c.live)).collect();
        println!("  region {region}: {}", shown.join(", "));
    }
    let pending: usize = plan.steps.iter().map(|s| s.partitions.len()).sum();
    if pending == 0 {
        println!("matches shards.toml: nothing pending");
    } else {
        println!("{pending} partitions placed differently from shards.toml: `orders-rebalance plan`, then `apply`");
    }

    let moves = journal::recent(placement, 10).await?;
    if !moves.is_empty() {
        println!("\nmoves (newest first):");
    }
    for mv in &moves {
        let mut detail = vec![mv.phase.to_string()];
        if let Some(rows) = mv.rows_copied {
            detail.push(format!("{rows} rows copied"));
        }
        if mv.phase < journal::Phase::Switched
            && let Some(lag) = mv.lag_bytes
        {
            detail.push(format!("lag {}", human_bytes(lag)));
        }
        if let Some(ms) = mv.freeze_ms {
            detail.push(format!("write pause {ms:.0} ms"));
        }
        if let Some(epoch) = mv.switched_epoch {
            detail.push(format!("epoch {epoch}"));
        }
        let took = mv.finished_at.unwrap_or(mv.updated_at) - mv.created_at;
        detail.push(format!("{:.1} s", took.num_milliseconds() as f64 / 1000.0));
        println!(
            "  #{} {} {} -> {}, {} partitions: {}{}",
            mv.id,
            mv.region,
            mv.source,
            mv.dest,
            mv.partitions.len(),
            detail.join(", "),
            mv.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default()
        );
    }

    let mut frozen_lines = Vec::new();
    let mut held_lines = Vec::new();
    for shard in map.shards() {
        let Some(pool) = pools.get(&shard.name) else { continue };
        if let Ok(frozen) = shards::frozen(pool, shard.region.as_str()).await
            && !frozen.is_empty()
        {
            let least = frozen.iter().map(|(_, s, _)| *s).fold(f64::INFINITY, f64::min);
            let since = frozen.iter().map(|(_, _, s)| *s).fold(0.0, f64::max);
            let state = if least < 0.0 {
                "lease lapsed: writable again".to_owned()
            } else {
                format!("lease {least:.1} s left")
            };
            frozen_lines.push(format!(
                "  {}: {} partitions frozen for {since:.2} s ({state})",
                shard.name,
                frozen.len()
            ));
        }
        let held: Result<Vec<(String, i64)>, _> =
            sqlx::query_as("select source, count(*) from outbox_hold group by source order by source")
                .fetch_all(pool)
                .await;
        for (source, n) in held.unwrap_or_default() {
            held_lines.push(format!(
                "  {} holds the new events of {n} partitions until {source} has published theirs",
                shard.name
            ));
        }
    }
    // A shard no region lists (being decommissioned): removable from shards.toml only once
    // it serves nothing, its relay has published everything, and no hand-off waits for it.
    let live = super::plan::live_counts(plan);
    let mut draining_lines = Vec::new();
    for shard in map.shards().filter(|s| map.region(&s.region).is_some_and(|r| !r.shards.contains(&s.name))) {
        let Some(pool) = pools.get(&shard.name) else { continue };
        let serving = live.get(shard.name.as_str()).copied().unwrap_or(0);
        let pending: i64 = sqlx::query_scalar("select count(*) from outbox where status = 'PENDING'")
            .fetch_one(pool)
            .await
            .unwrap_or(-1);
        let mut waiting = 0i64;
        for (_, other) in pools.all() {
            waiting += sqlx::query_scalar::<_, i64>("select count(*) from outbox_hold where source = $1")
                .bind(shard.name.as_str())
                .fetch_one(other)
                .await
                .unwrap_or(0);
        }
        let verdict = if serving == 0 && pending == 0 && waiting == 0 {
            "drained: it can be removed from shards.toml".to_owned()
        } else {
            format!(
                "draining: {serving} partitions, {pending} outbox rows to publish, {waiting} hand-offs waiting for it; keep it in shards.toml"
            )
        };
        draining_lines.push(format!("  {} (in no region's list): {verdict}", shard.name));
    }
    if !draining_lines.is_empty() {
        println!("\nleaving shards:\n{}", draining_lines.join("\n"));
    }
    if !frozen_lines.is_empty() {
        println!("\nfrozen now:\n{}", frozen_lines.join("\n"));
    }
    if !held_lines.is_empty() {
        println!("\noutbox hand-off in progress:\n{}", held_lines.join("\n"));
    }

    let processes = journal::processes(placement, SEEN_WITHIN_SECS).await?;
    if processes.is_empty() {
        println!("\nno orders process reported in the last {SEEN_WITHIN_SECS:.0} s");
    } else {
        println!("\nprocesses routing by the live map (seen in the last {SEEN_WITHIN_SECS:.0} s):");
        for p in processes {
            let mark = if p.epoch < plan.epoch { "  <- behind" } else { "" };
            println!("  {:<40} {:<8} epoch {}, {:.1} s ago{mark}", p.process, p.service, p.epoch, p.seen_secs_ago);
        }
    }
    Ok(())
}
