//! Ops endpoints, readiness on lag, settings that cannot work, and topics kept for replay.

use std::time::Duration;

use platform::db::Schema;
use serde_json::Value;
use sqlx::Connection as _;
use testkit::{TestDb, TestKafka};
use uuid::Uuid;

use super::helpers::{Order, Producer, g, settings, spawn, wait_caught_up};

#[tokio::test]
async fn serves_ops_endpoints_and_is_unready_while_the_live_projection_lags() {
    let (db, kafka) = (TestDb::global(Schema::ReadModels).await.unwrap(), TestKafka::new(1).await.unwrap());
    let s = settings(&db.url, &kafka);
    let app = spawn(s.clone()).await;
    let deadline = std::time::Instant::now() + super::helpers::WAIT;
    while app.get("/readyz").await.status() != 200 {
        assert!(std::time::Instant::now() < deadline, "never ready");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.assert_ops_endpoints(&["postgres", "kafka", "projection"]).await;
    app.stop().await.unwrap();

    // Records waiting and nobody applying them faster than max_lag_records allows: the
    // consumer is held off by a lease taken elsewhere.
    let p = Producer::new(&kafka);
    for i in 0..5 {
        p.send(&Order::new(Uuid::now_v7(), Uuid::now_v7(), Uuid::now_v7(), 1).created(), "na-1", &i.to_string(), None)
            .await;
    }
    let mut holder = sqlx::PgConnection::connect(&db.url).await.unwrap();
    sqlx::query("select pg_advisory_lock(1668247155, hashtext($1 || '/' || $2))")
        .bind("projector.g1")
        .bind(&kafka.topic)
        .execute(&mut holder)
        .await
        .unwrap();
    let app = spawn(projector::Settings { max_lag_records: 2, ..s }).await;
    let deadline = std::time::Instant::now() + super::helpers::WAIT;
    loop {
        let res = app.get("/readyz").await;
        let body: Value = res.json().await.unwrap();
        if body["checks"]["projection"].as_str().is_some_and(|c| c.contains("lags 5 records")) {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "lag never reported: {body}");
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    app.assert_not_ready_because("projection").await;
    holder.close().await.unwrap();
    wait_caught_up(&db.pool, &kafka, g(1)).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn refuses_settings_that_cannot_work_naming_the_field() {
    let (db, kafka) = (TestDb::global(Schema::ReadModels).await.unwrap(), TestKafka::new(1).await.unwrap());
    let s = settings(&db.url, &kafka);
    // The `[consumer]` rules are platform::consumer's (tested there); one shows they apply.
    let mut stalls_at_once = s.clone();
    stalls_at_once.consumer.stall_after = s.consumer.lag_interval;
    for (bad, field) in [
        (stalls_at_once, "consumer.stall_after_ms"),
        (projector::Settings { supervise_interval: Duration::ZERO, ..s.clone() }, "supervise_interval_ms"),
        (projector::Settings { max_lag_records: -1, ..s.clone() }, "max_lag_records"),
        (projector::Settings { orders_url: "localhost:3002".into(), ..s.clone() }, "orders_url"),
    ] {
        let err = projector::Application::build(bad).await.err().unwrap().to_string();
        assert!(err.starts_with(field), "{field}: {err}");
    }
}

#[test]
fn settings_load_from_the_environment_and_name_a_bad_value() {
    // Through the real loader, in a child process so the environment stays the test's own.
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_projector"))
        .arg("status")
        .env("TICKET_HUB_PROJECTOR__MAX_LAG_RECORDS", "many")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.to_lowercase().contains("max_lag_records"), "{err}");
}

#[tokio::test]
async fn topics_are_created_to_keep_every_record() {
    let kafka = TestKafka::new(1).await.unwrap();
    let url = format!("{}/kafka", testkit::stack::global_pg());
    let pool = sqlx::PgPool::connect(&url).await.unwrap();
    let rows: Vec<(String, Option<String>)> = sqlx::query_as(
        "select c.name, c.value from topic_configuration c join topic t on t.id = c.topic where t.name = $1 order by 1",
    )
    .bind(&kafka.topic)
    .fetch_all(&pool)
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![("retention.bytes".to_owned(), Some("-1".to_owned())), ("retention.ms".to_owned(), Some("-1".to_owned()))],
        "stored with the topic; no cleanup.policy, so Tansu never trims it"
    );
    pool.close().await;
}
