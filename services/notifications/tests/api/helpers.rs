//! The service on a fresh database and per-test topics (in this process, or as the real binary),
//! a producer speaking the relay's header contract, and readers of what the consumer left
//! behind (notifications, checkpoints, the DLQ).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use notifications::{Application, Settings};
use rdkafka::consumer::{BaseConsumer, Consumer};
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::kafka::Record;
use testkit::process::Process;
use testkit::{TestApp, TestKafka};
use uuid::Uuid;

/// Upper bound of every wait; generous, since the machine is shared.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn settings(database_url: &str, kafka: &TestKafka) -> Settings {
    Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        db_acquire_timeout: Duration::from_millis(1000),
        consumer_name: kafka.group.clone(),
        consumer: kafka.consumer_config(),
        shards_file: testkit::stack::shards_file(),
        ..Settings::default()
    }
}

/// `settings` with its `[consumer]` table changed by `tweak`.
pub fn with_consumer(mut settings: Settings, tweak: impl FnOnce(&mut platform::consumer::Config)) -> Settings {
    tweak(&mut settings.consumer);
    settings
}

pub async fn spawn(settings: Settings) -> TestApp {
    // The service's logs, shown by the test runner when a test fails.
    let _ = platform::telemetry::init(notifications::SERVICE);
    let app = Application::build(settings).await.expect("build notifications");
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

/// The same settings as environment variables, for the real binary.
pub fn binary_env(database_url: &str, kafka: &TestKafka) -> Vec<(&'static str, String)> {
    let s = settings(database_url, kafka);
    let c = s.consumer;
    vec![
        ("TICKET_HUB_NOTIFICATIONS__HTTP_ADDR", "127.0.0.1:0".into()),
        ("TICKET_HUB_NOTIFICATIONS__DATABASE_URL", s.database_url),
        ("TICKET_HUB_NOTIFICATIONS__CONSUMER_NAME", s.consumer_name),
        ("TICKET_HUB_NOTIFICATIONS__CONSUMER__KAFKA_BOOTSTRAP", c.kafka_bootstrap),
        ("TICKET_HUB_NOTIFICATIONS__CONSUMER__TOPIC", c.topic),
        ("TICKET_HUB_NOTIFICATIONS__CONSUMER__DLQ_TOPIC", c.dlq_topic),
        ("TICKET_HUB_NOTIFICATIONS__CONSUMER__RETRY_INITIAL_MS", c.retry_initial.as_millis().to_string()),
        ("TICKET_HUB_NOTIFICATIONS__CONSUMER__RETRY_MAX_MS", c.retry_max.as_millis().to_string()),
        ("TICKET_HUB_NOTIFICATIONS__CONSUMER__LEASE_RETRY_MS", c.lease_retry.as_millis().to_string()),
        ("TICKET_HUB_NOTIFICATIONS__CONSUMER__LAG_INTERVAL_MS", c.lag_interval.as_millis().to_string()),
        ("TICKET_HUB_NOTIFICATIONS__CONSUMER__STALL_AFTER_MS", c.stall_after.as_millis().to_string()),
    ]
}

/// The real binary with [`binary_env`] plus `extra`.
pub async fn spawn_binary(database_url: &str, kafka: &TestKafka, extra: &[(&str, &str)]) -> Process {
    let env = binary_env(database_url, kafka);
    let mut all: Vec<(&str, &str)> = env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    all.extend_from_slice(extra);
    Process::spawn(env!("CARGO_BIN_EXE_notifications"), &all).await
}

pub use testkit::RelayProducer as Producer;
pub use testkit::kafka::relay_headers;

pub fn created(order: Uuid, customer: Uuid) -> Value {
    json!({"eventName": "OrderCreated", "orderId": order, "customerId": customer, "eventId": Uuid::now_v7(),
           "ticketTypeId": Uuid::now_v7(), "quantity": 2, "totalPriceInCents": 10000,
           "occurredAt": "2026-11-25T03:00:00Z", "region": "NA", "version": 1})
}

pub fn paid(order: Uuid) -> Value {
    json!({"eventName": "OrderPaid", "orderId": order, "paidAt": "2026-11-25T03:05:00+01:00", "region": "NA", "version": 2})
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
    keyed(pool, "select order_id, count(*) from notifications group by order_id").await
}

/// The rows of a two-column `sql` as a map from the first column to the second.
async fn keyed<K>(pool: &PgPool, sql: &'static str) -> BTreeMap<K, i64>
where
    K: Ord + Send + Unpin + for<'r> sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    sqlx::query_as::<_, (K, i64)>(sql).fetch_all(pool).await.unwrap().into_iter().collect()
}

fn watermark_client(kafka: &TestKafka) -> BaseConsumer {
    platform::kafka::assigned_consumer_config(&kafka.bootstrap, &kafka.group).create().unwrap()
}

/// The consumer's stored checkpoint (next offset to apply) per partition (absent: nothing
/// applied there yet).
pub async fn checkpoints(pool: &PgPool) -> BTreeMap<i32, i64> {
    keyed(pool, "select kafka_partition, next_offset from consumer_checkpoint").await
}

/// The end offset of each partition of the topic that has records.
pub async fn ends(kafka: &TestKafka) -> BTreeMap<i32, i64> {
    let partitions = platform::kafka::partition_count(&kafka.bootstrap, &kafka.topic).await.unwrap().unwrap();
    let c = watermark_client(kafka);
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

/// Waits until the checkpoints cover every record of the topic (a partition without records
/// needs none).
pub async fn wait_all_checkpointed(pool: &PgPool, kafka: &TestKafka) {
    let deadline = Instant::now() + WAIT;
    let want = ends(kafka).await;
    loop {
        let got = checkpoints(pool).await;
        if want.iter().all(|(p, end)| got.get(p).copied().unwrap_or(0) == *end) {
            return;
        }
        assert!(Instant::now() < deadline, "checkpoints {got:?}, end offsets {want:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// Sets every checkpoint back to 0 (the consumer must be stopped): every record comes again.
pub async fn rewind(pool: &PgPool) {
    sqlx::query("update consumer_checkpoint set next_offset = 0").execute(pool).await.unwrap();
    assert!(checkpoints(pool).await.values().all(|o| *o == 0), "rewound");
}

/// For topics where every record is a distinct valid event: asserts that no checkpoint is
/// ahead of an effect, i.e. in every partition, every offset below the checkpoint has its
/// inbox row. One statement, so one snapshot: checkpoints and effects as committed together.
pub async fn assert_no_checkpoint_before_its_effect(pool: &PgPool) {
    let rows: Vec<(i32, i64, i64)> = sqlx::query_as(
        "select c.kafka_partition, c.next_offset,
                (select count(*) from inbox i where i.kafka_partition = c.kafka_partition and i.kafka_offset < c.next_offset)
         from consumer_checkpoint c",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    for (partition, next, effects) in rows {
        assert_eq!(effects, next, "partition {partition}: checkpoint {next}, but only {effects} effects below it");
    }
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

/// Sends `n` OrderCreated events of na-1 with outbox ids `first..first+n`, 64 in flight, and
/// returns their order ids.
pub async fn produce(p: &Producer, first: usize, n: usize) -> Vec<Uuid> {
    use futures::StreamExt;
    let customer = Uuid::now_v7();
    let orders: Vec<Uuid> = (0..n).map(|_| Uuid::now_v7()).collect();
    futures::stream::iter(orders.iter().enumerate())
        .for_each_concurrent(64, |(i, order)| async move {
            p.send_event(&created(*order, customer), "na-1", &(first + i).to_string()).await;
        })
        .await;
    orders
}

/// Asserts that every order has exactly one notification and nothing else was stored.
pub async fn assert_exactly_once(pool: &PgPool, orders: &[Uuid]) {
    let counts = per_order(pool).await;
    let missing: Vec<&Uuid> = orders.iter().filter(|o| !counts.contains_key(o)).collect();
    assert!(missing.is_empty(), "{} of {} events have no notification", missing.len(), orders.len());
    let doubled: Vec<(&Uuid, &i64)> = counts.iter().filter(|(_, n)| **n != 1).collect();
    assert!(doubled.is_empty(), "events with more than one notification: {doubled:?}");
    assert_eq!(counts.len(), orders.len(), "notifications for events never sent");
    assert_eq!(count(pool, "inbox").await, i64::try_from(orders.len()).unwrap());
}

/// Sum of the checkpoints (records applied or dead-lettered so far), 0 while the database
/// does not answer.
pub async fn progress(pool: &PgPool) -> i64 {
    sqlx::query_scalar::<_, Option<i64>>("select sum(next_offset)::bigint from consumer_checkpoint")
        .fetch_one(pool)
        .await
        .ok()
        .flatten()
        .unwrap_or(0)
}

/// Waits until at least `n` records are checkpointed.
pub async fn wait_progress(pool: &PgPool, n: i64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let got = progress(pool).await;
        if got >= n {
            return;
        }
        assert!(Instant::now() < deadline, "{got} records checkpointed, wanted {n} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
