//! loadtest: load tests of the running stack through the GraphQL gateway, with results per
//! region and per shard, and a pgbench reference measured in the same run.
//!
//! Its own small engine on tokio + reqwest + hdrhistogram rather than goose: an open loop whose
//! latency counts from each request's intended send time (no coordinated omission), results
//! labelled by the shard each request's data lives on (routed with `shard-router` and
//! `shards.toml`, as the services route), a one-shot flash sale that is not a duration-bound
//! user loop, and far fewer dependencies on a machine where every build competes for 2 cores.
//!
//! # Layout
//! - [`cli`]: the command line. [`mix`]: `--mix NA=70,SA=30` and the deterministic choices.
//! - [`client`]: the GraphQL operations and error codes. [`setup`]: users and events per region.
//! - [`workload`]: one request of `orders`, `browse`, `mixed`. [`flash`]: the flash sale.
//! - [`engine`]: closed and open loops, warm-up, progress line; [`schedule`]: the open-loop
//!   arrival times. [`stats`]: histograms, rows and the per-second timeline.
//! - [`pgbench`]: the write reference; [`ceiling`]: the read reference (`--read-ceiling`), [`uncached`]: the uncached gateway (`--uncached`); [`logins`]: the login burst (`--logins`). [`relay`]: outbox publication after the load. [`rss`]: memory.
//! - [`report`]: table, JSON, SVG chart. [`chaos`]: `--chaos` faults and what they did.

pub mod ceiling;
pub mod chaos;
pub mod cli;
pub mod client;
pub mod engine;
pub mod flash;
pub mod logins;
pub mod mix;
pub mod pgbench;
pub mod rebalance;
pub mod relay;
pub mod report;
pub mod rss;
pub mod schedule;
pub mod setup;
pub mod stats;
pub mod uncached;
pub mod workload;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use chrono::Utc;
use shard_router::{Router, ShardMap};

use crate::cli::{Args, Scenario};
use crate::client::Gql;
use crate::engine::{Mode, Plan};
use crate::mix::Mix;
use crate::report::{Machine, Ratio, Report};
use crate::setup::Fixture;

fn rebalance_options(args: &Args) -> anyhow::Result<rebalance::Options> {
    let bin = match &args.rebalance_bin {
        Some(b) => b.clone(),
        None => std::env::current_exe()?.with_file_name("orders-rebalance"),
    };
    Ok(rebalance::Options {
        placement_url: args.placement_url.clone(),
        notifications_url: args.notifications_url.clone(),
        after: args.rebalance_after,
        batch: args.batch,
        bin,
        shards_file: args.shards_file.clone(),
    })
}

/// Runs the scenario `args` names and prints (and writes) its report.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let map = ShardMap::load(&args.shards_file).with_context(|| format!("loading {}", args.shards_file.display()))?;
    let router = Router::new(&map);
    let mix = match &args.mix {
        Some(m) => m.clone(),
        None => Mix::equal(&map.regions().map(|r| r.name.as_str().to_owned()).collect::<Vec<_>>())
            .map_err(anyhow::Error::msg)?,
    };
    for region in mix.regions() {
        anyhow::ensure!(
            map.region_named(region).is_some(),
            "--mix names region {region}, which shards.toml does not have"
        );
    }
    anyhow::ensure!(
        !args.read_ceiling || args.scenario == Scenario::Browse,
        "--read-ceiling: only the browse scenario is measured against the read ceiling"
    );
    anyhow::ensure!(
        !args.uncached || args.scenario == Scenario::Browse,
        "--uncached: only the browse scenario is measured without the cache"
    );
    anyhow::ensure!(
        args.logins == 0 || matches!(args.scenario, Scenario::Mixed | Scenario::Orders | Scenario::Browse),
        "--logins: the burst follows an orders, browse or mixed run"
    );
    let (mode, concurrency) = match args.rate {
        Some(rate) => (Mode::Open { rate_per_s: rate, max_in_flight: args.max_in_flight }, None),
        None => (Mode::Closed { concurrency: args.concurrency }, Some(args.concurrency)),
    };
    let mut report = Report {
        scenario: args.scenario,
        started_at: Utc::now().to_rfc3339(),
        machine: Machine::this(),
        mode: if args.rate.is_some() { "open" } else { "closed" }.into(),
        concurrency,
        rate_per_s: args.rate,
        warmup_s: args.warmup.as_secs_f64(),
        duration_s: args.duration.as_secs_f64(),
        mix: mix.shares().map(|(r, s)| (r.to_owned(), s)).collect(),
        hot: args.hot,
        ticket_types_per_region: if args.hot { 1 } else { args.ticket_types },
        gateway: args.gateway.clone(),
        rows: Vec::new(),
        timeline: Vec::new(),
        requests: 0,
        warmup_requests: 0,
        late_sends: 0,
        flash_sale: None,
        pgbench: Vec::new(),
        ratios: Vec::new(),
        relay: Vec::new(),
        usage: rss::Usage::default(),
        rebalance: None,
        chaos: Vec::new(),
        region_timeline: Vec::new(),
        read_ceiling: Vec::new(),
        uncached: Vec::new(),
        logins: None,
    };
    let rss_dir = args.rss_from.clone().unwrap_or_default();
    let sample = || rss::Sampler::start(rss_dir.clone(), Duration::from_millis(250));

    // `rebalance`: which partitions the plan moves, known before the load so it can label them.
    let rebalance_moving = if args.scenario == Scenario::Rebalance {
        let opts = rebalance_options(&args)?;
        let moving = rebalance::moving_partitions(&map, &opts.placement_url).await?;
        anyhow::ensure!(
            !moving.is_empty(),
            "shards.toml asks for no move against the live placement: add a shard to a region first (docs/rebalancing.md)"
        );
        eprintln!("rebalance: the plan moves {} partitions", moving.len());
        Some(moving)
    } else {
        None
    };

    // Shards whose orders the pgbench reference and the relay measurement are about.
    let mut order_shards: BTreeSet<String> = BTreeSet::new();
    let load_started = Utc::now();
    if args.scenario == Scenario::Pgbench {
        order_shards.extend(map.shards().map(|s| s.name.to_string()));
    } else {
        let gql = Gql::new(&args.gateway, args.timeout)?;
        let tag = setup::run_tag();
        eprintln!("setup: run tag {tag}");
        let organizer = setup::users(&gql, &tag, "ORGANIZER", 1, 1)
            .await
            .context("setup through the gateway; is the stack up (./dev up -d)?")?
            .remove(0);
        if args.scenario == Scenario::FlashSale {
            let region = mix.regions().next().unwrap_or("NA").to_owned();
            eprintln!("setup: {} buyers, one event in {region} with {} tickets", args.buyers, args.tickets);
            let buyers = setup::users(&gql, &tag, "CUSTOMER", args.buyers, args.setup_concurrency).await?;
            let event = setup::events(&gql, &router, &organizer, &tag, &region, &[1], args.tickets).await?.remove(0);
            eprintln!("flash sale: {} buyers at once for {} tickets", buyers.len(), args.tickets);
            let sampler = sample();
            let (mut sale, recorder) = flash::run(&gql, &buyers, &event, args.tickets).await;
            report.usage = sampler.finish().await;
            let shard = map.shard_named(&event.shard).context("the event's shard is not in shards.toml")?;
            flash::check_stock(shard.url.expose(), &event.ticket_types[0], &mut sale)
                .await
                .context("counting the sale on the shard")?;
            order_shards.insert(event.shard.to_string());
            report.rows = recorder
                .rows(Duration::from_secs_f64(sale.sell_out_ms.unwrap_or(sale.latency.max_ms).max(1.0) / 1000.0));
            report.requests = sale.buyers as u64;
            report.mode = "burst".into();
            report.concurrency = Some(sale.buyers);
            report.rate_per_s = None;
            report.warmup_s = 0.0;
            report.duration_s = 0.0;
            report.flash_sale = Some(sale);
        } else {
            let customers = if args.scenario == Scenario::Browse { 1 } else { args.customers.max(1) };
            eprintln!("setup: {customers} customers, {} events per region", args.events);
            let mut fixture = Fixture {
                customers: setup::users(&gql, &tag, "CUSTOMER", customers, args.setup_concurrency).await?,
                events: BTreeMap::new(),
            };
            let spread = setup::spread(if args.hot { 1 } else { args.ticket_types }, args.events);
            for region in mix.regions() {
                let events = setup::events(&gql, &router, &organizer, &tag, region, &spread, args.stock).await?;
                fixture.events.insert(region.to_owned(), events);
            }
            let common = workload::Common::new(gql, mix.clone(), &fixture, args.seed)?;
            let plan = Plan { mode, warmup: args.warmup, duration: args.duration, progress: !args.quiet };
            eprintln!(
                "load: {:?}, {} s warm-up + {} s",
                plan.mode,
                plan.warmup.as_secs_f64(),
                plan.duration.as_secs_f64()
            );
            let sampler = sample();
            let faults = args.chaos.clone().map(|faults| {
                let origin = tokio::time::Instant::now() + plan.warmup;
                tokio::spawn(chaos::drive(faults.0, origin, args.dev.clone()))
            });
            let measured = match args.scenario {
                Scenario::Browse => engine::run(Arc::new(workload::Browse { common, query: args.query }), plan).await,
                Scenario::Mixed => engine::run(Arc::new(workload::Mixed::new(common)), plan).await,
                Scenario::Rebalance => {
                    let opts = rebalance_options(&args)?;
                    let events: Vec<_> = fixture.events.values().flatten().cloned().collect();
                    let moving = rebalance_moving.clone().unwrap_or_default();
                    let load = Arc::new(rebalance::Load::new(
                        Gql::new(&args.gateway, args.timeout)?,
                        &map,
                        &events,
                        fixture.customers.clone(),
                        &moving,
                        args.seed,
                    ));
                    let origin = tokio::time::Instant::now() + plan.warmup;
                    let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
                    let driver = tokio::spawn(rebalance::drive(opts.clone(), origin, load.clone(), done.clone()));
                    let measured = engine::run(load.clone(), plan).await;
                    let mut apply = driver.await??;
                    rebalance::figures(&mut apply, &opts.placement_url, load_started).await?;
                    eprintln!("audit: reading the shards, the live map and the notifications");
                    let audit =
                        rebalance::audit(&map, &opts, &load.acked(), args.relay_wait.max(Duration::from_secs(10)))
                            .await?;
                    let p99_ms = measured
                        .recorder
                        .rows(measured.window)
                        .iter()
                        .filter(|r| r.op == "createOrder")
                        .map(|r| (r.region.clone(), r.shard.clone(), r.latency.p99_ms))
                        .collect();
                    report.rebalance = Some(report::RebalanceReport { apply, audit, p99_ms });
                    measured
                }
                _ => engine::run(Arc::new(workload::Orders { common, hot: args.hot }), plan).await,
            };
            if args.logins > 0 {
                eprintln!("logins: a burst of {} at concurrency {}", args.logins, args.login_concurrency);
                let gql = Gql::new(&args.gateway, args.timeout)?;
                report.logins = Some(logins::burst(&gql, &tag, customers, args.logins, args.login_concurrency).await);
            }
            report.usage = sampler.finish().await;
            if args.uncached {
                let uncached = uncached::Gateway::start().await?;
                eprintln!("uncached: the same reads through {} (no Redis)", uncached.url);
                let common =
                    workload::Common::new(Gql::new(&uncached.url, args.timeout)?, mix.clone(), &fixture, args.seed)?;
                let measured = engine::run(Arc::new(workload::Browse { common, query: args.query }), plan).await;
                report.uncached = measured.recorder.rows(measured.window);
            }
            if args.read_ceiling {
                let ceiling = ceiling::Process::start(&args.redis_url, &args.gateway).await?;
                eprintln!("read ceiling: the same reads against {}", ceiling.url);
                let common =
                    workload::Common::new(Gql::new(&ceiling.url, args.timeout)?, mix.clone(), &fixture, args.seed)?;
                let at_ceiling = engine::run(Arc::new(workload::Browse { common, query: args.query }), plan).await;
                report.read_ceiling = at_ceiling.recorder.rows(at_ceiling.window);
            }
            report.rows = measured.recorder.rows(measured.window);
            report.timeline = measured.recorder.timeline();
            report.region_timeline = measured.recorder.region_timeline();
            if let Some(faults) = faults {
                eprintln!("chaos: waiting for the faults still running");
                report.chaos = faults.await?;
                chaos::assess(&mut report.chaos, &report.region_timeline, measured.window.as_secs_f64());
            }
            report.requests = measured.recorder.series().values().map(stats::Series::requests).sum();
            report.warmup_requests = measured.recorder.warmup_requests;
            report.late_sends = measured.late_sends;
            order_shards.extend(
                report.rows.iter().filter(|r| r.op == "createOrder" && r.shard != "*").map(|r| r.shard.clone()),
            );
        }
    }
    if args.scenario != Scenario::Pgbench && !args.relay_wait.is_zero() {
        for name in &order_shards {
            let Some(shard) = map.shard_named(name) else { continue };
            match relay::measure(name, shard.url.expose(), load_started, args.relay_wait).await {
                Ok(r) => report.relay.push(r),
                Err(e) => eprintln!("relay measurement on {name} skipped: {e:#}"),
            }
        }
    }

    if args.pgbench || args.scenario == Scenario::Pgbench {
        let bin = pgbench::find_binary(args.pgbench_bin.as_deref())?;
        let ticket_types = if args.hot { 1 } else { args.ticket_types };
        let duration = args.pgbench_duration.unwrap_or(args.duration);
        for name in &order_shards {
            let Some(shard) = map.shard_named(name) else { continue };
            for clients in args.pgbench_clients() {
                // Seeded afresh before each run: the same starting state for every client count.
                let url = pgbench::prepare(shard, &args.migrations, &args.pgbench_dir).await?;
                eprintln!(
                    "pgbench on {name}: {clients} clients, {ticket_types} ticket type(s), {} s",
                    duration.as_secs()
                );
                report
                    .pgbench
                    .push(pgbench::run(&bin, &args.pgbench_dir, &url, shard, clients, ticket_types, duration).await?);
            }
        }
        report.ratios = Ratio::all(&report.rows, &report.pgbench);
    }

    println!("{}", report.table());
    if let Some(path) = &args.json {
        report.write_json(path).with_context(|| format!("writing {}", path.display()))?;
        eprintln!("wrote {}", path.display());
    }
    if let Some(path) = &args.chart {
        report.write_chart(path)?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    /// The references are refused, before anything is sent, with scenarios they do not apply to.
    #[tokio::test]
    async fn a_reference_for_another_scenario_is_refused_by_name() {
        let shards = concat!(env!("CARGO_MANIFEST_DIR"), "/../shards.toml");
        for (flags, named) in [
            (&["orders", "--read-ceiling"][..], "--read-ceiling"),
            (&["mixed", "--uncached"][..], "--uncached"),
            (&["flash-sale", "--logins", "600"][..], "--logins"),
        ] {
            let args: Vec<&str> = ["loadtest", "--shards-file", shards].iter().chain(flags).copied().collect();
            let err = super::run(super::Args::parse_from(args)).await.unwrap_err().to_string();
            assert!(err.starts_with(named), "{flags:?}: {err}");
        }
    }
}
