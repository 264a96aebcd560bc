//! The idempotency hints in Redis (`src/hints.rs`): a keyed write looks for its key on the
//! other shards only when Redis hints it may be there, or cannot say. Each test sets the
//! marker's age itself, so none waits for a window to pass.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::Value;
use test_stack::{Stack, order_body};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;

const WINDOW: Duration = Duration::from_secs(3600);

async fn stack() -> Stack {
    Stack::builder().orders_settings(|o| o.idempotency_hint_window = WINDOW).start().await
}

/// Runs one Redis command on the stack's Redis.
async fn redis<T: redis::FromRedisValue>(s: &Stack, cmd: &mut redis::Cmd) -> T {
    let mut conn = s.redis.pool.get().await.unwrap();
    cmd.query_async(&mut *conn).await.unwrap()
}

fn marker(s: &Stack) -> String {
    format!("{}idem:hints-since", s.orders_settings.redis_key_prefix)
}

fn hint(s: &Stack, customer: &str, key: &str) -> String {
    format!("{}idem:seen:{customer}:create_order:{key}", s.orders_settings.redis_key_prefix)
}

fn now_secs() -> i64 {
    i64::try_from(SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs()).unwrap()
}

/// Dates the marker `age` ago: the hints have been complete (as far as Redis knows) since then.
async fn set_marker_age(s: &Stack, age: Duration) {
    let since = now_secs() - i64::try_from(age.as_secs()).unwrap();
    let () = redis(s, redis::cmd("SET").arg(marker(s)).arg(since)).await;
}

/// Cross-shard look-ups with `outcome` (and `reason`, if given) so far, across every orders
/// process of the test (they share one recorder).
async fn lookups(s: &Stack, outcome: &str, reason: Option<&str>) -> f64 {
    let text = s.orders.get("/metrics").await.text().await.unwrap();
    let mut labels = vec![("operation", "create_order"), ("outcome", outcome)];
    labels.extend(reason.map(|r| ("reason", r)));
    testkit::app::metric_value(&text, "orders_idempotency_lookups_total", &labels)
}

#[tokio::test]
async fn a_hinted_key_reused_on_another_shard_is_still_refused() {
    let s = stack().await;
    let ((na_event, na_tt), (sa_event, sa_tt)) = s.stock_in_na_and_sa(10).await;
    let customer = s.user("CUSTOMER").await;
    set_marker_age(&s, WINDOW * 2).await;

    let (status, first) = s.order(&customer.token, Some("k-1"), &order_body("NA", &na_event, &na_tt, 1)).await;
    assert_eq!(status, 201, "{first}");
    assert_eq!(lookups(&s, "skipped", Some("no_hint")).await, 1.0, "a fresh key under an old marker looks nowhere");
    let ttl: i64 = redis(&s, redis::cmd("TTL").arg(hint(&s, &customer.id.to_string(), "k-1"))).await;
    assert!(ttl > 0 && ttl <= 3600, "the hint lives for the window: {ttl}");

    let (status, body) = s.order(&customer.token, Some("k-1"), &order_body("SA", &sa_event, &sa_tt, 1)).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")), "{body}");
    assert_eq!(lookups(&s, "performed", Some("hinted")).await, 1.0);
    // The retry of the first request is answered as before.
    let (status, again) = s.order(&customer.token, Some("k-1"), &order_body("NA", &na_event, &na_tt, 1)).await;
    assert_eq!((status, &again), (201, &first));
    let (_, sa) = s.get(&format!("/api/v1/events/{sa_event}")).await;
    assert_eq!(sa["ticketTypes"][0]["remainingQuantity"], 10, "no SA order was made");
}

#[tokio::test]
async fn a_missing_hint_is_trusted_only_once_the_marker_is_as_old_as_the_window() {
    let s = stack().await;
    let ((na_event, na_tt), (sa_event, sa_tt)) = s.stock_in_na_and_sa(10).await;
    let customer = s.user("CUSTOMER").await;
    let id = customer.id.to_string();

    // A fresh Redis (this test's prefix has no marker yet): the first keyed write creates a
    // marker dated now, so nothing is trusted yet.
    assert_eq!(s.order(&customer.token, Some("k-1"), &order_body("NA", &na_event, &na_tt, 1)).await.0, 201);
    assert_eq!(lookups(&s, "performed", Some("marker_young")).await, 1.0);
    let since: i64 = redis(&s, redis::cmd("GET").arg(marker(&s))).await;
    assert!((now_secs() - since).abs() <= 5, "the marker is dated now: {since}");

    // The hint lost (as when Redis restarts empty), the marker younger than the window: the
    // reuse on SA is looked for, and refused as without hints.
    let () = redis(&s, redis::cmd("DEL").arg(hint(&s, &id, "k-1"))).await;
    set_marker_age(&s, WINDOW - Duration::from_secs(60)).await;
    let (status, body) = s.order(&customer.token, Some("k-1"), &order_body("SA", &sa_event, &sa_tt, 1)).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")), "{body}");
    assert_eq!(lookups(&s, "performed", Some("marker_young")).await, 2.0);

    // The marker as old as the window: a missing hint is trusted and nothing is looked for.
    // That is the documented limit: a key whose hint is gone (used more than the window ago)
    // and that is reused on another shard is a new order there.
    assert_eq!(s.order(&customer.token, Some("k-2"), &order_body("NA", &na_event, &na_tt, 1)).await.0, 201);
    let () = redis(&s, redis::cmd("DEL").arg(hint(&s, &id, "k-2"))).await;
    set_marker_age(&s, WINDOW).await;
    let skipped = lookups(&s, "skipped", None).await;
    assert_eq!(s.order(&customer.token, Some("k-2"), &order_body("SA", &sa_event, &sa_tt, 1)).await.0, 201);
    assert_eq!(lookups(&s, "skipped", Some("no_hint")).await, skipped + 1.0);
}

#[tokio::test]
async fn with_redis_down_keyed_orders_look_on_every_shard_and_stay_correct() {
    let s = stack().await;
    let ((na_event, na_tt), (sa_event, sa_tt)) = s.stock_in_na_and_sa(10).await;
    let customer = s.user("CUSTOMER").await.token;
    // Even a marker that would allow skipping cannot be read: the process looks everywhere.
    set_marker_age(&s, WINDOW * 2).await;
    let redisless = s
        .spawn_orders(s.shards.map.clone(), |o| {
            o.redis_url = "redis://127.0.0.1:1".to_owned();
        })
        .await;
    let order = |body: Value, key: &'static str| {
        let req = redisless.client.post(redisless.url("/api/v1/orders")).bearer_auth(&customer);
        async move {
            let res = req.header("Idempotency-Key", key).json(&body).send().await.unwrap();
            (res.status().as_u16(), res.json::<Value>().await.unwrap())
        }
    };
    let (status, first) = order(order_body("NA", &na_event, &na_tt, 1), "k-1").await;
    assert_eq!(status, 201, "{first}");
    let (status, again) = order(order_body("NA", &na_event, &na_tt, 1), "k-1").await;
    assert_eq!((status, &again), (201, &first), "a retry is a replay");
    let (status, body) = order(order_body("SA", &sa_event, &sa_tt, 1), "k-1").await;
    assert_eq!((status, body["error"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")), "{body}");
    assert_eq!(lookups(&s, "performed", Some("redis_unavailable")).await, 3.0);
    assert_eq!(lookups(&s, "skipped", None).await, 0.0);
}

/// A TCP forwarder to the test Redis that can be cut (every connection dropped, new ones
/// refused) and restored: Redis failing for one orders process only, while it stays up.
struct Cuttable {
    port: u16,
    up: Arc<AtomicBool>,
    links: Arc<Mutex<Vec<JoinHandle<()>>>>,
    _accept: JoinHandle<()>,
}

impl Cuttable {
    async fn start() -> Self {
        let target = testkit::stack::redis_url().trim_start_matches("redis://").trim_end_matches('/').to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (up, links) = (Arc::new(AtomicBool::new(true)), Arc::new(Mutex::new(Vec::new())));
        let accept = tokio::spawn({
            let (up, links) = (up.clone(), links.clone());
            async move {
                while let Ok((mut client, _)) = listener.accept().await {
                    if !up.load(Ordering::SeqCst) {
                        continue;
                    }
                    let target = target.clone();
                    links.lock().await.push(tokio::spawn(async move {
                        if let Ok(mut server) = TcpStream::connect(&target).await {
                            let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                        }
                    }));
                }
            }
        });
        Self { port, up, links, _accept: accept }
    }

    async fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for link in self.links.lock().await.drain(..) {
            link.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test]
async fn a_failed_hint_write_resets_the_marker_at_the_next_redis_call() {
    let s = stack().await;
    let ((na_event, na_tt), (sa_event, sa_tt)) = s.stock_in_na_and_sa(10).await;
    let customer = s.user("CUSTOMER").await.token;
    let proxy = Cuttable::start().await;
    let flaky = s
        .spawn_orders(s.shards.map.clone(), |o| {
            o.redis_url = format!("redis://127.0.0.1:{}", proxy.port);
        })
        .await;
    let order = |body: Value, key: &'static str| {
        let req = flaky.client.post(flaky.url("/api/v1/orders")).bearer_auth(&customer);
        async move { req.header("Idempotency-Key", key).json(&body).send().await.unwrap().status().as_u16() }
    };
    set_marker_age(&s, WINDOW * 2).await;
    assert_eq!(order(order_body("NA", &na_event, &na_tt, 1), "k-0").await, 201);
    assert_eq!(lookups(&s, "skipped", None).await, 1.0, "Redis reachable, marker old: skipped");

    // Redis cut for this process only: k-1's hint is not written, its order still placed.
    proxy.cut().await;
    assert_eq!(order(order_body("NA", &na_event, &na_tt, 1), "k-1").await, 201);
    assert_eq!(lookups(&s, "performed", Some("redis_unavailable")).await, 1.0);
    // The marker, old still, would let every other process trust k-1's missing hint...
    proxy.restore();
    // ...until this process's next Redis call resets it to now.
    assert_eq!(order(order_body("NA", &na_event, &na_tt, 1), "k-2").await, 201);
    let since: i64 = redis(&s, redis::cmd("GET").arg(marker(&s))).await;
    assert!((now_secs() - since).abs() <= 5, "the marker was reset to now: {since}");
    assert_eq!(lookups(&s, "performed", Some("marker_young")).await, 1.0);
    // So the reuse of k-1 on another shard, through any process, is looked for and refused.
    let (status, body) = s.order(&customer, Some("k-1"), &order_body("SA", &sa_event, &sa_tt, 1)).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")), "{body}");
}
