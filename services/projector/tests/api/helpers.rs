//! The service on a fresh database and per-test topics, a producer speaking the relay's
//! header contract (optionally to a chosen partition), and readers of the generations.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use projector::generations::Generation;
use projector::{Application, Settings};
use serde_json::{Value, json};
use sqlx::PgPool;
use testkit::{TestApp, TestKafka};
use uuid::Uuid;

/// Upper bound of every wait; generous, since the machine is shared.
pub const WAIT: Duration = Duration::from_secs(60);

pub fn settings(database_url: &str, kafka: &TestKafka) -> Settings {
    Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: database_url.to_owned(),
        db_acquire_timeout: Duration::from_millis(1000),
        consumer: kafka.consumer_config(),
        supervise_interval: Duration::from_millis(200),
        ..Settings::default()
    }
}

pub async fn spawn(settings: Settings) -> TestApp {
    let _ = platform::telemetry::init(projector::SERVICE);
    let app = Application::build(settings).await.expect("build projector");
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

pub fn g(n: i32) -> Generation {
    Generation::new(n).unwrap()
}

/// An order's facts, to build its events from.
#[derive(Debug, Clone, Copy)]
pub struct Order {
    pub id: Uuid,
    pub customer: Uuid,
    pub event: Uuid,
    pub ticket_type: Uuid,
    pub quantity: i32,
    pub total: i64,
}

impl Order {
    pub fn new(customer: Uuid, event: Uuid, ticket_type: Uuid, quantity: i32) -> Self {
        Self { id: Uuid::now_v7(), customer, event, ticket_type, quantity, total: i64::from(quantity) * 2500 }
    }

    pub fn created(&self) -> Value {
        json!({"eventName": "OrderCreated", "orderId": self.id, "customerId": self.customer, "eventId": self.event,
               "ticketTypeId": self.ticket_type, "quantity": self.quantity, "totalPriceInCents": self.total,
               "occurredAt": "2026-11-25T03:00:00Z", "region": "NA", "version": 1})
    }

    pub fn paid(&self) -> Value {
        json!({"eventName": "OrderPaid", "orderId": self.id, "paidAt": "2026-11-25T03:05:00Z", "region": "NA", "version": 2})
    }

    pub fn cancelled(&self) -> Value {
        json!({"eventName": "OrderCancelled", "orderId": self.id, "reason": "EXPIRED",
               "cancelledAt": "2026-11-25T03:15:00Z", "region": "NA", "version": 2})
    }
}

pub use testkit::RelayProducer as Producer;

/// The end offset of each partition of the topic.
pub async fn ends(kafka: &TestKafka) -> BTreeMap<i32, i64> {
    projector::generations::watermarks(&kafka.bootstrap, &kafka.topic)
        .await
        .unwrap()
        .into_iter()
        .map(|(p, _, high)| (p, high))
        .collect()
}

/// Waits until generation `generation`'s checkpoints cover every record of the topic.
pub async fn wait_caught_up(pool: &PgPool, kafka: &TestKafka, generation: Generation) {
    let deadline = Instant::now() + WAIT;
    let want = ends(kafka).await;
    loop {
        let all = projector::generations::checkpoints(pool, &kafka.topic).await.unwrap();
        let got = all.get(&generation).cloned().unwrap_or_default();
        if want.iter().all(|(p, end)| got.get(p).copied().unwrap_or(0) >= *end) {
            return;
        }
        assert!(Instant::now() < deadline, "{generation}: checkpoints {got:?}, end offsets {want:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Every table of a generation (or of the public views, `schema = "public"`) as sorted text
/// rows, without the columns that say when a row was written.
pub async fn tables(pool: &PgPool, schema: &str) -> BTreeMap<&'static str, Vec<String>> {
    let mut out = BTreeMap::new();
    for (table, columns) in COMPARED {
        let rows: Vec<String> =
            sqlx::query_scalar(&format!("select ({columns})::text from {schema}.{table} order by 1"))
                .fetch_all(pool)
                .await
                .unwrap();
        out.insert(*table, rows);
    }
    out
}

/// The columns compared between generations: all but `updated_at` / `applied_at`.
pub const COMPARED: &[(&str, &str)] = &[
    (
        "customer_orders",
        "order_id, customer_id, event_id, ticket_type_id, quantity, total_price_in_cents, status, region, created_at, \
         paid_at, cancelled_at, cancel_reason, version",
    ),
    (
        "order_timeline",
        "order_id, version, event_name, occurred_at, source, outbox_id, correlation_id, kafka_partition, kafka_offset",
    ),
    (
        "event_sales",
        "event_id, ticket_type_id, region, orders, orders_paid, orders_cancelled, tickets_sold, tickets_paid, \
         tickets_cancelled, revenue_in_cents",
    ),
];

/// Rows of `a` missing from `b` or the other way round, per table (EXCEPT both ways).
pub async fn differences(pool: &PgPool, a: &str, b: &str) -> Vec<(String, i64)> {
    let mut out = Vec::new();
    for (table, columns) in COMPARED {
        let n: i64 = sqlx::query_scalar(&format!(
            "select count(*) from (
               (select {columns} from {a}.{table} except all select {columns} from {b}.{table})
               union all
               (select {columns} from {b}.{table} except all select {columns} from {a}.{table})) d"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        if n != 0 {
            out.push(((*table).to_owned(), n));
        }
    }
    out
}

/// `(applied, duplicates)` of a generation.
pub async fn counts(pool: &PgPool, generation: Generation) -> (i64, i64) {
    sqlx::query_as("select applied, duplicates from projection_generation where generation = $1")
        .bind(generation.get())
        .fetch_one(pool)
        .await
        .unwrap()
}

/// One row of the LIVE `customer_orders`, as JSON.
pub async fn order_row(pool: &PgPool, order: Uuid) -> Option<Value> {
    sqlx::query_scalar("select to_jsonb(c) from customer_orders c where order_id = $1")
        .bind(order)
        .fetch_optional(pool)
        .await
        .unwrap()
}

/// Waits until `check` holds for the order's LIVE row.
pub async fn wait_order(pool: &PgPool, order: Uuid, what: &str, check: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + WAIT;
    loop {
        if let Some(row) = order_row(pool, order).await
            && check(&row)
        {
            return row;
        }
        assert!(Instant::now() < deadline, "order {order}: never {what}: {:?}", order_row(pool, order).await);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until the metric is `want`.
pub async fn wait_metric(app: &TestApp, name: &str, labels: &[(&str, &str)], want: f64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let v = app.metric(name, labels).await;
        if (v - want).abs() < f64::EPSILON {
            return;
        }
        assert!(Instant::now() < deadline, "{name}{labels:?} = {v}, wanted {want} within {WAIT:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
