//! The outbox relays against the real shard instances and the real broker: every must-show of
//! the relay issue. Relays that must die for real run as processes and get SIGKILL.

use std::collections::{BTreeMap, BTreeSet};
use std::process::Stdio;
use std::time::Duration;

use orders::relay::{Relay, Settings};
use serde_json::{Value, json};
use shard_router::ShardMap;
use sqlx::PgPool;
use testkit::kafka::{Record, read, read_all};
use testkit::{PrivateBroker, TestApp, TestKafka, TestShards};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};
use uuid::Uuid;

use test_stack::{Stack, order_body};

const WAIT: Duration = Duration::from_secs(90);

pub use test_stack::services::relay_settings as settings;

async fn spawn(settings: Settings, map: ShardMap) -> TestApp {
    let r = Relay::build(settings, map).await.unwrap();
    TestApp::spawn(r.port(), move |stop| r.run_until_stopped(stop))
}

/// Outbox ids are per shard: (shard, outbox id) names a row.
fn row(r: &Record) -> (String, i64) {
    (r.header("shard").to_owned(), r.header("outbox-id").parse().unwrap())
}

fn key(r: &Record) -> &str {
    r.key.as_deref().unwrap_or_default()
}

async fn wait_until<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !ready().await {
        assert!(tokio::time::Instant::now() < deadline, "not within {WAIT:?}: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn count(pool: &PgPool, condition: &str) -> i64 {
    sqlx::query_scalar(&format!("select count(*) from outbox where {condition}")).fetch_one(pool).await.unwrap()
}

pub const CREATED_PAYLOAD: &str = "jsonb_build_object('eventName', 'OrderCreated', 'orderId', o.id, 'customerId', o.id,
    'eventId', o.id, 'ticketTypeId', o.id, 'quantity', 1, 'totalPriceInCents', 2500,
    'occurredAt', to_char(now() at time zone 'utc', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), 'region', $2::text, 'version', 1)";

/// Inserts `n` valid OrderCreated rows straight into a shard's outbox, as the order
/// transaction writes them; returns their outbox ids.
async fn insert_created(pool: &PgPool, region: &str, n: i64) -> Vec<i64> {
    sqlx::query_scalar(&format!(
        "with o as (select gen_random_uuid() as id from generate_series(1, $1))
         insert into outbox (aggregate_id, partition, event_type, payload)
         select o.id, 0, 'OrderCreated', {CREATED_PAYLOAD} from o returning id"
    ))
    .bind(n)
    .bind(region)
    .fetch_all(pool)
    .await
    .unwrap()
}

/// A relay run as a real process (so it can be SIGKILLed), on the test's databases and topics.
struct RelayProcess {
    child: Child,
    base: String,
}

impl RelayProcess {
    async fn start(shards: &TestShards, s: &Settings, args: &[&str]) -> Self {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_orders-relay"));
        cmd.current_dir(testkit::stack::repo_root())
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .envs(relay_env(shards, s));
        let mut child = cmd.spawn().unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if let Some(port) = serde_json::from_str::<Value>(&line).ok().and_then(|v| v["port"].as_u64()) {
                    return port;
                }
            }
            panic!("orders-relay ended before it listened");
        })
        .await
        .expect("orders-relay listening within 30 s");
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { child, base: format!("http://127.0.0.1:{port}") }
    }

    /// A relay of na-1 only.
    async fn of_na(shards: &TestShards, s: &Settings) -> Self {
        Self::start(shards, s, &["run", "--shard", "na-1"]).await
    }

    /// A relay of na-1 only, once it holds na-1's lease.
    async fn leading_na(shards: &TestShards, s: &Settings) -> Self {
        let relay = Self::of_na(shards, s).await;
        wait_until("the relay leads na-1", || async { relay.role("na-1").await == "leader" }).await;
        relay
    }

    async fn role(&self, shard: &str) -> String {
        let v: Value = reqwest::get(format!("{}/api/v1/relay", self.base)).await.unwrap().json().await.unwrap();
        v["shards"][shard]["role"].as_str().unwrap_or_default().to_owned()
    }

    /// A counter from the process's own `/metrics` (0 when never incremented).
    async fn counter(&self, name: &str, shard: &str) -> u64 {
        let text = reqwest::get(format!("{}/metrics", self.base)).await.unwrap().text().await.unwrap();
        testkit::app::metric_value(&text, name, &[("shard", shard)]) as u64
    }

    async fn sigkill(mut self) {
        self.child.kill().await.unwrap();
    }
}

/// Fresh topics of `partitions`, fresh shards, and relay settings on them.
async fn fresh(partitions: i32) -> (TestKafka, TestShards, Settings) {
    let kafka = TestKafka::new(partitions).await.unwrap();
    let shards = TestShards::create().await.unwrap();
    let s = settings(&kafka);
    (kafka, shards, s)
}

/// The environment that points the relay binary at the test's shard databases and topics.
fn relay_env(shards: &TestShards, s: &Settings) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = shards
        .dbs
        .iter()
        .map(|(name, db)| (shards.map.shard_named(name).unwrap().name.env_var(), db.url.clone()))
        .collect();
    let p = "TICKET_HUB_ORDERS_RELAY__";
    for (k, v) in [
        ("HTTP_ADDR", "127.0.0.1:0".to_owned()),
        ("KAFKA_BOOTSTRAP", s.kafka_bootstrap.clone()),
        ("TOPIC", s.topic.clone()),
        ("DLQ_TOPIC", s.dlq_topic.clone()),
        ("POLL_INTERVAL_MS", s.poll_interval.as_millis().to_string()),
        ("LEASE_RETRY_MS", s.lease_retry.as_millis().to_string()),
        ("RETRY_BASE_MS", s.retry_base.as_millis().to_string()),
        ("RETRY_MAX_MS", s.retry_max.as_millis().to_string()),
        ("BATCH_SIZE", s.batch_size.to_string()),
    ] {
        env.push((format!("{p}{k}"), v));
    }
    env
}

/// Runs an `orders-relay` operator command; returns its exit code and stdout.
async fn relay_cli(shards: &TestShards, s: &Settings, args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_orders-relay"))
        .current_dir(testkit::stack::repo_root())
        .args(args)
        .envs(relay_env(shards, s))
        .output()
        .await
        .unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned())
}

/// In each region, `n` one-ticket orders by `customer`, every `pay_every`th one paid at once.
async fn order_in_both_regions(stack: &Stack, customer: &str, n: usize, pay_every: usize) {
    for region in ["NA", "SA"] {
        let (event, tt) = stack.event_with_stock(region, 100).await;
        for i in 0..n {
            let (status, created) = stack.order(customer, None, &order_body(region, &event, &tt, 1)).await;
            assert_eq!(status, 201, "{created}");
            if i % pay_every == 0 {
                let (status, paid) = stack.pay(customer, created["orderId"].as_str().unwrap()).await;
                assert_eq!(status, 200, "{paid}");
            }
        }
    }
}

#[tokio::test]
async fn every_committed_row_is_published_once_on_both_shards_keyed_by_order_id() {
    let stack = Stack::start().await;
    let kafka = TestKafka::new(6).await.unwrap();
    let customer = stack.user("CUSTOMER").await.token;
    order_in_both_regions(&stack, &customer, 8, 2).await;
    // What the order transactions committed, per shard: (shard, outbox id) → (order id, type).
    let mut expected: BTreeMap<(String, i64), (String, String)> = BTreeMap::new();
    for (shard, db) in &stack.shards.dbs {
        let rows: Vec<(i64, Uuid, String)> =
            sqlx::query_as("select id, aggregate_id, event_type from outbox").fetch_all(&db.pool).await.unwrap();
        assert_eq!(rows.len(), 12, "8 OrderCreated and 4 OrderPaid on {shard}");
        for (id, order, typ) in rows {
            expected.insert((shard.clone(), id), (order.to_string(), typ));
        }
    }

    let _relay = spawn(settings(&kafka), stack.shards.map.clone()).await;
    let got = read(&kafka.bootstrap, &kafka.topic, expected.len()).await;

    let mut seen = BTreeSet::new();
    for g in &got {
        assert!(seen.insert(row(g)), "published twice: {g:?}");
        let (order, typ) = expected.get(&row(g)).unwrap_or_else(|| panic!("no such outbox row: {g:?}"));
        assert_eq!(key(g), order, "keyed by order id");
        assert_eq!(g.json().unwrap()["orderId"], order.as_str());
        assert_eq!(g.header("type"), typ);
        assert_eq!(g.json().unwrap()["eventName"], typ.as_str());
        let region = if g.header("shard") == "na-1" { "NA" } else { "SA" };
        assert_eq!(g.header("region"), region);
        assert!(!g.header("x-correlation-id").is_empty(), "the order request's correlation id travels: {g:?}");
    }
    assert_eq!(seen.len(), expected.len());
    for (shard, db) in &stack.shards.dbs {
        wait_until(&format!("{shard}: every row SENT"), || async {
            count(&db.pool, "status <> 'SENT' or in_flight or sent_at is null").await == 0
        })
        .await;
    }
    assert_eq!(read_all(&kafka.bootstrap, &kafka.topic).await.len(), 24, "nothing published twice");
}

#[tokio::test]
async fn order_created_is_delivered_before_order_paid() {
    let stack = Stack::start().await;
    let kafka = TestKafka::new(3).await.unwrap();
    let _relay = spawn(settings(&kafka), stack.shards.map.clone()).await;

    // Paid right after created, while the relay runs: the two rows race through it.
    let customer = stack.user("CUSTOMER").await.token;
    order_in_both_regions(&stack, &customer, 10, 1).await;
    // And the hard case: OrderCreated is backing off after a failure while OrderPaid is ready.
    let na = stack.shards.pool("na-1").unwrap();
    let order = Uuid::now_v7();
    sqlx::query(&format!(
        "with o as (select $1::uuid as id)
         insert into outbox (aggregate_id, partition, event_type, payload, attempts, next_attempt_at)
         select o.id, 0, 'OrderCreated', {CREATED_PAYLOAD}, 1, now() + interval '2 seconds' from o"
    ))
    .bind(order)
    .bind("NA")
    .execute(na)
    .await
    .unwrap();
    sqlx::query(
        "insert into outbox (aggregate_id, partition, event_type, payload)
         values ($1, 0, 'OrderPaid', jsonb_build_object('eventName', 'OrderPaid', 'orderId', $1,
                 'paidAt', '2026-01-20T21:00:00Z', 'region', 'NA', 'version', 2))",
    )
    .bind(order)
    .execute(na)
    .await
    .unwrap();

    let got = read(&kafka.bootstrap, &kafka.topic, 42).await;
    let mut by_order: BTreeMap<&str, Vec<&Record>> = BTreeMap::new();
    for g in &got {
        by_order.entry(key(g)).or_default().push(g);
    }
    assert_eq!(by_order.len(), 21);
    for (order, mut events) in by_order {
        events.sort_by_key(|g| g.offset);
        let types: Vec<&str> = events.iter().map(|g| g.header("type")).collect();
        assert_eq!(types, ["OrderCreated", "OrderPaid"], "order {order}");
        assert_eq!(events[0].partition, events[1].partition, "one order, one partition");
    }
}

#[tokio::test]
async fn with_the_broker_stopped_rows_stay_pending_and_all_publish_after_it_returns() {
    let mut broker = PrivateBroker::start().await.unwrap();
    let kafka = TestKafka::on(&broker.bootstrap, 3).await.unwrap();
    let shards = TestShards::create().await.unwrap();
    let na = shards.pool("na-1").unwrap();
    let _relay =
        spawn(Settings { message_timeout: Duration::from_millis(2000), ..settings(&kafka) }, shards.map.clone()).await;

    let mut ids: BTreeSet<i64> = insert_created(na, "NA", 50).await.into_iter().collect();
    wait_until("first 50 SENT", || async { count(na, "status = 'SENT'").await == 50 }).await;

    broker.stop().await.unwrap();
    ids.extend(insert_created(na, "NA", 200).await);
    wait_until("a publish attempt fails while the broker is down", || async {
        count(na, "status = 'PENDING' and last_error is not null").await > 0
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(count(na, "status = 'FAILED'").await, 0, "an outage never dead-letters");
    assert_eq!(count(na, "status = 'PENDING'").await, 200, "rows wait for the broker");

    broker.resume().await.unwrap();
    wait_until("all 250 SENT after the broker returned", || async { count(na, "status = 'SENT'").await == 250 }).await;
    let got = read(&broker.bootstrap, &kafka.topic, 250).await;
    let published: BTreeSet<i64> = got.iter().map(|g| row(g).1).collect();
    assert_eq!(published, ids, "none lost; broker log:\n{}", broker.log());
}

#[tokio::test]
async fn sigkill_mid_batch_loses_nothing_and_redeliveries_are_counted() {
    let (kafka, shards, s) = fresh(6).await;
    let (na, s) = (shards.pool("na-1").unwrap(), Settings { batch_size: 250, ..s });
    let ids: BTreeSet<i64> = insert_created(na, "NA", 6000).await.into_iter().collect();

    // Kill a relay while it has rows in flight (handed to the broker, outcome not recorded).
    // A kill can land between two batches; then the round is repeated with a new relay.
    let mut in_flight_at_kill = 0;
    for _ in 0..5 {
        let relay = RelayProcess::of_na(&shards, &s).await;
        wait_until("a batch in flight", || async { count(na, "in_flight").await > 0 }).await;
        relay.sigkill().await;
        in_flight_at_kill = count(na, "in_flight").await;
        if in_flight_at_kill > 0 {
            break;
        }
    }
    assert!(in_flight_at_kill > 0, "no kill landed mid-batch in 5 tries");
    let sent_at_kill = count(na, "status = 'SENT'").await;
    assert!(sent_at_kill < 6000, "the kill came before the end");

    let relay = RelayProcess::of_na(&shards, &s).await;
    wait_until("all 6000 SENT", || async { count(na, "status = 'SENT'").await == 6000 }).await;
    assert_eq!(count(na, "in_flight").await, 0);
    let redelivered = relay.counter("orders_relay_redelivered_total", "na-1").await;
    assert_eq!(redelivered, u64::try_from(in_flight_at_kill).unwrap(), "every row in flight at the kill is counted");

    let all = read_all(&kafka.bootstrap, &kafka.topic).await;
    let published: BTreeSet<i64> = all.iter().map(|g| row(g).1).collect();
    assert_eq!(published, ids, "nothing lost");
    let duplicates = i64::try_from(all.len()).unwrap() - 6000;
    assert!(duplicates <= in_flight_at_kill, "{duplicates} duplicates, only {in_flight_at_kill} rows were in flight");
}

#[tokio::test]
async fn a_second_relay_stands_by_while_the_first_holds_the_lease_and_takes_over_when_it_dies() {
    let (kafka, shards, s) = fresh(3).await;
    let na = shards.pool("na-1").unwrap();
    let first = RelayProcess::leading_na(&shards, &s).await;
    let second = RelayProcess::of_na(&shards, &s).await;
    wait_until("the second relay stands by", || async { second.role("na-1").await == "standby" }).await;

    insert_created(na, "NA", 100).await;
    wait_until("100 SENT", || async { count(na, "status = 'SENT'").await == 100 }).await;
    assert_eq!(first.counter("orders_relay_published_total", "na-1").await, 100);
    assert_eq!(second.counter("orders_relay_published_total", "na-1").await, 0, "the standby published nothing");
    assert_eq!(second.role("na-1").await, "standby");

    first.sigkill().await;
    insert_created(na, "NA", 100).await;
    wait_until("the second relay takes the lease", || async { second.role("na-1").await == "leader" }).await;
    wait_until("200 SENT", || async { count(na, "status = 'SENT'").await == 200 }).await;
    assert_eq!(second.counter("orders_relay_published_total", "na-1").await, 100);
    assert_eq!(read_all(&kafka.bootstrap, &kafka.topic).await.len(), 200, "nothing published twice");
}

#[tokio::test]
async fn a_leader_that_loses_its_connection_steps_down_and_the_lease_moves_on() {
    let (_kafka, shards, s) = fresh(1).await;
    let na = shards.pool("na-1").unwrap();
    let relay = RelayProcess::leading_na(&shards, &s).await;

    // The server ends the leader's session, as a failover or an admin would.
    let cut: i64 = sqlx::query_scalar(
        "select count(pg_terminate_backend(pid)) from pg_stat_activity
         where datname = current_database() and application_name like 'orders-relay pid%'",
    )
    .fetch_one(na)
    .await
    .unwrap();
    assert!(cut >= 1);
    // It notices, stands by, and wins the (now free) lease again on a new session.
    insert_created(na, "NA", 20).await;
    wait_until("20 SENT after the cut", || async { count(na, "status = 'SENT'").await == 20 }).await;
    assert_eq!(relay.role("na-1").await, "leader");
}

#[tokio::test]
async fn a_row_that_keeps_failing_is_dead_lettered_and_reprocess_publishes_it_again() {
    let (kafka, shards, s) = fresh(3).await;
    let (na, s) = (shards.pool("na-1").unwrap(), Settings { max_attempts: 3, ..s });
    let _relay = spawn(s.clone(), shards.map.clone()).await;

    // An event this relay cannot vouch for (written by a newer orders, say).
    let order = Uuid::now_v7();
    let bad = json!({"eventName": "OrderRefunded", "orderId": order, "region": "NA"});
    let id: i64 = sqlx::query_scalar(
        "insert into outbox (aggregate_id, partition, event_type, payload, correlation_id)
         values ($1, 0, 'OrderRefunded', $2, 'corr-dlq-1') returning id",
    )
    .bind(order)
    .bind(&bad)
    .fetch_one(na)
    .await
    .unwrap();
    insert_created(na, "NA", 5).await;

    wait_until("the row is FAILED", || async { count(na, "status = 'FAILED'").await == 1 }).await;
    let (attempts, error): (i32, String) =
        sqlx::query_as("select attempts, last_error from outbox where id = $1").bind(id).fetch_one(na).await.unwrap();
    assert_eq!(attempts, 3, "dead-lettered after the retry limit");
    assert!(error.contains("contract"), "{error}");

    let dlq = read(&kafka.bootstrap, &kafka.dlq_topic, 1).await;
    assert_eq!(key(&dlq[0]), order.to_string());
    assert_eq!(dlq[0].json().unwrap(), bad, "the original payload");
    assert_eq!(row(&dlq[0]), ("na-1".to_owned(), id));
    assert_eq!(dlq[0].header("type"), "OrderRefunded");
    assert_eq!(dlq[0].header("x-correlation-id"), "corr-dlq-1");
    assert_eq!(dlq[0].header("dlq-attempts"), "3");
    assert!(dlq[0].header("dlq-reason").contains("contract"), "{:?}", dlq[0].headers);
    wait_until("the healthy rows went on", || async { count(na, "status = 'SENT'").await == 5 }).await;

    let (code, out) = relay_cli(&shards, &s, &["status", "--shard", "na-1"]).await;
    assert_eq!(code, 0, "{out}");
    let line = out.lines().find(|l| l.starts_with("na-1")).unwrap_or_else(|| panic!("{out}"));
    let cols: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(&cols[..4], ["na-1", "NA", "0", "1"], "pending 0, failed 1: {out}");
    assert!(line.contains("orders-relay pid"), "the lease holder is shown: {out}");

    // The operator fixes the cause (here: the row, as a corrected writer would have written
    // it) and re-queues it.
    sqlx::query(
        "update outbox set event_type = 'OrderPaid', payload = jsonb_build_object('eventName', 'OrderPaid',
         'orderId', aggregate_id, 'paidAt', '2026-01-20T21:00:00Z', 'region', 'NA', 'version', 2) where id = $1",
    )
    .bind(id)
    .execute(na)
    .await
    .unwrap();
    let (code, out) = relay_cli(&shards, &s, &["reprocess", "--shard", "na-1", "--id", &id.to_string()]).await;
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("re-queued 1 FAILED row(s): {id}")), "{out}");
    wait_until("the re-queued row is SENT", || async {
        count(na, &format!("id = {id} and status = 'SENT'")).await == 1
    })
    .await;
    let main = read(&kafka.bootstrap, &kafka.topic, 6).await;
    let republished = main.iter().find(|g| row(g).1 == id).expect("published on the main topic");
    assert_eq!(key(republished), order.to_string());

    // Asking for what is not FAILED, or does not exist, is said and exits non-zero.
    let (code, out) =
        relay_cli(&shards, &s, &["reprocess", "--shard", "na-1", "--id", &id.to_string(), "--id", "999999"]).await;
    assert_eq!(code, 1, "{out}");
    assert!(out.contains(&format!("outbox id {id} is SENT, not FAILED")), "{out}");
    assert!(out.contains("no outbox row with id 999999"), "{out}");
    let (code, _) = relay_cli(&shards, &s, &["reprocess", "--id", "1"]).await;
    assert_ne!(code, 0, "--id without --shard is ambiguous with two shards");
}
