//! The notifications database really stopped (a private Postgres instance) while events keep
//! coming: consumption pauses without committing or skipping, and catches up once it is back.

use std::time::Duration;

use platform::db::Schema;
use testkit::{PrivatePostgres, TestDb, TestKafka};
use uuid::Uuid;

use super::helpers::{
    Producer, committed, created, per_order, settings, spawn, wait_all_committed, wait_metric, wait_notifications,
};

#[tokio::test]
async fn with_the_database_stopped_no_event_is_lost_or_skipped_once_it_returns() {
    // Declared first, dropped last: the database is dropped while its server still runs.
    let pg = PrivatePostgres::start().await.unwrap();
    let db = TestDb::create_on(&pg.url(), Schema::Notifications).await.unwrap();
    let kafka = TestKafka::new(3).await.unwrap();
    let p = Producer::new(&kafka);
    let app = spawn(settings(&db.url, &kafka)).await;
    let customer = Uuid::now_v7();
    let first = Uuid::now_v7();
    p.send_event(&created(first, customer), "na-1", "0").await;
    wait_notifications(&app, first, 1).await;
    wait_all_committed(&kafka).await;
    let before = committed(&kafka).await;

    pg.stop().await.unwrap();
    let orders: Vec<Uuid> = (0..12).map(|_| Uuid::now_v7()).collect();
    for (i, order) in orders.iter().enumerate() {
        p.send_event(&created(*order, customer), "na-1", &(i + 1).to_string()).await;
    }
    // The consumer has met the outage and keeps retrying the record at hand.
    let topic = kafka.topic.as_str();
    let retries = [("topic", topic), ("operation", "storing the notification")];
    wait_metric(&app, "notifications_retries_total", &retries, 3.0).await;
    assert_eq!(app.metric("notifications_consumer_paused", &[("topic", topic)]).await, 1.0);
    app.assert_not_ready_because("postgres").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(committed(&kafka).await, before, "no offset moves while the database is down");

    pg.resume().await.unwrap();
    for order in &orders {
        wait_notifications(&app, *order, 1).await;
    }
    wait_all_committed(&kafka).await;
    let counts = per_order(&db.pool).await;
    assert_eq!(counts.len(), 13, "{counts:?}");
    assert!(counts.values().all(|n| *n == 1), "{counts:?}");
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
