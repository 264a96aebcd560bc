//! Several processes of the consumer: one holds the lease and consumes, the others stand by;
//! SIGKILL of the active one mid-batch hands its work to a standby, with no event lost and
//! none applied twice. Also a process SIGKILLed mid-batch and started again.
//!
//! This replaces the group rebalance of the old design (Tansu 0.6.0 did not even rebalance on
//! join): the lease is a Postgres advisory lock held by the session that commits the batches,
//! so it moves exactly when that session dies.

use std::time::{Duration, Instant};

use platform::db::Schema;
use testkit::process::Process;
use testkit::{TestDb, TestKafka};

use super::helpers::{
    Producer, WAIT, assert_exactly_once, assert_no_checkpoint_before_its_effect, produce, progress, spawn_binary,
    wait_all_checkpointed, wait_progress,
};

/// Waits until `process` says it holds the lease (`notifications_consumer_active` = 1).
async fn wait_active(process: &Process, topic: &str) {
    let deadline = Instant::now() + WAIT;
    while process.metric("notifications_consumer_active", &[("topic", topic)]).await != 1.0 {
        assert!(Instant::now() < deadline, "pid {} never took the lease", process.pid());
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Two processes of one consumer on a fresh database and topic: `first` took the lease and
/// applied the 40 `orders` produced so far, `second` stands by.
struct Pair {
    db: TestDb,
    kafka: TestKafka,
    p: Producer,
    orders: Vec<uuid::Uuid>,
    first: Process,
    second: Process,
}

async fn active_and_standby() -> Pair {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(4).await.unwrap());
    let p = Producer::new(&kafka);
    let orders = produce(&p, 0, 40).await;
    let first = spawn_binary(&db.url, &kafka, &[]).await;
    wait_active(&first, &kafka.topic).await;
    let second = spawn_binary(&db.url, &kafka, &[]).await;
    wait_all_checkpointed(&db.pool, &kafka).await;
    Pair { db, kafka, p, orders, first, second }
}

fn sent(kafka: &TestKafka) -> [(&'static str, &str); 2] {
    [("topic", kafka.topic.as_str()), ("outcome", "sent")]
}

#[tokio::test]
async fn a_standby_takes_over_after_sigkill_of_the_active_process_without_loss_or_second_effect() {
    let Pair { db, kafka, p, mut orders, first, second } = active_and_standby().await;
    orders.extend(produce(&p, 40, 40).await);
    wait_all_checkpointed(&db.pool, &kafka).await;
    assert_eq!(first.metric("notifications_consumed_total", &sent(&kafka)).await, 80.0, "the active one applied all");
    assert_eq!(second.metric("notifications_consumed_total", &sent(&kafka)).await, 0.0, "the standby applied none");
    assert_eq!(second.metric("notifications_consumer_active", &[("topic", kafka.topic.as_str())]).await, 0.0);
    assert_eq!(second.get("/readyz").await.status(), 200, "a standby is ready");

    // A backlog, and the active process killed in the middle of it (small batches: some in
    // flight when the kill lands).
    let base = progress(&db.pool).await;
    orders.extend(produce(&p, 80, 3000).await);
    wait_progress(&db.pool, base + 300).await;
    first.kill().await;
    let killed_at = progress(&db.pool).await;
    let took_over = Instant::now();
    wait_active(&second, &kafka.topic).await;
    let takeover = took_over.elapsed();
    wait_all_checkpointed(&db.pool, &kafka).await;
    assert_no_checkpoint_before_its_effect(&db.pool).await;
    assert_exactly_once(&db.pool, &orders).await;
    let by_second = second.metric("notifications_consumed_total", &sent(&kafka)).await;
    assert!(by_second > 0.0, "the standby applied the rest");
    let duplicates = second.metric("notifications_duplicates_total", &[("topic", kafka.topic.as_str())]).await;
    assert_eq!(duplicates, 0.0, "the standby started exactly at the checkpoints the killed one committed");
    println!("SIGKILL at {killed_at} of 3080 applied; the standby held the lease {takeover:?} later");
    second.terminate().await;
}

#[tokio::test]
async fn a_process_sigkilled_mid_batch_and_started_again_loses_and_doubles_nothing() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(6).await.unwrap());
    let p = Producer::new(&kafka);
    let orders = produce(&p, 0, 4000).await;
    let batches = [("TICKET_HUB_NOTIFICATIONS__CONSUMER__BATCH_MAX_RECORDS", "50")];
    // Killed a few times at different points of the drain.
    for at in [200, 1200, 2500] {
        let process = spawn_binary(&db.url, &kafka, &batches).await;
        wait_progress(&db.pool, at).await;
        process.kill().await;
        assert_no_checkpoint_before_its_effect(&db.pool).await;
    }
    let process = spawn_binary(&db.url, &kafka, &[]).await;
    wait_all_checkpointed(&db.pool, &kafka).await;
    assert_no_checkpoint_before_its_effect(&db.pool).await;
    assert_exactly_once(&db.pool, &orders).await;
    // What the last process found done was not applied again.
    let duplicates = process.metric("notifications_duplicates_total", &[("topic", kafka.topic.as_str())]).await;
    assert_eq!(duplicates, 0.0, "a killed batch rolled back whole, its checkpoint with it");
    process.terminate().await;
}

#[tokio::test]
async fn a_frozen_active_process_loses_the_lease_to_the_standby_and_steps_down_when_it_thaws() {
    let Pair { db, kafka, p, mut orders, first, second } = active_and_standby().await;

    // Frozen, not dead: its kernel still answers the socket, so only the server's idle
    // session timeout on the lease session (here the default statement_timeout_ms, 10 s)
    // frees the lease.
    signal(&first, "-STOP").await;
    let frozen = Instant::now();
    orders.extend(produce(&p, 40, 200).await);
    wait_active(&second, &kafka.topic).await;
    let takeover = frozen.elapsed();
    wait_all_checkpointed(&db.pool, &kafka).await;

    // Thawed: its session is gone, so it can commit nothing and stands by.
    signal(&first, "-CONT").await;
    let deadline = Instant::now() + WAIT;
    while first.metric("notifications_consumer_active", &[("topic", kafka.topic.as_str())]).await != 0.0 {
        assert!(Instant::now() < deadline, "the thawed process still claims the lease");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    orders.extend(produce(&p, 240, 20).await);
    wait_all_checkpointed(&db.pool, &kafka).await;
    assert_no_checkpoint_before_its_effect(&db.pool).await;
    assert_exactly_once(&db.pool, &orders).await;
    assert_eq!(first.metric("notifications_consumed_total", &sent(&kafka)).await, 40.0, "nothing after the freeze");
    assert_eq!(second.metric("notifications_consumed_total", &sent(&kafka)).await, 220.0);
    println!("the standby held the lease {takeover:?} after the active process was frozen");
    first.terminate().await;
    second.terminate().await;
}

async fn signal(process: &Process, sig: &str) {
    let ok = tokio::process::Command::new("kill").arg(sig).arg(process.pid().to_string()).status().await.unwrap();
    assert!(ok.success());
}
