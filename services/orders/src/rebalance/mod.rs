//! `orders-rebalance`: the tool that carries a changed `shards.toml` out on the live placement.
//!
//! A binary of the orders crate, like the relay, because it needs what orders owns: the shard
//! schema (which tables a partition's rows live in), the fence functions, the live map and the
//! settings that locate them (`TICKET_HUB_ORDERS__SHARDS_FILE`, `__PLACEMENT_URL`).
//!
//! - `plan`: the moves `shards.toml` implies against the live map, their size, an estimate and
//!   the preflight checks; changes nothing ([`plan`]).
//! - `apply`: moves the partitions online, a batch at a time, resuming an interrupted move
//!   first ([`apply`]).
//! - `status`: the live map, each move's phase, lag and write pause, frozen partitions, the
//!   outbox hand-offs in progress, and which epoch each running orders process routes by.
//! - `verify`: re-checks finished moves against the shards as they are now ([`check`]).
//! - `abort`: undoes the unfinished move if it has not switched yet.

pub mod apply;
pub mod check;
pub mod journal;
pub mod plan;
pub mod shards;
mod status;
pub mod verify;

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use shard_router::{LiveStore, ShardMap, ShardPools};

use crate::{SERVICE, Settings};

#[derive(Debug, Parser)]
#[command(name = "orders-rebalance", about = "Move partitions between shards to match shards.toml, online")]
pub struct Args {
    #[command(flatten)]
    pub config: platform::cli::ConfigFile,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// What applying shards.toml would move, and whether it can; changes nothing.
    Plan,
    /// Move partitions until the live placement is what shards.toml asks for, online.
    Apply(ApplyArgs),
    /// The live placement, the moves, frozen partitions, hand-offs and each process's epoch.
    Status,
    /// Re-check finished moves (all, or --move N) against the shards as they are now.
    Verify {
        #[arg(long = "move")]
        id: Option<i64>,
    },
    /// Undo the unfinished move, if it has not switched yet.
    Abort,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// Partitions per move: what one freeze switches.
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// Freeze only when the destination is at most this many bytes of WAL behind.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_lag_bytes: i64,
    /// The freeze's lease, in milliseconds: past it the source serves the partitions again.
    #[arg(long, default_value_t = 5000)]
    pub freeze_lease_ms: u64,
    /// How long a freeze waits for the destination's last confirmations, in milliseconds.
    #[arg(long, default_value_t = 2000)]
    pub catch_up_timeout_ms: u64,
    /// Stop after this many moves (default: until the plan is done).
    #[arg(long)]
    pub max_moves: Option<usize>,
    /// Serve /metrics (partitions moved, rows copied, lag, freeze durations) here while running.
    #[arg(long)]
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Test hook: exit abruptly at this point, as a crash would.
    #[arg(long, hide = true, value_enum)]
    pub crash_at: Option<apply::CrashPoint>,
}

impl ApplyArgs {
    pub fn options(&self) -> apply::Options {
        apply::Options {
            batch: self.batch.max(1),
            max_lag_bytes: self.max_lag_bytes,
            freeze_lease: Duration::from_millis(self.freeze_lease_ms.max(500)),
            catch_up_timeout: Duration::from_millis(self.catch_up_timeout_ms),
            max_moves: self.max_moves,
            crash_at: self.crash_at,
            ..apply::Options::default()
        }
    }
}

pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let settings: Settings = args.config.load(SERVICE)?;
    let map = Arc::new(ShardMap::load(&settings.shards_file)?);
    let timeout = settings.shard_acquire_timeout;
    let store = LiveStore::connect_lazy(&settings.placement_url, timeout)?;
    let pools = ShardPools::connect_lazy(&map, timeout)?;
    let live = || async { store.load(&map).await.map_err(|e| anyhow::anyhow!("reading the live placement: {e}")) };
    match args.command {
        Command::Plan => {
            let plan = plan::compute(&map, &live().await?, &pools).await;
            print!("{plan}");
            Ok(if plan.ready() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Status => {
            let plan = plan::compute(&map, &live().await?, &pools).await;
            status::print(&map, &pools, store.pool(), &plan).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply(a) => {
            let stop = tokio_util::sync::CancellationToken::new();
            if let Some(addr) = a.metrics_addr {
                let server = platform::http::Server::bind(
                    addr,
                    platform::http::app(axum::Router::new(), platform::ops::Readiness::new(Vec::new())),
                )
                .await?;
                println!("metrics on http://{addr}/metrics");
                tokio::spawn(server.run(stop.clone()));
            }
            let mover = apply::Mover::new(map.clone(), pools, store, &settings.placement_url, a.options()).await?;
            let result = mover.apply().await;
            stop.cancel();
            let summary = result?;
            if summary.moves.is_empty() {
                println!("nothing to move: the live placement is what shards.toml asks for");
            } else {
                let parts: usize = summary.moves.iter().map(|m| m.partitions.len()).sum();
                println!("applied: {} moves, {parts} partitions", summary.moves.len());
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Verify { id } => {
            let mover =
                apply::Mover::new(map.clone(), pools, store, &settings.placement_url, apply::Options::default())
                    .await?;
            let results = mover.verify(id).await?;
            if results.is_empty() {
                println!("no finished moves to verify");
            }
            let mut ok = true;
            for (mv, checks) in results {
                println!(
                    "move {}: {} {} -> {}, {} partitions",
                    mv.id,
                    mv.region,
                    mv.source,
                    mv.dest,
                    mv.partitions.len()
                );
                for c in checks {
                    ok &= c.ok;
                    println!("  [{}] {}: {}", if c.ok { "ok" } else { "FAIL" }, c.name, c.detail);
                }
            }
            Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Abort => {
            let mover =
                apply::Mover::new(map.clone(), pools, store, &settings.placement_url, apply::Options::default())
                    .await?;
            match mover.abort().await? {
                Some(mv) => println!(
                    "aborted move {} ({} {} -> {}, {} partitions): {} serves them as before; nothing of the move is left",
                    mv.id,
                    mv.region,
                    mv.source,
                    mv.dest,
                    mv.partitions.len(),
                    mv.source
                ),
                None => println!("no unfinished move: nothing to abort"),
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
