//! The command line: one scenario and the knobs shared by all of them.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, ValueEnum};

use crate::mix::Mix;

/// What to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scenario {
    /// `createOrder` tagged with a region drawn from `--mix`, over `--ticket-types` ticket types
    /// per region (or one with `--hot`).
    Orders,
    /// `events(region, first)` and `event(id)` reads (`--query`). Pointed at a gateway without
    /// a reachable Redis (`--gateway`), the same reads measure the uncached path.
    Browse,
    /// `--buyers` customers race for `--tickets` tickets of one ticket type, all at once.
    FlashSale,
    /// Reads and orders together (50 % `events`, 25 % `event`, 25 % `createOrder`).
    Mixed,
    /// Only the pgbench reference: the per-order transaction straight on each shard.
    Pgbench,
    /// Orders, payments and idempotent replays while `orders-rebalance apply` carries out
    /// the plan of the stack's shards.toml; then an audit of orders, stock and events.
    Rebalance,
}

/// Which reads `browse` sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BrowseQuery {
    Events,
    Event,
    Both,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "loadtest",
    about = "Load tests of the Ticket Hub stack through the GraphQL gateway, per region and per shard",
    after_help = "Closed loop by default (--concurrency workers, each sending its next request when the \
                  last one answered); --rate switches to an open loop whose latencies count from each \
                  request's intended send time."
)]
pub struct Args {
    #[arg(value_enum)]
    pub scenario: Scenario,

    /// The gateway's GraphQL endpoint. Only loopback addresses are accepted.
    #[arg(long, default_value = "http://127.0.0.1:4000/graphql", env = "LOADTEST_GATEWAY")]
    pub gateway: String,
    /// The shard map: routes each event id to its shard, and names the databases that the
    /// sell-out check, the relay measurement and pgbench use.
    #[arg(long, default_value = "shards.toml")]
    pub shards_file: PathBuf,
    /// The shard migrations, applied to the pgbench database so it has the very same schema.
    #[arg(long, default_value = "migrations")]
    pub migrations: PathBuf,

    /// Share of requests per region, e.g. `NA=70,SA=30`; default: the regions of the shard map,
    /// equally. The first region is also where the flash sale happens.
    #[arg(long)]
    pub mix: Option<Mix>,
    /// Closed loop: requests in flight at any time.
    #[arg(long, short = 'c', default_value_t = 16)]
    pub concurrency: usize,
    /// Open loop: requests per second, sent on a fixed schedule whatever the answers do.
    #[arg(long, short = 'r')]
    pub rate: Option<u32>,
    /// Open loop: most requests in flight before sends fall behind schedule (their latency
    /// still counts from the intended time).
    #[arg(long, default_value_t = 2048)]
    pub max_in_flight: usize,
    /// Measured time (`30s`, `2m`, `500ms`).
    #[arg(long, short = 'd', default_value = "20s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Load before measuring starts, discarded (connections, caches, JIT-less warm pools).
    #[arg(long, short = 'w', default_value = "3s", value_parser = parse_duration)]
    pub warmup: Duration,
    /// Timeout of one request.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub timeout: Duration,

    /// Ticket types per region that orders spread over (at most 50 per event; more make more
    /// events).
    #[arg(long, default_value_t = 50)]
    pub ticket_types: usize,
    /// Events per region (browse reads them; the ticket types are spread over them).
    #[arg(long, default_value_t = 5)]
    pub events: usize,
    /// Tickets of each ticket type in `orders` / `mixed`: enough that the run never sells out.
    #[arg(long, default_value_t = 1_000_000)]
    pub stock: u32,
    /// Every order of a region on one ticket type: the single hot row.
    #[arg(long)]
    pub hot: bool,
    /// Customers that orders rotate over.
    #[arg(long, default_value_t = 32)]
    pub customers: usize,
    /// `browse`: which reads.
    #[arg(long, value_enum, default_value = "both")]
    pub query: BrowseQuery,
    /// `flash-sale`: buyers, each sending one order for one ticket at the same moment.
    #[arg(long, default_value_t = 500)]
    pub buyers: usize,
    /// `flash-sale`: tickets on sale.
    #[arg(long, default_value_t = 100)]
    pub tickets: u32,
    /// Signups and logins in flight during setup (argon2 bound, so small).
    #[arg(long, default_value_t = 4)]
    pub setup_concurrency: usize,

    /// Also run the pgbench reference in the same run, after the load, on the shards the load
    /// touched (for `pgbench` itself, on every shard).
    #[arg(long)]
    pub pgbench: bool,
    /// pgbench client counts to try; the best is the ceiling ratios are taken against.
    /// Default: `--concurrency`.
    #[arg(long, value_delimiter = ',')]
    pub pgbench_clients: Vec<usize>,
    /// How long each pgbench run lasts; default: `--duration`.
    #[arg(long, value_parser = parse_duration)]
    pub pgbench_duration: Option<Duration>,
    /// The pgbench binary; default: on PATH, else the newest under /usr/lib/postgresql.
    #[arg(long)]
    pub pgbench_bin: Option<PathBuf>,
    /// The pgbench folder with `setup.sql` and `order.sql`.
    #[arg(long, default_value = "tools/pgbench")]
    pub pgbench_dir: PathBuf,

    /// Wait for each touched shard's outbox to drain after the load and report the relay's
    /// throughput (at most this long; `0s` skips it).
    #[arg(long, default_value = "30s", value_parser = parse_duration)]
    pub relay_wait: Duration,
    /// Sample the resident memory of the processes whose pid files are in this folder (e.g.
    /// `.stack/run`) during the run.
    #[arg(long)]
    pub rss_from: Option<PathBuf>,

    /// `rebalance`: when, into the measured window, the apply starts.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub rebalance_after: Duration,
    /// `rebalance`: partitions per move (the apply's --batch).
    #[arg(long, default_value_t = 64)]
    pub batch: usize,
    /// `rebalance`: the orders-rebalance binary (default: next to this one).
    #[arg(long)]
    pub rebalance_bin: Option<PathBuf>,
    /// `rebalance`: the live placement database.
    #[arg(
        long,
        default_value = "postgres://postgres@127.0.0.1:5440/placement",
        env = "TICKET_HUB_ORDERS__PLACEMENT_URL"
    )]
    pub placement_url: String,
    /// `rebalance`: the notifications database, for the audit of events.
    #[arg(long, default_value = "postgres://postgres@127.0.0.1:5440/notifications")]
    pub notifications_url: String,

    /// Faults to inject during the measured window through `./dev chaos`, e.g.
    /// `at=10s stop-shard sa-1; at=20s start-shard sa-1; at=30s pause-broker 40; at=50s kill-relay`.
    /// They are marked on the chart, and the report gives the errors per region during each and
    /// the time to recover.
    #[arg(long, value_parser = crate::chaos::schedule)]
    pub chaos: Option<crate::chaos::Schedule>,
    /// `browse`: after the gateway, the same reads against the read ceiling (the
    /// `read-ceiling` binary: the gateway's bytes for each body from one Redis `GET`), for
    /// the ratio of the cached read to the cheapest endpoint that could serve it.
    #[arg(long)]
    pub read_ceiling: bool,
    /// `browse`: after the gateway, the same reads through a second gateway (the `gateway`
    /// binary next to this one, on a free port) whose Redis is unreachable: the uncached path
    /// the cache is measured against, in the same run.
    #[arg(long)]
    pub uncached: bool,
    /// After the scenario's window, this many logins (of the run's customers, in turn) at
    /// `--login-concurrency`, inside the memory sampling: the accounts memory target.
    #[arg(long, default_value_t = 0)]
    pub logins: usize,
    #[arg(long, default_value_t = 64)]
    pub login_concurrency: usize,
    /// The Redis the read ceiling keeps its copies in.
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    pub redis_url: String,
    /// The `dev` script `--chaos` runs.
    #[arg(long, default_value = "./dev")]
    pub dev: PathBuf,

    /// Write the report as JSON.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG chart of throughput and p99 per second per shard.
    #[arg(long)]
    pub chart: Option<PathBuf>,
    /// No live progress line.
    #[arg(long, short = 'q')]
    pub quiet: bool,
    /// Seed of the choices of region, ticket type and event (runs are repeatable).
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
}

impl Args {
    /// pgbench client counts to try.
    pub fn pgbench_clients(&self) -> Vec<usize> {
        if self.pgbench_clients.is_empty() { vec![self.concurrency] } else { self.pgbench_clients.clone() }
    }
}

/// `30s`, `2m`, `500ms`, `1.5s`, or a bare number of seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let t = text.trim();
    let (number, unit) = match t.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => t.split_at(i),
        None => (t, "s"),
    };
    let n: f64 = number.parse().map_err(|_| format!("`{text}` is not a duration like 30s, 2m or 500ms"))?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(format!("`{text}`: unit must be ms, s or m")),
    };
    if !secs.is_finite() || !(0.0..=86_400.0).contains(&secs) {
        return Err(format!("`{text}` is out of range"));
    }
    Ok(Duration::from_secs_f64(secs))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30s"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert_eq!(parse_duration("10"), Ok(Duration::from_secs(10)));
        assert!(parse_duration("10h").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("-1s").is_err());
    }

    #[test]
    fn the_command_line_parses() {
        let args = Args::try_parse_from(["loadtest", "orders", "--mix", "NA=70,SA=30", "--rate", "500"]);
        let args = args.expect("valid command line");
        assert_eq!(args.scenario, Scenario::Orders);
        assert_eq!(args.rate, Some(500));
        assert_eq!(args.pgbench_clients(), vec![16]);
        assert!(Args::try_parse_from(["loadtest", "orders", "--mix", "NA=0"]).is_err());
    }
}
