//! The service on a fresh database and per-test topics, a producer speaking the relay's header
//! contract, and readers of what the consumer left behind (notifications, offsets, the DLQ).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use notifications::{Application, Settings};
use platform::events::headers;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::kafka::Record;
use testkit::{TestApp, TestKafka};
use uuid::Uuid;

/// Upper bound of every wait; generous, since the machine is shared.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn settings(database_url: &str, kafka: &TestKafka) -> Settings {
    Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        db_acquire_timeout_ms: 1000,
        kafka_bootstrap: kafka.bootstrap.clone(),
        topic: kafka.topic.clone(),
        dlq_topic: kafka.dlq_topic.clone(),
        group_id: kafka.group.clone(),
        session_timeout_ms: 6000,
        retry_initial_ms: 50,
        retry_max_ms: 500,
        lag_interval_ms: 200,
        shards_file: testkit::stack::shards_file(),
        ..Settings::default()
    }
}

pub async fn spawn(settings: Settings) -> TestApp {
    // The service's logs, shown by the test runner when a test fails.
    platform::telemetry::init(notifications::SERVICE);
    let app = Application::build(settings).await.expect("build notifications");
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

/// The headers the relay puts on a record, as `(name, value)` pairs.
pub fn relay_headers(event_type: &str, shard: &str, outbox_id: &str, correlation: &str) -> Vec<(String, String)> {
    vec![
        (headers::TYPE.into(), event_type.into()),
        (headers::OUTBOX_ID.into(), outbox_id.into()),
        (headers::REGION.into(), if shard.starts_with("sa") { "SA" } else { "NA" }.into()),
        (headers::SHARD.into(), shard.into()),
        (headers::CORRELATION_ID.into(), correlation.into()),
    ]
}

pub fn created(order: Uuid, customer: Uuid) -> Value {
    json!({"eventName": "OrderCreated", "orderId": order, "customerId": customer, "eventId": Uuid::now_v7(),
           "ticketTypeId": Uuid::now_v7(), "quantity": 2, "totalPriceInCents": 10000,
           "occurredAt": "2026-11-25T03:00:00Z", "region": "NA"})
}

pub fn paid(order: Uuid) -> Value {
    json!({"eventName": "OrderPaid", "orderId": order, "paidAt": "2026-11-25T03:05:00+01:00", "region": "NA"})
}

/// An idempotent, `acks=all` producer, as the relay's.
pub struct Producer {
    inner: FutureProducer,
    topic: String,
}

impl Producer {
    pub fn new(kafka: &TestKafka) -> Self {
        let inner = platform::kafka::client_config(&kafka.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("producer");
        Self { inner, topic: kafka.topic.clone() }
    }

    /// Sends one record and waits for the broker's acknowledgement; `(partition, offset)`.
    pub async fn send_raw(&self, key: &str, payload: &[u8], hs: &[(String, String)]) -> (i32, i64) {
        let mut owned = OwnedHeaders::new();
        for (k, v) in hs {
            owned = owned.insert(Header { key: k.as_str(), value: Some(v.as_str()) });
        }
        let record = FutureRecord::to(&self.topic).key(key).payload(payload).headers(owned);
        let d = self.inner.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("acknowledged");
        (d.partition, d.offset)
    }

    /// Sends an event as the relay of `shard` would, keyed by its order id.
    pub async fn send_event(&self, event: &Value, shard: &str, outbox_id: &str) -> (i32, i64) {
        let name = event["eventName"].as_str().unwrap();
        let key = event["orderId"].as_str().unwrap().to_owned();
        let corr = format!("corr-{shard}-{outbox_id}");
        self.send_raw(&key, event.to_string().as_bytes(), &relay_headers(name, shard, outbox_id, &corr)).await
    }
}

/// The notifications of `order` through the API.
pub async fn notifications(app: &TestApp, order: Uuid) -> Vec<Value> {
    let res = app.get(&format!("/api/v1/notifications?orderId={order}")).await;
    assert_eq!(res.status(), 200);
    let body: Value = res.json().await.unwrap();
    body["notifications"].as_array().unwrap().clone()
}

/// Waits until `order` has at least `n` notifications, and returns them.
pub async fn wait_notifications(app: &TestApp, order: Uuid, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = notifications(app, order).await;
        if got.len() >= n {
            return got;
        }
        assert!(Instant::now() < deadline, "order {order}: {} of {n} notifications within {WAIT:?}", got.len());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Rows of `table` straight from the database (`notifications` or `inbox`).
pub async fn count(pool: &PgPool, table: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from {table}")).fetch_one(pool).await.unwrap()
}

/// Notifications per order id, from the database.
pub async fn per_order(pool: &PgPool) -> BTreeMap<Uuid, i64> {
    sqlx::query_as::<_, (Uuid, i64)>("select order_id, count(*) from notifications group by order_id")
        .fetch_all(pool)
        .await
        .unwrap()
        .into_iter()
        .collect()
}

fn group_client(kafka: &TestKafka) -> BaseConsumer {
    platform::kafka::consumer_config(&kafka.bootstrap, &kafka.group).create().unwrap()
}

/// The group's committed offset per partition of the topic (absent: nothing committed).
pub async fn committed(kafka: &TestKafka) -> BTreeMap<i32, i64> {
    let partitions = platform::kafka::partition_count(&kafka.bootstrap, &kafka.topic).await.unwrap().unwrap();
    let c = group_client(kafka);
    let mut tpl = TopicPartitionList::new();
    for p in 0..i32::try_from(partitions).unwrap() {
        tpl.add_partition(&kafka.topic, p);
    }
    tokio::task::spawn_blocking(move || {
        c.committed_offsets(tpl, Duration::from_secs(10))
            .unwrap()
            .elements()
            .iter()
            .filter_map(|e| match e.offset() {
                Offset::Offset(o) => Some((e.partition(), o)),
                _ => None,
            })
            .collect()
    })
    .await
    .unwrap()
}

/// The end offset of each partition of the topic that has records.
pub async fn ends(kafka: &TestKafka) -> BTreeMap<i32, i64> {
    let partitions = platform::kafka::partition_count(&kafka.bootstrap, &kafka.topic).await.unwrap().unwrap();
    let c = group_client(kafka);
    let topic = kafka.topic.clone();
    tokio::task::spawn_blocking(move || {
        (0..i32::try_from(partitions).unwrap())
            .map(|p| (p, c.fetch_watermarks(&topic, p, Duration::from_secs(10)).unwrap().1))
            .filter(|(_, high)| *high > 0)
            .collect()
    })
    .await
    .unwrap()
}

/// Waits until the group has committed every record of the topic (a partition without records
/// needs no commit).
pub async fn wait_all_committed(kafka: &TestKafka) {
    let deadline = Instant::now() + WAIT;
    let want = ends(kafka).await;
    loop {
        let got = committed(kafka).await;
        if want.iter().all(|(p, end)| got.get(p).copied().unwrap_or(0) == *end) {
            return;
        }
        assert!(Instant::now() < deadline, "committed {got:?}, end offsets {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sets the group's committed offset of every partition back to 0 (the group must be empty).
pub async fn rewind(kafka: &TestKafka) {
    let partitions = platform::kafka::partition_count(&kafka.bootstrap, &kafka.topic).await.unwrap().unwrap();
    let c = group_client(kafka);
    let mut tpl = TopicPartitionList::new();
    for p in 0..i32::try_from(partitions).unwrap() {
        tpl.add_partition_offset(&kafka.topic, p, Offset::Offset(0)).unwrap();
    }
    tokio::task::spawn_blocking(move || c.commit(&tpl, CommitMode::Sync).unwrap()).await.unwrap();
    assert!(committed(kafka).await.values().all(|o| *o == 0), "rewound");
}

/// The first `n` records of `topic`, read by a group of their own.
pub async fn read(kafka: &TestKafka, topic: &str, n: usize) -> Vec<Record> {
    testkit::kafka::read(&kafka.bootstrap, topic, n).await
}

/// Waits until the metric is at least `at_least`.
pub async fn wait_metric(app: &TestApp, name: &str, labels: &[(&str, &str)], at_least: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = app.metric(name, labels).await;
        if v >= at_least {
            return;
        }
        assert!(Instant::now() < deadline, "{name}{labels:?} = {v}, wanted >= {at_least} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
