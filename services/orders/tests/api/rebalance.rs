//! `orders-rebalance apply` on real shard instances: na-2 is a Postgres instance of the test's
//! own, moves run under load with the real relay and broker, the CLI is killed at its phases,
//! and a decommission moves everything back. Each test ends with the audit the issue asks
//! for: every acknowledged order readable at its home, stock adding up, events on the topic
//! once each and in order, and nothing of the moves left behind.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use orders::rebalance::apply::{Mover, Options};
use orders::rebalance::shards::leftovers;
use platform::db::Schema;
use serde_json::{Value, json};
use shard_router::{LiveStore, ShardMap, ShardPools};
use sqlx::PgPool;
use testkit::kafka::read_all;
use testkit::{PrivatePostgres, TestApp, TestDb, TestKafka};
use tokio::sync::Mutex;

use test_stack::{Stack, order_body};

/// The accounts + orders stack of the other tests, plus an `na-2` on an instance of its own.
struct Moving {
    s: Stack,
    na2: TestDb,
    _na2_instance: PrivatePostgres,
    dir: tempfile::TempDir,
}

impl Moving {
    async fn new() -> Self {
        let s = Stack::start().await;
        let instance = PrivatePostgres::start().await.unwrap();
        let na2 = TestDb::create_on(&instance.url(), Schema::Shard).await.unwrap();
        Self { s, na2, _na2_instance: instance, dir: tempfile::tempdir().unwrap() }
    }

    /// `shards.toml` with NA served by `na` (a list); na-2 is defined either way, and named
    /// with its region when NA no longer lists it (a decommission).
    fn text(&self, na: &[&str]) -> String {
        let url = |name: &str| self.s.shards.dbs[name].url.clone();
        let list: Vec<String> = na.iter().map(|s| format!("\"{s}\"")).collect();
        let draining = if na.contains(&"na-2") { "" } else { "region = \"NA\"\n" };
        format!(
            "[regions.NA]\npartitions = 1024\nshards = [{}]\n[regions.SA]\npartitions = 1024\nshards = [\"sa-1\"]\n\
             [shards.na-1]\nurl = \"{}\"\n[shards.na-2]\nurl = \"{}\"\n{draining}[shards.sa-1]\nurl = \"{}\"\n",
            list.join(", "),
            url("na-1"),
            self.na2.url,
            url("sa-1"),
        )
    }

    fn map(&self, na: &[&str]) -> ShardMap {
        ShardMap::parse(&self.text(na), "test").unwrap()
    }

    /// The map as a file, for the CLI.
    fn file(&self, na: &[&str]) -> std::path::PathBuf {
        let path = self.dir.path().join(format!("shards-{}.toml", na.join("-")));
        std::fs::write(&path, self.text(na)).unwrap();
        path
    }

    async fn orders(&self, na: &[&str], follow: bool) -> TestApp {
        self.s
            .spawn_orders(self.map(na), |st| {
                st.placement_follow = follow;
                st.placement_poll = std::time::Duration::from_millis(200);
            })
            .await
    }

    async fn mover(&self, na: &[&str], opts: Options) -> Mover {
        let map = Arc::new(self.map(na));
        let pools = ShardPools::connect_lazy(&map, Duration::from_secs(5)).unwrap();
        let url = &self.s.shards.placement.url;
        let store = LiveStore::connect_lazy(url, Duration::from_secs(5)).unwrap();
        Mover::new(map, pools, store, url, opts).await.unwrap()
    }

    fn pool(&self, shard: &str) -> &PgPool {
        if shard == "na-2" { &self.na2.pool } else { self.s.shards.pool(shard).unwrap() }
    }

    fn placement(&self) -> &PgPool {
        &self.s.shards.placement.pool
    }

    /// Runs the CLI as a process: its exit status and output.
    /// `orders-rebalance <args>` on both NA shards, which must succeed; what it printed.
    async fn cli_ok(&self, args: &[&str]) -> String {
        let (code, out) = self.cli(&BOTH, args).await;
        assert_eq!(code, Some(0), "{out}");
        out
    }

    /// `orders-rebalance <args> --crash-at <point>`: the process exits abruptly there, as a
    /// crash would.
    async fn crash_at(&self, args: &[&str], point: &str) {
        let (code, out) = self.cli(&BOTH, &[args, &["--crash-at", point]].concat()).await;
        assert_ne!(code, Some(0), "killed at {point}: {out}");
    }

    async fn cli(&self, na: &[&str], args: &[&str]) -> (Option<i32>, String) {
        let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_orders-rebalance"))
            .args(args)
            .env("TICKET_HUB_ORDERS__SHARDS_FILE", self.file(na))
            .env("TICKET_HUB_ORDERS__PLACEMENT_URL", &self.s.shards.placement.url)
            .output()
            .await
            .unwrap();
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        (out.status.code(), text)
    }

    async fn partitions_on(&self, shard: &str) -> i64 {
        sqlx::query_scalar("select count(*) from partition_placement where region = 'NA' and shard = $1")
            .bind(shard)
            .fetch_one(self.placement())
            .await
            .unwrap()
    }

    /// Nothing of any move is left: no replication object on either NA shard, nothing frozen,
    /// nothing incoming, no unfinished move.
    async fn assert_nothing_left(&self) {
        for shard in ["na-1", "na-2"] {
            let left = leftovers(self.pool(shard), "th_move_").await.unwrap();
            assert!(left.is_empty(), "{shard} keeps {left:?}");
            let stuck: i64 =
                sqlx::query_scalar("select count(*) from partition_owner where state in ('FROZEN', 'INCOMING')")
                    .fetch_one(self.pool(shard))
                    .await
                    .unwrap();
            assert_eq!(stuck, 0, "{shard} has frozen or incoming partitions");
        }
        let active: i64 =
            sqlx::query_scalar("select count(*) from partition_move where phase not in ('DONE', 'ABORTED')")
                .fetch_one(self.placement())
                .await
                .unwrap();
        assert_eq!(active, 0, "an unfinished move");
    }
}

/// An order the service acknowledged (201), and whether its payment was acknowledged too.
#[derive(Debug, Clone)]
struct Acked {
    id: String,
    ticket_type: String,
    paid: bool,
}

/// Orders, payments and idempotent retries against `app`, until `stop`: each writer picks an
/// event, orders with a fresh key, replays that key now and then (expecting the same order),
/// and pays half of its orders. Sold-out answers (409) are expected: stock is small.
async fn writers(
    group: &'static str,
    app: Arc<TestApp>,
    token: String,
    events: Arc<Vec<(String, String)>>,
    n: usize,
    stop: Arc<AtomicBool>,
    acked: Arc<Mutex<Vec<Acked>>>,
) -> Vec<String> {
    let mut tasks = Vec::new();
    for w in 0..n {
        let (app, token, events, stop, acked) =
            (app.clone(), token.clone(), events.clone(), stop.clone(), acked.clone());
        tasks.push(tokio::spawn(async move {
            let mut problems = Vec::new();
            let mut i = w;
            while !stop.load(Ordering::Relaxed) {
                i += n;
                let (event, tt) = &events[i % events.len()];
                let key = format!("{group}-w{w}-{i}");
                let post = || {
                    app.client
                        .post(app.url("/api/v1/orders"))
                        .bearer_auth(&token)
                        .header("Idempotency-Key", &key)
                        .json(&order_body("NA", event, tt, 1))
                        .send()
                };
                let res = post().await.unwrap();
                let status = res.status().as_u16();
                let body: Value = res.json().await.unwrap_or(Value::Null);
                match status {
                    201 => {}
                    409 | 503 => continue,
                    other => {
                        problems.push(format!("order: {other} {body}"));
                        continue;
                    }
                }
                let id = body["orderId"].as_str().unwrap().to_owned();
                if i % 3 == 0 {
                    let again = post().await.unwrap();
                    let again_status = again.status().as_u16();
                    let replay: Value = again.json().await.unwrap_or(Value::Null);
                    if again_status == 201 && replay["orderId"] != id.as_str() {
                        problems.push(format!("replay of {key} made another order: {replay}"));
                    } else if again_status != 201 && again_status != 503 {
                        problems.push(format!("replay of {key}: {again_status} {replay}"));
                    }
                }
                let mut paid = false;
                if i % 2 == 0 {
                    let res = app.post_json_as(&format!("/api/v1/orders/{id}/pay"), &token, &json!({})).await;
                    match res.status().as_u16() {
                        200 => paid = true,
                        503 => {}
                        other => problems.push(format!("pay {id}: {other}")),
                    }
                }
                acked.lock().await.push(Acked { id, ticket_type: tt.clone(), paid });
            }
            problems
        }));
    }
    let mut problems = Vec::new();
    for t in tasks {
        problems.extend(t.await.unwrap());
    }
    problems
}

/// The audit: every acknowledged order readable with its acknowledged state, and each ticket
/// type's sold count equal to what was acknowledged (nothing lost, nothing oversold), with
/// `remaining = total - sold` on whichever shard serves it.
async fn audit_orders(
    m: &Moving,
    app: &TestApp,
    token: &str,
    events: &[(String, String)],
    acked: &[Acked],
    stock: i64,
) {
    for a in acked {
        let res = app.get_as(&format!("/api/v1/orders/{}", a.id), token).await;
        assert_eq!(res.status(), 200, "acknowledged order {} readable", a.id);
        let body: Value = res.json().await.unwrap();
        if a.paid {
            assert_eq!(body["status"], "PAID", "{body}");
        }
    }
    let mut sold: BTreeMap<&str, i64> = BTreeMap::new();
    for a in acked {
        *sold.entry(a.ticket_type.as_str()).or_default() += 1;
    }
    for (event, tt) in events {
        let got: Value = app.get(&format!("/api/v1/events/{event}")).await.json().await.unwrap();
        let remaining = got["ticketTypes"][0]["remainingQuantity"].as_i64().unwrap();
        let acked_here = sold.get(tt.as_str()).copied().unwrap_or(0);
        assert_eq!(stock - remaining, acked_here, "ticket type {tt}: sold = acknowledged orders");
    }
    for shard in ["na-1", "na-2"] {
        let off: i64 = sqlx::query_scalar(
            "select count(*) from ticket_types t where t.remaining_quantity <> t.total_quantity - \
             coalesce((select sum(quantity) from orders o where o.ticket_type_id = t.id and o.status <> 'CANCELLED'), 0)",
        )
        .fetch_one(m.pool(shard))
        .await
        .unwrap();
        assert_eq!(off, 0, "stock adds up on {shard}");
    }
}

/// Every event of every shard on the topic once, and per order `OrderCreated` before
/// `OrderPaid`, once each.
async fn audit_topic(m: &Moving, kafka: &TestKafka) {
    let mut expected = 0i64;
    for shard in ["na-1", "na-2", "sa-1"] {
        expected += sqlx::query_scalar::<_, i64>("select count(*) from outbox").fetch_one(m.pool(shard)).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(90);
    let records = loop {
        let records = read_all(&kafka.bootstrap, &kafka.topic).await;
        if records.len() as i64 >= expected || tokio::time::Instant::now() > deadline {
            break records;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    let mut seen = BTreeSet::new();
    let mut by_key: BTreeMap<String, Vec<(i32, i64, String)>> = BTreeMap::new();
    for r in &records {
        let id = (r.header("shard").to_owned(), r.header("outbox-id").to_owned());
        assert!(seen.insert(id.clone()), "{id:?} on the topic twice");
        let kind = r.json().unwrap()["eventName"].as_str().unwrap_or_default().to_owned();
        by_key.entry(r.key.clone().unwrap_or_default()).or_default().push((r.partition, r.offset, kind));
    }
    assert_eq!(records.len() as i64, expected, "every outbox row on the topic");
    for (key, mut events) in by_key {
        events.sort();
        let kinds: Vec<&str> = events.iter().map(|(_, _, k)| k.as_str()).collect();
        assert!(kinds == ["OrderCreated"] || kinds == ["OrderCreated", "OrderPaid"], "order {key}: {kinds:?}");
    }
}

async fn relay(m: &Moving, kafka: &TestKafka, na: &[&str]) -> TestApp {
    let settings = super::relay::settings(kafka);
    let r = orders::relay::Relay::build(settings, m.map(na)).await.unwrap();
    TestApp::spawn(r.port(), move |stop| r.run_until_stopped(stop))
}

async fn na_events(s: &Stack, n: usize, stock: i64) -> Vec<(String, String)> {
    let mut events = Vec::new();
    for _ in 0..n {
        events.push(s.event_with_stock("NA", stock).await);
    }
    events
}

const BOTH: [&str; 2] = ["na-1", "na-2"];

/// Tickets per ticket type in the tests under load: few, so sell-outs happen during moves.
const STOCK: i64 = 40;

impl Moving {
    /// `n` NA events of [`STOCK`] tickets, a customer's token to buy them, and orders restarted
    /// on the edited `shards.toml` (NA on na-1 and na-2; nothing moved yet, so all on na-1).
    async fn stocked_on_both(&mut self, n: usize) -> (Arc<Vec<(String, String)>>, String) {
        let events = Arc::new(na_events(&self.s, n, STOCK).await);
        let token = self.s.user("CUSTOMER").await.token;
        self.s.orders = self.orders(&BOTH, true).await;
        (events, token)
    }
}

#[tokio::test]
async fn adding_a_shard_under_load_moves_half_of_na_with_nothing_lost_oversold_or_reordered() {
    let mut m = Moving::new().await;
    let kafka = TestKafka::new(3).await.unwrap();
    let (events, token) = m.stocked_on_both(16).await;
    let app = Arc::new(m.orders(&BOTH, true).await);
    let stale = Arc::new(m.orders(&BOTH, false).await);
    let _relay = relay(&m, &kafka, &BOTH).await;

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let load = tokio::spawn(writers("app", app.clone(), token.clone(), events.clone(), 4, stop.clone(), acked.clone()));
    let stale_load =
        tokio::spawn(writers("stale", stale.clone(), token.clone(), events.clone(), 2, stop.clone(), acked.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let mover = m.mover(&BOTH, Options { batch: 128, ..Options::default() }).await;
    let summary = mover.apply().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    stop.store(true, Ordering::Relaxed);
    let mut problems = load.await.unwrap();
    problems.extend(stale_load.await.unwrap());
    assert!(problems.is_empty(), "{problems:#?}");

    let on_na2 = m.partitions_on("na-2").await;
    assert!((300..724).contains(&on_na2), "about half of NA moved: {on_na2}");
    assert_eq!(m.partitions_on("na-1").await + on_na2, 1024);
    assert!(summary.moves.len() >= 3, "in batches: {}", summary.moves.len());
    for mv in &summary.moves {
        assert!(mv.freeze_ms.unwrap() < 3000.0, "write pause of move {}: {:?} ms", mv.id, mv.freeze_ms);
    }
    // Nothing left to do, and everything verifies.
    assert!(m.mover(&BOTH, Options::default()).await.apply().await.unwrap().moves.is_empty());
    for (mv, checks) in mover.verify(None).await.unwrap() {
        let failed: Vec<_> = checks.iter().filter(|c| !c.ok).collect();
        assert!(failed.is_empty(), "move {}: {failed:?}", mv.id);
    }
    m.assert_nothing_left().await;

    let acked = acked.lock().await.clone();
    assert!(acked.len() > 50, "the load ran: {} orders", acked.len());
    audit_orders(&m, &app, &token, &events, &acked, STOCK).await;
    // The process that never followed the map wrote through the fence's answers.
    assert!(stale.metric("orders_stale_route_retries_total", &[("operation", "create_order")]).await >= 1.0);
    audit_topic(&m, &kafka).await;
}

#[tokio::test]
async fn the_cli_killed_at_each_phase_resumes_or_aborts_cleanly() {
    let mut m = Moving::new().await;
    let (events, token) = m.stocked_on_both(12).await;
    let mut acked = Vec::new();
    for (event, tt) in events.iter() {
        let (status, body) = m.s.order(&token, None, &order_body("NA", event, tt, 1)).await;
        assert_eq!(status, 201, "{body}");
        acked.push(Acked { id: body["orderId"].as_str().unwrap().to_owned(), ticket_type: tt.clone(), paid: false });
    }
    let one_batch = ["apply", "--batch", "32", "--max-moves", "1", "--freeze-lease-ms", "1000"];
    let placement = m.placement().clone();
    let phase = move |id: i64| {
        let placement = placement.clone();
        async move {
            sqlx::query_scalar::<_, String>("select phase from partition_move where id = $1")
                .bind(id)
                .fetch_one(&placement)
                .await
                .unwrap()
        }
    };

    // Killed during the copy: `abort` undoes it, and the partitions never stopped serving.
    m.crash_at(&one_batch, "copy").await;
    assert_eq!(phase(1).await, "COPYING");
    let out = m.cli_ok(&["abort"]).await;
    assert!(out.contains("aborted move 1"), "{out}");
    assert_eq!(phase(1).await, "ABORTED");
    m.assert_nothing_left().await;
    assert_eq!(m.partitions_on("na-2").await, 0);

    // Killed while frozen: the lease lapses by itself, and a rerun completes the move.
    m.crash_at(&one_batch, "freeze").await;
    assert_eq!(phase(2).await, "CATCHING_UP");
    let (event, tt) = &events[0];
    let (status, body) = m.s.order(&token, None, &order_body("NA", event, tt, 1)).await;
    assert_eq!(status, 201, "writes go on once the dead orchestrator's lease lapses: {body}");
    acked.push(Acked { id: body["orderId"].as_str().unwrap().to_owned(), ticket_type: tt.clone(), paid: false });
    let out = m.cli_ok(&one_batch).await;
    assert!(out.contains("resuming move 2"), "{out}");
    assert_eq!(phase(2).await, "DONE");

    // Killed between the source's half of the switch and the destination's: nobody owns the
    // partitions, and no lease will end that, so `abort` rolls the switch back (and `apply`
    // would have finished it instead).
    m.crash_at(&one_batch, "switch").await;
    let moved: i64 = sqlx::query_scalar("select count(*) from partition_owner where state = 'MOVED'")
        .fetch_one(m.pool("na-1"))
        .await
        .unwrap();
    assert_eq!(moved, 32 + 32, "move 2's partitions and this one's are MOVED on na-1");
    m.cli_ok(&["abort"]).await;
    assert_eq!(phase(3).await, "ABORTED");
    m.assert_nothing_left().await;
    assert_eq!(m.partitions_on("na-2").await, 32);

    // Killed right after the switch: the rerun cleans up.
    m.crash_at(&one_batch, "switched").await;
    assert_eq!(phase(4).await, "SWITCHED");
    m.cli_ok(&one_batch).await;
    assert_eq!(phase(4).await, "DONE");

    m.assert_nothing_left().await;
    assert_eq!(m.partitions_on("na-2").await, 64, "two batches of 32 moved");
    let out = m.cli_ok(&["verify"]).await;
    assert!(!out.contains("FAIL"), "{out}");
    let (_, status) = m.cli(&BOTH, &["status"]).await;
    assert!(status.contains("#4 NA na-1 -> na-2, 32 partitions: DONE"), "{status}");
    assert!(status.contains("#1 NA na-1 -> na-2, 32 partitions: ABORTED"), "{status}");
    assert!(status.contains("#3 NA na-1 -> na-2, 32 partitions: ABORTED"), "{status}");
    assert!(status.contains("epoch"), "{status}");
    let app = m.orders(&BOTH, true).await;
    audit_orders(&m, &app, &token, &events, &acked, STOCK).await;
}

#[tokio::test]
async fn decommissioning_na_2_moves_everything_back_online() {
    let mut m = Moving::new().await;
    let kafka = TestKafka::new(3).await.unwrap();
    let (events, token) = m.stocked_on_both(12).await;
    let relay_both = relay(&m, &kafka, &BOTH).await;
    m.mover(&BOTH, Options { batch: 512, ..Options::default() }).await.apply().await.unwrap();
    assert!(m.partitions_on("na-2").await > 300);

    // na-2 leaves NA's list but stays defined, with its region, while it drains.
    let app = Arc::new(m.orders(&["na-1"], true).await);
    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::new()));
    let load = tokio::spawn(writers("app", app.clone(), token.clone(), events.clone(), 4, stop.clone(), acked.clone()));
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (code, plan) = m.cli(&["na-1"], &["plan"]).await;
    assert_eq!(code, Some(0), "{plan}");
    assert!(plan.contains("na-2 -> na-1"), "{plan}");
    let summary = m.mover(&["na-1"], Options { batch: 256, ..Options::default() }).await.apply().await.unwrap();
    tokio::time::sleep(Duration::from_millis(1000)).await;
    stop.store(true, Ordering::Relaxed);
    let problems = load.await.unwrap();
    assert!(problems.is_empty(), "{problems:#?}");
    assert!(summary.moves.iter().all(|mv| mv.source == "na-2" && mv.dest == "na-1"));

    assert_eq!(m.partitions_on("na-1").await, 1024, "everything back on na-1");
    let held: i64 = sqlx::query_scalar("select count(*) from events").fetch_one(m.pool("na-2")).await.unwrap();
    assert_eq!(held, 0, "na-2 is empty and can be removed from shards.toml");
    m.assert_nothing_left().await;
    let acked = acked.lock().await.clone();
    assert!(acked.len() > 30, "the load ran: {} orders", acked.len());
    audit_orders(&m, &app, &token, &events, &acked, STOCK).await;
    audit_topic(&m, &kafka).await;
    drop(relay_both);
}

/// One valid OrderCreated row of `aggregate` in `partition`, straight into a shard's outbox.
async fn outbox_row(pool: &PgPool, aggregate: uuid::Uuid, partition: i16) -> i64 {
    sqlx::query_scalar(&format!(
        "with o as (select $1::uuid as id) insert into outbox (aggregate_id, partition, event_type, payload) \
         select o.id, $3, 'OrderCreated', {} from o returning id",
        super::relay::CREATED_PAYLOAD
    ))
    .bind(aggregate)
    .bind("NA")
    .bind(partition)
    .fetch_one(pool)
    .await
    .unwrap()
}

async fn status_of(pool: &PgPool, id: i64) -> String {
    sqlx::query_scalar("select status from outbox where id = $1").bind(id).fetch_one(pool).await.unwrap()
}

#[tokio::test]
async fn the_new_owner_holds_a_moved_partitions_events_until_the_old_owner_has_published_its_own() {
    let m = Moving::new().await;
    let kafka = TestKafka::new(1).await.unwrap();
    let (na1, na2) = (m.pool("na-1"), m.pool("na-2"));
    let order = uuid::Uuid::new_v4();
    // Written on na-1 before the move, not yet published (na-1's relay is not running).
    let before = outbox_row(na1, order, 7).await;
    // The switch's hold on na-2, with na-1's watermark; then the order's next event on na-2.
    sqlx::query(
        "insert into outbox_hold (region, partition, source, after_id, source_upto, move_id) \
         values ('NA', 7, 'na-1', (select coalesce(max(id), 0) from outbox), $1, 1)",
    )
    .bind(before)
    .execute(na2)
    .await
    .unwrap();
    let after = outbox_row(na2, order, 7).await;
    let other = outbox_row(na2, uuid::Uuid::new_v4(), 8).await;

    let mut settings = super::relay::settings(&kafka);
    settings.shards = vec!["na-2".into()];
    let r = orders::relay::Relay::build(settings, m.map(&BOTH)).await.unwrap();
    let _relay = TestApp::spawn(r.port(), move |stop| r.run_until_stopped(stop));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while status_of(na2, other).await != "SENT" {
        assert!(tokio::time::Instant::now() < deadline, "na-2's unheld partition was never published");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert_eq!(status_of(na2, after).await, "PENDING", "held while na-1 has the order's earlier event pending");

    // Something na-1 writes for the partition after its watermark does not hold na-2 back;
    // na-1 publishing its pre-move row (as its relay would) does release it.
    let _later = outbox_row(na1, uuid::Uuid::new_v4(), 7).await;
    sqlx::query("update outbox set status = 'SENT', sent_at = now() where id = $1")
        .bind(before)
        .execute(na1)
        .await
        .unwrap();
    while status_of(na2, after).await != "SENT" {
        assert!(tokio::time::Instant::now() < deadline, "the hold was never released");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let held: i64 = sqlx::query_scalar("select count(*) from outbox_hold").fetch_one(na2).await.unwrap();
    assert_eq!(held, 0, "the hold is gone once the hand-off is complete");
}
