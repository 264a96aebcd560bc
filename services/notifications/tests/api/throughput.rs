//! How fast a backlog drains (run by hand: `cargo nextest run -p notifications --run-ignored
//! only throughput`, or `--release` for the deployed build); prints records per second,
//! asserts only correctness.

use std::time::{Duration, Instant};

use platform::db::Schema;
use testkit::{TestDb, TestKafka};

use super::helpers::{Producer, assert_exactly_once, produce, settings, spawn, wait_all_checkpointed, with_consumer};

#[tokio::test]
#[ignore = "a measurement, not a check: run by hand"]
async fn drains_a_backlog() {
    const N: usize = 20_000;
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(6).await.unwrap());
    let p = Producer::new(&kafka);
    let produced = Instant::now();
    let orders = produce(&p, 0, N).await;
    println!("produced {N} records in {:.1} s", produced.elapsed().as_secs_f64());
    let started = Instant::now();
    // The deployed watchdog pace, not the tests' quick one.
    let app = spawn(with_consumer(settings(&db.url, &kafka), |c| c.stall_after = Duration::from_millis(15_000))).await;
    wait_all_checkpointed(&db.pool, &kafka).await;
    let elapsed = started.elapsed();
    assert_exactly_once(&db.pool, &orders).await;
    #[allow(clippy::cast_precision_loss, reason = "a printed rate")]
    let rate = N as f64 / elapsed.as_secs_f64();
    println!("drained {N} records in {:.1} s: {rate:.0} records/s (from the service's start)", elapsed.as_secs_f64());
    app.stop().await.unwrap();
}
