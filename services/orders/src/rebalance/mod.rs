//! `orders-rebalance`: the tool that carries a changed `shards.toml` out on the live placement.
//!
//! A binary of the orders crate, like the relay, because it needs what orders owns: the shard
//! schema (which tables a partition's rows live in), the fence functions, the live map and the
//! settings that locate them (`TICKET_HUB_ORDERS__SHARDS_FILE`, `__PLACEMENT_URL`).
//!
//! - `plan`: the moves `shards.toml` implies against the live map, their size, an estimate and
//!   the preflight checks; changes nothing ([`plan`]).
//! - `status`: the live map's epoch and partitions per shard, and how far it is from
//!   `shards.toml`.

pub mod plan;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shard_router::{LiveStore, ShardMap, ShardPools};

use crate::{SERVICE, Settings};

#[derive(Debug, Parser)]
#[command(name = "orders-rebalance", about = "Move partitions between shards to match shards.toml, online")]
pub struct Args {
    /// Settings file (the orders service's; env `TICKET_HUB_ORDERS__*` wins).
    #[arg(long, global = true)]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// What applying shards.toml would move, and whether it can; changes nothing.
    Plan,
    /// The live placement: epoch, partitions per shard, moves pending against shards.toml.
    Status,
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings: Settings = platform::settings::load(SERVICE, args.config.as_deref())?;
    let map = Arc::new(ShardMap::load(&settings.shards_file)?);
    let timeout = Duration::from_millis(settings.shard_acquire_timeout_ms);
    let store = LiveStore::connect_lazy(&settings.placement_url, timeout)?;
    let live = store.load(&map).await.map_err(|e| anyhow::anyhow!("reading the live placement: {e}"))?;
    let pools = ShardPools::connect_lazy(&map, timeout)?;
    let plan = plan::compute(&map, &live, &pools).await;
    match args.command {
        Command::Plan => {
            print!("{plan}");
            Ok(if plan.ready() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Status => {
            let pending: usize = plan.steps.iter().map(|s| s.partitions.len()).sum();
            println!("live placement: epoch {}", plan.epoch);
            for (region, counts) in &plan.regions {
                let shown: Vec<String> =
                    counts.iter().filter(|(_, c)| c.live > 0).map(|(s, c)| format!("{s} {}", c.live)).collect();
                println!("  region {region}: {}", shown.join(", "));
            }
            if pending == 0 {
                println!("matches shards.toml: nothing pending");
            } else {
                println!("{pending} partitions placed differently from shards.toml: see `orders-rebalance plan`");
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
