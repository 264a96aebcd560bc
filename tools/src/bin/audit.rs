//! `audit`: the read models against the shards (see `tools::audit`). Exit code 1 when any
//! invariant is broken.

use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use shard_router::ShardMap;

#[derive(Debug, Parser)]
#[command(about = "Checks the projector's read models against the shards' tables")]
struct Args {
    #[arg(long, env = "TICKET_HUB_SHARDS_FILE", default_value = "shards.toml")]
    shards_file: PathBuf,
    /// The projector's database.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5440/read_models")]
    read_models: String,
    /// How long to wait for the projection to catch up before reporting, in seconds.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let map = ShardMap::load(&args.shards_file)?;
    let report = tools::audit::run(&map, &args.read_models, Duration::from_secs(args.wait_secs)).await?;
    println!(
        "audited {} shards: {} ticket types (stock invariant, event_sales), {} orders (customer_orders, \
         order_timeline with {} events)",
        report.shards, report.ticket_types, report.orders, report.timeline_events
    );
    for v in report.violations.iter().take(50) {
        println!("VIOLATION {v}");
    }
    if report.passed() {
        println!("audit passed: 0 violations");
        Ok(())
    } else {
        println!("audit failed: {} violations", report.violations.len());
        std::process::exit(1);
    }
}
