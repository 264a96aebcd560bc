//! `orders-relay [run] | status | reprocess`: the relay process and its two operator commands.
//!
//! `status` and `reprocess` talk to the shard databases directly (no running relay needed),
//! print to stdout and exit non-zero when something needs attention.

use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

use clap::Subcommand;
use shard_router::ShardMap;
use sqlx::{ConnectOptions, Connection, PgConnection};

use super::{Relay, SERVICE, Settings, outbox, select_shards};

/// What `orders-relay --help` says the binary is.
pub const ABOUT: &str = "Per-shard outbox relays into orders.events, and their operator commands";

/// `orders-relay [--config FILE] [COMMAND]`.
pub type Args = platform::cli::Cli<Command>;

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Relay every shard's outbox (or the --shard ones) until SIGTERM; the default.
    Run {
        /// A shard to relay (repeatable); overrides the `shards` setting.
        #[arg(long = "shard")]
        shards: Vec<String>,
    },
    /// Per shard: pending and failed rows, the oldest pending row's age, who holds the lease.
    Status {
        #[arg(long = "shard")]
        shards: Vec<String>,
    },
    /// Re-queue FAILED rows (fresh attempt budget) so the relay publishes them again.
    Reprocess {
        /// The shard(s) to act on; required with --id when the map has several shards.
        #[arg(long = "shard")]
        shards: Vec<String>,
        /// An outbox id to re-queue (repeatable); ids are per shard.
        #[arg(long = "id", required_unless_present = "all_failed", conflicts_with = "all_failed")]
        ids: Vec<i64>,
        /// Re-queue every FAILED row of the selected shards.
        #[arg(long)]
        all_failed: bool,
    },
}

/// Runs the parsed command.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut settings: Settings = args.config.load(SERVICE)?;
    match args.command.unwrap_or(Command::Run { shards: Vec::new() }) {
        Command::Run { shards } => {
            let _telemetry = platform::telemetry::init(SERVICE);
            if !shards.is_empty() {
                settings.shards = shards;
            }
            let map = ShardMap::load(&settings.shards_file)?;
            let relay = Relay::build(settings, map).await?;
            relay.run_until_stopped(platform::shutdown::on_signal()).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Status { shards } => {
            let map = ShardMap::load(&settings.shards_file)?;
            status(&map, &shards, &mut std::io::stdout().lock()).await
        }
        Command::Reprocess { shards, ids, all_failed } => {
            let map = ShardMap::load(&settings.shards_file)?;
            let ids = (!all_failed).then_some(ids);
            reprocess(&map, &shards, ids.as_deref(), &mut std::io::stdout().lock()).await
        }
    }
}

async fn connect(shard: &shard_router::Shard) -> anyhow::Result<PgConnection> {
    let opts: sqlx::postgres::PgConnectOptions = shard.url.expose().parse()?;
    let opts = opts.application_name("orders-relay cli").log_statements(tracing::log::LevelFilter::Trace);
    let conn = tokio::time::timeout(Duration::from_secs(5), opts.connect())
        .await
        .map_err(|_| anyhow::anyhow!("no connection within 5 s"))??;
    Ok(conn)
}

fn age(secs: Option<f64>) -> String {
    match secs {
        None => "-".into(),
        Some(s) if s < 120.0 => format!("{s:.1}s"),
        Some(s) if s < 7200.0 => format!("{:.1}m", s / 60.0),
        Some(s) => format!("{:.1}h", s / 3600.0),
    }
}

/// Prints one line per shard; exit code 1 when a shard is unreachable.
pub async fn status(map: &ShardMap, names: &[String], out: &mut impl Write) -> anyhow::Result<ExitCode> {
    let shards = select_shards(map, names)?;
    let mut code = ExitCode::SUCCESS;
    writeln!(
        out,
        "{:<10} {:<7} {:>9} {:>7} {:>15}  LEASE HOLDER",
        "SHARD", "REGION", "PENDING", "FAILED", "OLDEST PENDING"
    )?;
    for shard in shards {
        let result = async { outbox::status(&mut connect(shard).await?).await.map_err(anyhow::Error::from) }.await;
        match result {
            Ok(s) => writeln!(
                out,
                "{:<10} {:<7} {:>9} {:>7} {:>15}  {}",
                shard.name.as_str(),
                shard.region.as_str(),
                s.pending,
                s.failed,
                age(s.oldest_pending_secs),
                s.leader.as_deref().unwrap_or("none (no relay running)")
            )?,
            Err(e) => {
                writeln!(out, "{:<10} {:<7} unreachable: {e}", shard.name.as_str(), shard.region.as_str())?;
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}

/// Re-queues FAILED rows; `ids: None` means all of them. Exit code 1 when a named id was not
/// FAILED or does not exist, or a shard is unreachable.
pub async fn reprocess(
    map: &ShardMap,
    names: &[String],
    ids: Option<&[i64]>,
    out: &mut impl Write,
) -> anyhow::Result<ExitCode> {
    let shards = select_shards(map, names)?;
    if ids.is_some() && shards.len() > 1 {
        anyhow::bail!(
            "--id: outbox ids are per shard; name the shard with --shard (one of the {} shards)",
            shards.len()
        );
    }
    let mut code = ExitCode::SUCCESS;
    for shard in shards {
        let result = async {
            let mut conn = connect(shard).await?;
            let r = outbox::requeue(&mut conn, ids).await?;
            let _ = conn.close().await;
            anyhow::Ok(r)
        }
        .await;
        match result {
            Ok(r) => {
                let list: Vec<String> = r.ids.iter().map(i64::to_string).collect();
                writeln!(
                    out,
                    "{}: re-queued {} FAILED row(s){}",
                    shard.name,
                    r.ids.len(),
                    if list.is_empty() { String::new() } else { format!(": {}", list.join(", ")) }
                )?;
                for (id, status) in &r.not_failed {
                    writeln!(out, "{}: outbox id {id} is {status}, not FAILED; left as it is", shard.name)?;
                    code = ExitCode::FAILURE;
                }
                for id in &r.missing {
                    writeln!(out, "{}: no outbox row with id {id}", shard.name)?;
                    code = ExitCode::FAILURE;
                }
            }
            Err(e) => {
                writeln!(out, "{}: unreachable: {e}", shard.name)?;
                code = ExitCode::FAILURE;
            }
        }
    }
    Ok(code)
}
