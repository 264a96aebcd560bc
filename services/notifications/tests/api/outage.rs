//! The notifications database really stopped (a private Postgres instance) in the middle of
//! draining a backlog, while events keep coming: consumption pauses without losing, skipping
//! or doubling anything, and catches up by itself once the database is back.

use std::time::Duration;

use platform::db::Schema;
use testkit::{PrivatePostgres, TestDb, TestKafka};

use super::helpers::{
    Producer, assert_exactly_once, assert_no_checkpoint_before_its_effect, produce, progress, settings, spawn,
    wait_all_checkpointed, wait_metric, wait_progress, with_consumer,
};

#[tokio::test]
async fn with_the_database_stopped_mid_batch_no_event_is_lost_or_doubled_once_it_returns() {
    // Declared first, dropped last: the database is dropped while its server still runs.
    let pg = PrivatePostgres::start().await.unwrap();
    let db = TestDb::create_on(&pg.url(), Schema::Notifications).await.unwrap();
    let kafka = TestKafka::new(3).await.unwrap();
    let p = Producer::new(&kafka);
    let mut orders = produce(&p, 0, 3000).await;
    // Small batches, so the stop lands while batches are in flight.
    let app = spawn(with_consumer(settings(&db.url, &kafka), |c| c.batch_max_records = 50)).await;
    wait_progress(&db.pool, 200).await;
    pg.stop().await.unwrap();
    let stopped_at = progress(&db.pool).await;
    assert_eq!(stopped_at, 0, "the database is really down");

    // More events while it is down.
    orders.extend(produce(&p, 3000, 12).await);
    let topic = kafka.topic.as_str();
    let retries = [("topic", topic), ("operation", "database")];
    wait_metric(&app, "notifications_retries_total", &retries, 3.0).await;
    assert_eq!(app.metric("notifications_consumer_paused", &[("topic", topic)]).await, 1.0);
    app.assert_not_ready_because("postgres").await;
    app.assert_not_ready_because("consumer").await;

    pg.resume().await.unwrap();
    wait_all_checkpointed(&db.pool, &kafka).await;
    assert_no_checkpoint_before_its_effect(&db.pool).await;
    assert_exactly_once(&db.pool, &orders).await;
    assert_eq!(app.metric("notifications_consumer_paused", &[("topic", topic)]).await, 0.0);
    // Lag is measured per partition and is back to zero once all is consumed.
    for partition in ["0", "1", "2"] {
        let labels = [("topic", topic), ("partition", partition)];
        let deadline = std::time::Instant::now() + super::helpers::WAIT;
        while app.metric("notifications_consumer_lag", &labels).await != 0.0 {
            assert!(std::time::Instant::now() < deadline, "lag of partition {partition} stays above 0");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    app.stop().await.unwrap();
}
