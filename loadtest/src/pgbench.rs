//! The reference: pgbench running the service's per-order transaction (`tools/pgbench/order.sql`)
//! straight on a shard's Postgres server, in a database of its own (`loadtest_pgbench`, same
//! schema) so the stack's data is never touched. What no service in front of that shard can
//! beat on this machine: the ceiling every `createOrder` figure is divided by.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::Context;
use hdrhistogram::Histogram;
use platform::db::{self, Schema};
use serde::Serialize;
use shard_router::Shard;

use crate::stats::Percentiles;

/// The database the reference runs in, on each shard's server.
pub const DATABASE: &str = "loadtest_pgbench";
/// Ticket types `setup.sql` seeds.
pub const SEEDED_TICKET_TYPES: usize = 1000;

/// One pgbench run.
#[derive(Debug, Clone, Serialize)]
pub struct PgbenchRun {
    pub shard: String,
    pub region: String,
    pub clients: usize,
    /// 1 = one hot row.
    pub ticket_types: usize,
    pub duration_s: f64,
    /// Transactions per second, as pgbench counts them (without connection time).
    pub tps: f64,
    pub transactions: u64,
    pub failed: u64,
    #[serde(flatten)]
    pub latency: Percentiles,
}

/// The pgbench binary: `explicit`, else on PATH, else the newest under /usr/lib/postgresql.
pub fn find_binary(explicit: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(p) = explicit {
        return Ok(p.to_owned());
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("pgbench");
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let version: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin/pgbench");
            bin.is_file().then_some((version, bin))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, p)| p).context("no pgbench found: install postgresql (it ships pgbench) or pass --pgbench-bin")
}

/// Creates (once) the reference database on `shard`'s server with the shard schema, and seeds
/// it with `setup.sql`. Returns its URL.
pub async fn prepare(shard: &Shard, migrations: &Path, dir: &Path) -> anyhow::Result<String> {
    let url = shard.url.with_database(DATABASE);
    let url = url.expose().to_owned();
    db::ensure_database(&url).await.with_context(|| format!("creating {DATABASE} on shard {}", shard.name))?;
    let pool = sqlx::postgres::PgPoolOptions::new().max_connections(1).connect(&url).await?;
    db::migrate(&pool, migrations, Schema::Shard).await?;
    let setup =
        std::fs::read_to_string(dir.join("setup.sql")).with_context(|| format!("{}/setup.sql", dir.display()))?;
    sqlx::raw_sql(&setup).execute(&pool).await.context("running setup.sql")?;
    sqlx::raw_sql("vacuum analyze").execute(&pool).await?;
    pool.close().await;
    Ok(url)
}

/// Runs `order.sql` with `clients` clients over `ticket_types` ticket types for `duration`.
pub async fn run(
    bin: &Path,
    dir: &Path,
    url: &str,
    shard: &Shard,
    clients: usize,
    ticket_types: usize,
    duration: Duration,
) -> anyhow::Result<PgbenchRun> {
    let conn = url::Url::parse(url)?;
    let logs = std::env::temp_dir().join(format!("loadtest-pgbench-{}-{}", std::process::id(), shard.name));
    let _ = std::fs::remove_dir_all(&logs);
    std::fs::create_dir_all(&logs)?;
    let secs = duration.as_secs().max(1);
    let mut cmd = tokio::process::Command::new(bin);
    cmd.args(["-n", "-M", "prepared", "-l", "--log-prefix"])
        .arg(logs.join("tx"))
        .args(["-c", &clients.to_string(), "-j", &clients.clamp(1, 2).to_string(), "-T", &secs.to_string()])
        .arg("-D")
        .arg(format!("ticket_types={}", ticket_types.clamp(1, SEEDED_TICKET_TYPES)))
        .arg("-f")
        .arg(dir.join("order.sql"))
        .args(["-h", conn.host_str().unwrap_or("127.0.0.1"), "-p", &conn.port().unwrap_or(5432).to_string()])
        .args(["-U", if conn.username().is_empty() { "postgres" } else { conn.username() }])
        .arg(conn.path().trim_start_matches('/'))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(pw) = conn.password() {
        cmd.env("PGPASSWORD", pw);
    }
    let out = cmd.output().await.with_context(|| format!("running {}", bin.display()))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    anyhow::ensure!(out.status.success(), "pgbench failed ({}): {stderr}{stdout}", out.status);
    let summary = parse_summary(&stdout).with_context(|| format!("reading pgbench's output:\n{stdout}"))?;
    let mut hist = Histogram::<u64>::new_with_bounds(1, 120_000_000, 3)?;
    for entry in std::fs::read_dir(&logs)? {
        let text = std::fs::read_to_string(entry?.path())?;
        for micros in log_latencies(&text) {
            hist.saturating_record(micros.max(1));
        }
    }
    let _ = std::fs::remove_dir_all(&logs);
    Ok(PgbenchRun {
        shard: shard.name.to_string(),
        region: shard.region.to_string(),
        clients,
        ticket_types,
        duration_s: secs as f64,
        tps: summary.tps,
        transactions: summary.transactions,
        failed: summary.failed,
        latency: Percentiles::of(&hist),
    })
}

/// What pgbench prints at the end.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub tps: f64,
    pub transactions: u64,
    pub failed: u64,
}

/// Reads `tps = …`, `number of transactions actually processed: …` and (pgbench ≥ 15)
/// `number of failed transactions: …`.
pub fn parse_summary(stdout: &str) -> Option<Summary> {
    let number_after = |prefix: &str| {
        stdout.lines().find_map(|l| l.trim().strip_prefix(prefix)).and_then(|rest| {
            let n: String = rest.trim().chars().take_while(|c| c.is_ascii_digit() || *c == '.').collect();
            n.parse::<f64>().ok()
        })
    };
    Some(Summary {
        tps: number_after("tps =")?,
        transactions: number_after("number of transactions actually processed:")? as u64,
        failed: number_after("number of failed transactions:").unwrap_or(0.0) as u64,
    })
}

/// Latencies in microseconds from pgbench's per-transaction log lines
/// (`client_id transaction_no time script_no time_epoch time_us`); failed or skipped
/// transactions (a non-numeric time) are left out.
pub fn log_latencies(text: &str) -> impl Iterator<Item = u64> + '_ {
    text.lines().filter_map(|l| l.split_whitespace().nth(2)?.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    const PGBENCH_15: &str = "pgbench (15.14 (Debian 15.14-0+deb12u1))
transaction type: tools/pgbench/order.sql
scaling factor: 1
query mode: prepared
number of clients: 16
number of threads: 2
maximum number of tries: 1
duration: 20 s
number of transactions actually processed: 61234
number of failed transactions: 0 (0.000%)
latency average = 5.213 ms
initial connection time = 21.123 ms
tps = 3061.712345 (without initial connection time)
";

    #[test]
    fn reads_the_summary() {
        let s = parse_summary(PGBENCH_15).unwrap();
        assert_eq!(s, Summary { tps: 3061.712345, transactions: 61234, failed: 0 });
        assert!(parse_summary("pgbench: error: connection refused").is_none());
    }

    /// The reference script against the shard schema as the migrations leave it today, on the
    /// first shard's server of `shards.toml` (`./dev infra`): a migration that changes what an
    /// order writes (a NOT NULL column, the fence) must change `order.sql` with it, or every
    /// `--pgbench` run aborts, which is how the fence's arrival went unnoticed for a while.
    #[tokio::test]
    async fn the_reference_transaction_runs_on_the_current_shard_schema() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_owned();
        let map = shard_router::ShardMap::load(root.join("shards.toml")).unwrap();
        let shard = map.shards().next().unwrap().clone();
        let dir = root.join("tools/pgbench");
        let url = prepare(&shard, &root.join("migrations"), &dir).await.unwrap();
        let bin = find_binary(None).unwrap();
        let run = run(&bin, &dir, &url, &shard, 2, 50, Duration::from_secs(1)).await.unwrap();
        assert_eq!(run.failed, 0, "{run:?}");
        assert!(run.transactions > 0, "{run:?}");
        // Each transaction is one whole order: its outbox row and its answered key.
        let pool = sqlx::PgPool::connect(&url).await.unwrap();
        let (orders, outbox, answered): (i64, i64, i64) = sqlx::query_as(
            "select (select count(*) from orders), (select count(*) from outbox), \
                    (select count(*) from idempotency_keys where status_code = 201)",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!((orders, outbox, answered), (orders, orders, orders));
        assert!(orders as u64 >= run.transactions, "{orders} orders for {run:?}");
    }

    #[test]
    fn reads_log_lines() {
        let log = "0 1 5123 0 1764040000 123456\n1 1 812 0 1764040000 223456\nbad\n2 7 failed 0 1764040001 1\n";
        assert_eq!(log_latencies(log).collect::<Vec<_>>(), [5123, 812]);
    }
}
