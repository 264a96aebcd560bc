//! Invalid records go to the DLQ with their reason, unchanged, and consumption goes on.

use platform::db::Schema;
use serde_json::json;
use testkit::{TestDb, TestKafka};
use uuid::Uuid;

use super::helpers::{
    Producer, count, created, read, relay_headers, settings, spawn, wait_all_checkpointed, wait_notifications,
};

/// A record to send: payload, headers, and the reason code its DLQ copy must carry.
type Case = (Vec<u8>, Vec<(String, String)>, &'static str);

#[tokio::test]
async fn invalid_messages_go_to_the_dlq_and_the_next_valid_one_is_processed() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(1).await.unwrap());
    let p = Producer::new(&kafka);
    let app = spawn(settings(&db.url, &kafka)).await;
    let customer = Uuid::now_v7();
    let key = Uuid::now_v7().to_string();
    let valid = created(Uuid::now_v7(), customer);
    let with = |field: &str, value: serde_json::Value| {
        let mut v = valid.clone();
        v[field] = value;
        v.to_string().into_bytes()
    };
    let headers = |n: usize| relay_headers("OrderCreated", "NA", "na-1", &format!("bad-{n}"), &format!("corr-bad-{n}"));
    let mut no_outbox_id = headers(4);
    no_outbox_id.retain(|(k, _)| k != "outbox-id");

    let cases: Vec<Case> = vec![
        (b"this is not JSON {".to_vec(), headers(1), "not-json"),
        (json!({"eventName": "OrderCreated", "orderId": key}).to_string().into_bytes(), headers(2), "wrong-shape"),
        (json!({"eventName": "OrderShipped", "orderId": key}).to_string().into_bytes(), headers(3), "unknown-event"),
        (valid.to_string().into_bytes(), no_outbox_id, "missing-header"),
        (with("customerId", json!("42")), headers(5), "invalid-field"),
        (with("quantity", json!(0)), headers(6), "invalid-field"),
        (with("totalPriceInCents", json!(-5)), headers(7), "invalid-field"),
        (with("occurredAt", json!("yesterday")), headers(8), "invalid-field"),
        (with("region", json!("EU")), headers(9), "invalid-field"),
    ];
    for (i, (payload, headers, _)) in cases.iter().enumerate() {
        p.send_raw(&key, payload, headers).await;
        // The next valid record is still applied.
        let order = Uuid::now_v7();
        p.send_event(&created(order, customer), "na-1", &format!("ok-{i}")).await;
        wait_notifications(&app, order, 1).await;
    }

    let dlq = read(&kafka, &kafka.dlq_topic, cases.len()).await;
    for (got, (payload, headers, code)) in dlq.iter().zip(&cases) {
        let reason = got.header("dlq-reason");
        assert!(reason.starts_with(&format!("{code}: ")), "wanted {code}, got {reason}");
        assert_eq!(got.payload, *payload, "{reason}: payload kept");
        assert_eq!(got.key.as_deref(), Some(key.as_str()), "{reason}: key kept");
        for (k, v) in headers {
            assert_eq!(got.header(k), v, "{reason}: header {k} kept");
        }
        assert_eq!(got.header("dlq-topic"), kafka.topic);
        assert_eq!(got.header("dlq-source"), "notifications");
    }
    wait_all_checkpointed(&db.pool, &kafka).await;
    assert_eq!(count(&db.pool, "notifications").await, i64::try_from(cases.len()).unwrap());
    assert_eq!(count(&db.pool, "inbox").await, i64::try_from(cases.len()).unwrap());
    let topic = kafka.topic.as_str();
    for (reason, n) in [("not-json", 1.0), ("wrong-shape", 1.0), ("unknown-event", 1.0), ("invalid-field", 5.0)] {
        let labels = [("topic", topic), ("reason", reason)];
        assert_eq!(app.metric("notifications_dead_lettered_total", &labels).await, n, "{reason}");
    }
    for (outcome, n) in [("dead_lettered", 9.0), ("sent", 9.0), ("duplicate", 0.0)] {
        let labels = [("topic", topic), ("outcome", outcome)];
        assert_eq!(app.metric("notifications_consumed_total", &labels).await, n, "{outcome}");
    }
    app.stop().await.unwrap();
}
