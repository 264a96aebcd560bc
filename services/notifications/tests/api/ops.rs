//! Ops endpoints, the inspection API's input rules, and the binary's start and stop.

use platform::db::Schema;
use serde_json::Value;
use testkit::{TestDb, TestKafka};

use super::helpers::{settings, spawn};

#[tokio::test]
async fn serves_ops_endpoints_and_names_a_down_broker() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(1).await.unwrap());
    let s = settings(&db.url, &kafka);
    let app = spawn(s.clone()).await;
    app.assert_ops_endpoints(&["postgres", "kafka", "consumer"]).await;
    app.stop().await.unwrap();

    let mut unreachable = s;
    unreachable.consumer.kafka_bootstrap = "127.0.0.1:1".into();
    let app = spawn(unreachable).await;
    app.assert_not_ready_because("kafka").await;
    // Still stops promptly while the broker is unreachable.
    app.stop().await.unwrap();
}

/// `openapi/notifications.json` is what clients and API fuzzing read: it must be the document
/// the code serves. `UPDATE_OPENAPI=1` rewrites it.
#[test]
fn the_published_openapi_document_is_current() {
    testkit::published::assert_openapi_current("notifications", &platform::openapi::to_json(&notifications::openapi()));
}

#[tokio::test]
async fn serves_its_openapi_document_and_routes_what_it_documents() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(1).await.unwrap());
    let app = spawn(settings(&db.url, &kafka)).await;
    app.assert_serves_openapi(&platform::openapi::to_json(&notifications::openapi())).await;
    // Stopped, not dropped: the consumer's Kafka client must close before the runtime ends.
    app.stop().await.unwrap();
}

#[tokio::test]
async fn listing_needs_a_well_formed_order_id_and_never_fails_on_bad_input() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(1).await.unwrap());
    let app = spawn(settings(&db.url, &kafka)).await;
    for query in
        ["", "?orderId=", "?orderId=not-a-uuid", "?orderId=%ZZ", "?order_id=0190b6a4-0000-7000-8000-000000000000"]
    {
        let res = app.get(&format!("/api/v1/notifications{query}")).await;
        assert_eq!(res.status(), 400, "{query}");
        let body: Value = res.json().await.unwrap();
        assert_eq!(body["error"], "VALIDATION_ERROR", "{query}: {body}");
        assert_eq!(body["details"]["fields"][0]["field"], "orderId", "{query}: {body}");
    }
    let res = app.get("/api/v1/notifications?orderId=0190b6a4-0000-7000-8000-000000000000").await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["notifications"], serde_json::json!([]));
    app.stop().await.unwrap();
}

#[tokio::test]
async fn refuses_settings_that_cannot_work() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(1).await.unwrap());
    let s = settings(&db.url, &kafka);
    let missing = notifications::Settings { shards_file: "no/such/shards.toml".into(), ..s.clone() };
    let err = notifications::Application::build(missing).await.err().unwrap().to_string();
    assert!(err.contains("no/such/shards.toml"), "{err}");
    // The `[consumer]` rules are platform::consumer's (tested there); one shows they apply.
    let unnamed = notifications::Settings { consumer_name: String::new(), ..s.clone() };
    let mut one_batch_of_none = s.clone();
    one_batch_of_none.consumer.batch_max_records = 0;
    for (bad, field) in [(unnamed, "consumer_name"), (one_batch_of_none, "consumer.batch_max_records")] {
        let err = notifications::Application::build(bad).await.err().unwrap().to_string();
        assert!(err.starts_with(field), "{field}: {err}");
    }
}

#[tokio::test]
async fn binary_logs_json_and_stops_on_sigterm() {
    // Its own database, topics and group: the binary consumes as soon as it starts.
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(1).await.unwrap());
    let env = super::helpers::binary_env(&db.url, &kafka);
    let env: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    testkit::process::assert_binary_serves_and_stops(env!("CARGO_BIN_EXE_notifications"), &env).await;
}
