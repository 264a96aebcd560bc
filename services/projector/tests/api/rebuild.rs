//! A rebuild under live traffic: the new generation, once caught up, equals the live one row
//! for row; the switch repoints the views and stops the old consumer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use platform::db::Schema;
use projector::generations::{self, SwitchOutcome};
use testkit::{TestDb, TestKafka};
use uuid::Uuid;

use super::helpers::{
    Order, Producer, differences, g, settings, spawn, tables, wait_caught_up, wait_metric, wait_order,
};

/// Sends orders until `producing` is cleared: each created, then half of them paid and a
/// quarter cancelled, over a few events and ticket types.
async fn traffic(p: Arc<Producer>, producing: Arc<AtomicBool>, sent: Arc<AtomicUsize>) {
    let events: Vec<(Uuid, Uuid)> = (0..3).map(|_| (Uuid::now_v7(), Uuid::now_v7())).collect();
    let customers: Vec<Uuid> = (0..4).map(|_| Uuid::now_v7()).collect();
    let mut outbox = 0;
    let mut i = 0usize;
    while producing.load(Ordering::Relaxed) {
        let (event, tt) = events[i % events.len()];
        let o = Order::new(customers[i % customers.len()], event, tt, i32::try_from(i % 4).unwrap() + 1);
        outbox += 1;
        p.send(&o.created(), "na-1", &outbox.to_string(), None).await;
        let next = match i % 4 {
            0 | 1 => Some(o.paid()),
            2 => Some(o.cancelled()),
            _ => None,
        };
        if let Some(e) = next {
            outbox += 1;
            p.send(&e, "na-1", &outbox.to_string(), None).await;
        }
        sent.store(outbox, Ordering::Relaxed);
        i += 1;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn a_rebuild_under_live_traffic_equals_the_live_generation_and_switches_atomically() {
    let (db, kafka) = (TestDb::global(Schema::ReadModels).await.unwrap(), TestKafka::new(3).await.unwrap());
    let p = Arc::new(Producer::new(&kafka));
    let app = spawn(settings(&db.url, &kafka)).await;
    let (producing, sent) = (Arc::new(AtomicBool::new(true)), Arc::new(AtomicUsize::new(0)));
    let traffic = tokio::spawn(traffic(p.clone(), producing.clone(), sent.clone()));

    tokio::time::sleep(Duration::from_millis(1500)).await;
    // What `projector rebuild --hold-switch` calls.
    let new = generations::start_rebuild(&db.pool, true).await.unwrap();
    assert_eq!(new, g(2));
    assert!(matches!(
        generations::start_rebuild(&db.pool, false).await,
        Err(generations::RebuildError::AlreadyBuilding(b)) if b == g(2)
    ));
    tokio::time::sleep(Duration::from_millis(2500)).await;
    producing.store(false, Ordering::Relaxed);
    traffic.await.unwrap();
    let sent = sent.load(Ordering::Relaxed);
    assert!(sent > 50, "only {sent} events produced");

    wait_caught_up(&db.pool, &kafka, g(1)).await;
    wait_caught_up(&db.pool, &kafka, g(2)).await;
    let diff = differences(&db.pool, "rm_g1", "rm_g2").await;
    assert!(diff.is_empty(), "the rebuilt generation differs from the live one: {diff:?}");
    let live = tables(&db.pool, "rm_g1").await;
    assert_eq!(live["order_timeline"].len(), sent, "every event once");
    assert!(!live["event_sales"].is_empty());
    // Held: caught up, yet still BUILDING.
    tokio::time::sleep(Duration::from_millis(600)).await;
    let states: Vec<(i32, String)> =
        sqlx::query_as("select generation, state from projection_generation order by generation")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(states, vec![(1, "LIVE".to_owned()), (2, "BUILDING".to_owned())]);

    // `projector switch`.
    let mut out = Vec::new();
    let code = projector::cli::switch(&db.pool, &kafka.topic, &mut out).await.unwrap();
    assert_eq!(code, std::process::ExitCode::SUCCESS, "{}", String::from_utf8_lossy(&out));
    assert_eq!(generations::try_switch(&db.pool, &kafka.topic, false).await.unwrap(), SwitchOutcome::NothingToSwitch);
    let views: Vec<(String, String)> = sqlx::query_as(
        "select view_name::text, table_schema::text from information_schema.view_table_usage
         where view_schema = 'public' order by 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let want: Vec<(String, String)> = ["customer_orders", "event_sales", "order_timeline"]
        .iter()
        .map(|v| ((*v).to_owned(), "rm_g2".to_owned()))
        .collect();
    assert_eq!(views, want, "every view reads generation 2");
    assert_eq!(tables(&db.pool, "public").await, tables(&db.pool, "rm_g2").await);

    // The retired consumer is stopped: it gives its lease back and applies nothing more.
    let labels = [("topic", kafka.topic.as_str()), ("consumer", "projector.g1")];
    wait_metric(&app, "projector_consumer_active", &labels, 0.0).await;
    let late = Order::new(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), 1);
    p.send(&late.created(), "na-1", "late-1", None).await;
    wait_order(&db.pool, late.id, "projected by generation 2", |_| true).await;
    wait_caught_up(&db.pool, &kafka, g(2)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let in_g1: i64 = sqlx::query_scalar("select count(*) from rm_g1.customer_orders where order_id = $1")
        .bind(late.id)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(in_g1, 0, "the retired generation's consumer is stopped");

    // The next rebuild drops the retired schema.
    assert_eq!(generations::start_rebuild(&db.pool, false).await.unwrap(), g(3));
    let g1_schema: i64 = sqlx::query_scalar("select count(*) from pg_namespace where nspname = 'rm_g1'")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(g1_schema, 0);
    // Not held: it switches by itself once caught up.
    let deadline = std::time::Instant::now() + super::helpers::WAIT;
    loop {
        let live: i32 = sqlx::query_scalar("select generation from projection_generation where state = 'LIVE'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
        if live == 3 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "generation 3 never switched to");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(differences(&db.pool, "rm_g2", "rm_g3").await.is_empty());
    let mut out = Vec::new();
    let s = settings(&db.url, &kafka);
    projector::cli::status(&s, &db.pool, &mut out).await.unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("LIVE") && text.contains("RETIRED") && text.contains("partition"), "{text}");
    app.stop().await.unwrap();
}
