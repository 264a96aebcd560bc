//! How fast a backlog drains (run by hand: `cargo nextest run -p notifications --run-ignored
//! only throughput`); prints records per second, asserts only correctness.

use std::time::Instant;

use futures::StreamExt;
use platform::db::Schema;
use testkit::{TestDb, TestKafka};
use uuid::Uuid;

use super::helpers::{Producer, count, created, settings, spawn, wait_all_committed};

#[tokio::test]
#[ignore = "a measurement, not a check: run by hand"]
async fn drains_a_backlog() {
    const N: usize = 2_000;
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(6).await.unwrap());
    let p = Producer::new(&kafka);
    let customer = Uuid::now_v7();
    futures::stream::iter(0..N)
        .for_each_concurrent(64, |i| {
            let p = &p;
            async move {
                p.send_event(&created(Uuid::now_v7(), customer), "na-1", &i.to_string()).await;
            }
        })
        .await;
    let started = Instant::now();
    let app = spawn(settings(&db.url, &kafka)).await;
    wait_all_committed(&kafka).await;
    let elapsed = started.elapsed();
    assert_eq!(count(&db.pool, "notifications").await, i64::try_from(N).unwrap());
    #[allow(clippy::cast_precision_loss, reason = "a printed rate")]
    let rate = N as f64 / elapsed.as_secs_f64();
    println!("drained {N} records in {:.1} s: {rate:.0} records/s (including group join)", elapsed.as_secs_f64());
    app.stop().await.unwrap();
}
