//! Relay benchmark (not a test): drain throughput per shard and publish lag under steady load,
//! against the real shard instances and the real broker (`./dev infra` first).
//!
//! `cargo bench -p orders --bench relay [-- --rows N --rate R --seconds S --batch B]`
//!
//! 1. Drain: N ready rows on every shard, one relay process draining all shards side by side;
//!    rows per second per shard from the first to the last `sent_at`.
//! 2. Steady load: R single-row order transactions per second per shard for S seconds with the
//!    relay running; publish lag = `sent_at - created_at` (the order transaction's start to
//!    the row marked SENT after the broker's acknowledgement), p50 / p99 / max per shard.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a benchmark: a failure is a failed run")]

use std::time::{Duration, Instant};

use orders::relay::{Relay, Settings};
use sqlx::PgPool;
use testkit::{TestApp, TestKafka, TestShards};

const CREATED: &str = "with o as (select gen_random_uuid() as id from generate_series(1, $1))
    insert into outbox (aggregate_id, partition, event_type, payload)
    select o.id, 0, 'OrderCreated', jsonb_build_object('eventName', 'OrderCreated', 'orderId', o.id,
        'customerId', o.id, 'eventId', o.id, 'ticketTypeId', o.id, 'quantity', 1, 'totalPriceInCents', 2500,
        'occurredAt', to_char(now() at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'region', $2::text, 'version', 1)
    from o";

fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok()).unwrap_or(default)
}

async fn pending(pool: &PgPool) -> i64 {
    sqlx::query_scalar("select count(*) from outbox where status <> 'SENT'").fetch_one(pool).await.unwrap()
}

async fn relay(kafka: &TestKafka, shards: &TestShards, batch: u32) -> TestApp {
    let settings = Settings {
        batch_size: batch,
        http_addr: "127.0.0.1:0".parse().unwrap(),
        kafka_bootstrap: kafka.bootstrap.clone(),
        topic: kafka.topic.clone(),
        dlq_topic: kafka.dlq_topic.clone(),
        ..Settings::default()
    };
    let r = Relay::build(settings, shards.map.clone()).await.unwrap();
    TestApp::spawn(r.port(), move |stop| r.run_until_stopped(stop))
}

fn region_of(shard: &str) -> &'static str {
    if shard.starts_with("sa") { "SA" } else { "NA" }
}

#[tokio::main]
async fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` would too: run only when benched.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rows = arg("--rows", 20_000);
    let rate = arg("--rate", 200);
    let seconds = arg("--seconds", 20);
    let batch = u32::try_from(arg("--batch", 500)).unwrap();
    let kafka = TestKafka::new(6).await.unwrap();
    let shards = TestShards::create().await.unwrap();

    println!("relay drain: {rows} ready rows per shard, all shards draining at once, batches of {batch}");
    for (name, db) in &shards.dbs {
        sqlx::query(CREATED).bind(i64::try_from(rows).unwrap()).bind(region_of(name)).execute(&db.pool).await.unwrap();
    }
    // The drain is timed on each shard's own clock, from just before the relay starts to the
    // last row marked SENT: start-up, lease and topic creation are part of it.
    let mut starts = std::collections::BTreeMap::new();
    for (name, db) in &shards.dbs {
        let now: chrono::DateTime<chrono::Utc> = sqlx::query_scalar("select now()").fetch_one(&db.pool).await.unwrap();
        starts.insert(name.clone(), now);
    }
    let started = Instant::now();
    let app = relay(&kafka, &shards, batch).await;
    for (name, db) in &shards.dbs {
        while pending(&db.pool).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (span,): (f64,) = sqlx::query_as("select extract(epoch from max(sent_at) - $1)::float8 from outbox")
            .bind(starts[name])
            .fetch_one(&db.pool)
            .await
            .unwrap();
        println!(
            "  {name}: {rows} rows in {span:.2} s = {:.0} rows/s (wall clock since start {:.2} s)",
            rows as f64 / span.max(1e-3),
            started.elapsed().as_secs_f64()
        );
    }

    println!("publish lag: {rate} order transactions/s per shard for {seconds} s, relay running");
    for db in shards.dbs.values() {
        sqlx::query("truncate outbox").execute(&db.pool).await.unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let writers: Vec<_> = shards
        .dbs
        .iter()
        .map(|(name, db)| {
            let (pool, region) = (db.pool.clone(), region_of(name));
            tokio::spawn(async move {
                let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / rate as f64));
                tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
                while Instant::now() < deadline {
                    tick.tick().await;
                    sqlx::query(CREATED).bind(1_i64).bind(region).execute(&pool).await.unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.await.unwrap();
    }
    for (name, db) in &shards.dbs {
        while pending(&db.pool).await > 0 {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let (n, p50, p99, max): (i64, f64, f64, f64) = sqlx::query_as(
            "select count(*),
                    percentile_cont(0.5) within group (order by extract(epoch from sent_at - created_at)),
                    percentile_cont(0.99) within group (order by extract(epoch from sent_at - created_at)),
                    max(extract(epoch from sent_at - created_at))::float8
             from outbox",
        )
        .fetch_one(&db.pool)
        .await
        .unwrap();
        println!(
            "  {name}: {n} rows, lag p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
            p50 * 1000.0,
            p99 * 1000.0,
            max * 1000.0
        );
    }
    app.stop().await.unwrap();
}
