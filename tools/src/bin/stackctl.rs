//! `stackctl`: the parts of `./dev` that need the shard map.
//!
//! - `migrate [all|accounts|notifications|kafka|placement|read-models|shards]`: creates the databases when
//!   missing and applies `migrations/<kind>/`: `accounts`, `notifications`, `kafka`, `placement` and
//!   `read_models` on the global instance, `migrations/shard` on every shard. Idempotent: `./dev up` runs it on every start.
//! - `instances`: one line `NAME PORT` per local Postgres instance (the global one, then each
//!   shard whose URL points at this machine).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};
use platform::db::{self, Schema};
use shard_router::ShardMap;
use sqlx::postgres::PgPoolOptions;

#[derive(Debug, Parser)]
#[command(about = "Ticket Hub local stack helper")]
struct Args {
    /// The global Postgres server (accounts, notifications, kafka, read_models), without a database name.
    #[arg(long, env = "TICKET_HUB_GLOBAL_PG", default_value = "postgres://postgres@127.0.0.1:5440")]
    global: String,
    #[arg(long, env = "TICKET_HUB_SHARDS_FILE", default_value = "shards.toml")]
    shards_file: PathBuf,
    #[arg(long, env = "TICKET_HUB_MIGRATIONS_DIR", default_value = "migrations")]
    migrations: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Create databases and apply migrations.
    Migrate {
        #[arg(value_enum, default_value = "all")]
        target: Target,
    },
    /// List the local Postgres instances as `NAME PORT` lines.
    Instances,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    All,
    Accounts,
    Notifications,
    Kafka,
    Placement,
    ReadModels,
    Shards,
}

async fn apply(url: &str, root: &std::path::Path, schema: Schema) -> anyhow::Result<()> {
    db::ensure_database(url).await?;
    let pool = PgPoolOptions::new().max_connections(1).acquire_timeout(Duration::from_secs(10)).connect(url).await?;
    db::migrate(&pool, root, schema).await?;
    pool.close().await;
    Ok(())
}

fn local_port(url: &str) -> Option<u16> {
    let url = url::Url::parse(url).ok()?;
    matches!(url.host_str()?, "127.0.0.1" | "localhost" | "::1" | "[::1]").then(|| url.port().unwrap_or(5432))
}

async fn migrate(args: &Args, target: Target) -> anyhow::Result<()> {
    let global = args.global.trim_end_matches('/');
    let wants = |t: Target| target == Target::All || target == t;
    for (t, schema, database) in [
        (Target::Accounts, Schema::Accounts, "accounts"),
        (Target::Notifications, Schema::Notifications, "notifications"),
        (Target::Kafka, Schema::Kafka, "kafka"),
        (Target::Placement, Schema::Placement, "placement"),
        (Target::ReadModels, Schema::ReadModels, "read_models"),
    ] {
        if wants(t) {
            apply(&format!("{global}/{database}"), &args.migrations, schema).await?;
            println!("migrated {database} on {global}");
        }
    }
    if wants(Target::Shards) {
        let map = ShardMap::load(&args.shards_file)?;
        for shard in map.shards() {
            apply(shard.url.expose(), &args.migrations, Schema::Shard).await?;
            println!("migrated shard {} ({}) at {}", shard.name, shard.region, shard.url);
        }
    }
    Ok(())
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    match args.command {
        Command::Migrate { target } => migrate(&args, target).await,
        Command::Instances => {
            let map = ShardMap::load(&args.shards_file)?;
            let global =
                local_port(&args.global).ok_or_else(|| anyhow::anyhow!("--global must point at this machine"))?;
            println!("global {global}");
            for shard in map.shards() {
                if let Some(port) = local_port(shard.url.expose()) {
                    println!("{} {port}", shard.name);
                }
            }
            Ok(())
        }
    }
}
