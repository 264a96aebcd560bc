//! `audit`: the invariants across every shard, the relay, the consumers and the read models
//! (see `tools::audit` and docs/audit.md). Exit 0: every check passed; 1: violations; 2: a
//! source could not be read, nothing was judged.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use shard_router::ShardMap;
use tools::audit::{Check, Sources};

#[derive(Debug, Parser)]
#[command(about = "Checks the invariants of the stack across shards, relay, consumers and read models")]
struct Args {
    #[arg(long, env = "TICKET_HUB_SHARDS_FILE", default_value = "shards.toml")]
    shards_file: PathBuf,
    /// The global Postgres server, without a database name: the placement, read_models and
    /// notifications databases are on it unless given below.
    #[arg(long, env = "TICKET_HUB_GLOBAL_PG", default_value = "postgres://postgres@127.0.0.1:5440")]
    global: String,
    #[arg(long)]
    placement: Option<String>,
    #[arg(long)]
    read_models: Option<String>,
    #[arg(long)]
    notifications: Option<String>,
    #[arg(long, default_value = "127.0.0.1:9092")]
    kafka: String,
    #[arg(long, default_value = platform::events::ORDERS_DLQ_TOPIC)]
    dlq_topic: String,
    /// Run only these checks (repeatable); all by default.
    #[arg(long = "check", value_enum)]
    checks: Vec<Check>,
    /// How long to wait for the pipeline to drain before reporting, in seconds.
    #[arg(long, default_value_t = 60)]
    wait_secs: u64,
    /// Violations listed per check.
    #[arg(long, default_value_t = 20)]
    max_listed: usize,
}

async fn audit(args: Args) -> anyhow::Result<bool> {
    let map = ShardMap::load(&args.shards_file)?;
    let global = args.global.trim_end_matches('/');
    let db = |given: &Option<String>, name: &str| given.clone().unwrap_or_else(|| format!("{global}/{name}"));
    let sources = Sources::connect_lazy(
        &map,
        &db(&args.placement, "placement"),
        &db(&args.read_models, "read_models"),
        &db(&args.notifications, "notifications"),
        &args.kafka,
        &args.dlq_topic,
    )?;
    let checks = if args.checks.is_empty() { Check::ALL.to_vec() } else { args.checks.clone() };
    let report = tools::audit::run(&sources, &checks, Duration::from_secs(args.wait_secs)).await?;
    print!("{}", report.render(args.max_listed));
    Ok(report.passed())
}

#[tokio::main]
async fn main() -> ExitCode {
    match audit(Args::parse()).await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("audit could not run, nothing was judged: {e:#}");
            ExitCode::from(2)
        }
    }
}
