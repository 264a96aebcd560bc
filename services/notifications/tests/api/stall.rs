//! The broker frozen (SIGSTOP) for longer than any session timeout while records wait and
//! more are being produced, then let go: what left Tansu 0.6.0's consumer group with a ghost
//! member holding partitions that were never consumed again. The consumer (no group, its
//! checkpoints in its own database) resumes by itself within a stated bound, every event ends
//! with exactly one notification, and no checkpoint ever ran ahead of its effect.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use platform::db::Schema;
use testkit::{PrivateBroker, TestDb, TestKafka};
use uuid::Uuid;

use super::helpers::{
    Producer, WAIT, assert_exactly_once, assert_no_checkpoint_before_its_effect, created, ends, produce, progress,
    settings, spawn, wait_progress, with_consumer,
};

/// Longer than the old design's session timeout (10 s by default, 6 s in its tests).
const FROZEN: Duration = Duration::from_secs(15);

/// Once the broker answers again, the consumer must be caught up within this: the watchdog's
/// `stall_after_ms` (2 s here) plus one rebuild and the drain of what was produced meanwhile,
/// on a shared 2-core machine.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_broker_frozen_past_the_session_timeout_stalls_nothing_for_good() {
    let mut broker = PrivateBroker::start().await.unwrap();
    let db = TestDb::global(Schema::Notifications).await.unwrap();
    let kafka = TestKafka::on(&broker.bootstrap, 6).await.unwrap();
    let p = Arc::new(Producer::new(&kafka));
    let mut orders = produce(&p, 0, 2000).await;
    let app = spawn(with_consumer(settings(&db.url, &kafka), |c| c.batch_max_records = 100)).await;

    // A steady trickle of new events for the whole test, also while the broker is frozen
    // (those sends wait, and land when it is let go).
    let producing = Arc::new(AtomicBool::new(true));
    let trickle = tokio::spawn({
        let (p, producing) = (p.clone(), producing.clone());
        async move {
            let customer = Uuid::now_v7();
            let mut sent = Vec::new();
            let mut i = 10_000;
            while producing.load(Ordering::Relaxed) {
                let order = Uuid::now_v7();
                p.send_event(&created(order, customer), "na-1", &i.to_string()).await;
                sent.push(order);
                i += 1;
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            sent
        }
    });

    // Frozen in the middle of the drain, with records waiting.
    wait_progress(&db.pool, 300).await;
    broker.pause().await.unwrap();
    let frozen_at = Instant::now();
    let mut samples = 0;
    while frozen_at.elapsed() < FROZEN {
        assert_no_checkpoint_before_its_effect(&db.pool).await;
        samples += 1;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    let during = progress(&db.pool).await;
    broker.unpause().await.unwrap();
    let thawed = Instant::now();

    // More records after the thaw, then the trickle stops.
    orders.extend(produce(&p, 5000, 500).await);
    producing.store(false, Ordering::Relaxed);
    orders.extend(trickle.await.unwrap());

    // Caught up within the bound, sampling the invariant on the way.
    let want: i64 = ends(&kafka).await.values().sum();
    assert_eq!(want, i64::try_from(orders.len()).unwrap(), "every sent record is in the log");
    loop {
        assert_no_checkpoint_before_its_effect(&db.pool).await;
        let done = progress(&db.pool).await;
        if done == want {
            break;
        }
        assert!(
            thawed.elapsed() < RECOVERY_BOUND.max(WAIT),
            "{done} of {want} records applied {:?} after the broker answered again",
            thawed.elapsed()
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let recovered_in = thawed.elapsed();
    println!(
        "frozen {FROZEN:?} with {during} of {want} applied; caught up {recovered_in:?} after the thaw ({samples} samples)"
    );
    assert!(recovered_in < RECOVERY_BOUND, "caught up only {recovered_in:?} after the thaw");
    assert_exactly_once(&db.pool, &orders).await;
    let topic = kafka.topic.as_str();
    // The watchdog saw it: lag 0 again and not stalled.
    let deadline = Instant::now() + WAIT;
    while app.metric("notifications_consumer_stalled", &[("topic", topic)]).await != 0.0 {
        assert!(Instant::now() < deadline, "still reported stalled");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    app.stop().await.unwrap();
    drop(kafka);
    broker.stop().await.unwrap();
}
