//! Cache-aside: hits on repeated reads, fresh stock right after a mutation, invalidation of
//! exactly the touched keys, and queries that keep answering with Redis gone.

use std::net::TcpListener;
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use testkit::app::metric_value;

use super::helpers::{CREATE_ORDER, Req, Stack, code, data, post_gql, stack, stack_with};

const EVENTS_NA: &str = "{ events(region: NA) { id title ticketTypes { remainingQuantity } } }";

fn cache_ext(res: &Value) -> (u64, u64, u64) {
    let ext = &res["extensions"];
    (
        ext["cache"]["hits"].as_u64().unwrap(),
        ext["cache"]["misses"].as_u64().unwrap(),
        ext["downstreamCalls"]["orders"].as_u64().unwrap(),
    )
}

fn na_remaining(res: &Value, event: &str) -> i64 {
    let events = data(res)["events"].as_array().unwrap();
    let e = events.iter().find(|e| e["id"] == event).unwrap_or_else(|| panic!("{event} not listed: {res}"));
    e["ticketTypes"][0]["remainingQuantity"].as_i64().unwrap()
}

async fn hits(s: &Stack, cache: &str) -> f64 {
    metric_value(&s.metrics().await, "gateway_cache_requests_total", &[("cache", cache), ("result", "hit")])
}

#[tokio::test]
async fn the_second_events_query_is_a_cache_hit_and_stock_is_fresh_after_an_order() {
    let s = stack().await;
    let (organizer, customer) = s.organizer_and_customer().await;
    let (event, tt) = s.event(&organizer, "NA", 10).await;

    let before = hits(&s, "response").await;
    let first = s.gql(None, EVENTS_NA, json!({})).await;
    assert_eq!(cache_ext(&first), (0, 1, 1), "a miss, read from orders: {first}");
    assert_eq!(s.redis_keys("events:page:NA:*").await.len(), 1, "the page is stored");
    let second = s.gql(None, EVENTS_NA, json!({})).await;
    assert_eq!(cache_ext(&second), (1, 0, 0), "a hit, orders not asked: {second}");
    assert_eq!(data(&first), data(&second));
    assert!(hits(&s, "response").await >= before + 1.0, "the hit is counted in /metrics");

    // event(id): cached by the read that followed its creation (in `s.event`), so a hit.
    let query = "query($id: ID!) { event(id: $id) { ticketTypes { remainingQuantity } } }";
    assert_eq!(s.redis_keys(&format!("event:{event}")).await.len(), 1);
    assert_eq!(cache_ext(&s.gql(None, query, json!({"id": event})).await), (1, 0, 0));

    // An order through the gateway: both reads show the new stock at once.
    let res = s.order(&customer, None, "NA", &event, &tt, 3).await;
    let order = data(&res)["createOrder"]["orderId"].as_str().unwrap().to_owned();
    let after = s.gql(None, EVENTS_NA, json!({})).await;
    assert_eq!(na_remaining(&after, &event), 7, "{after}");
    assert_eq!(cache_ext(&after).1, 1, "the page was invalidated: {after}");
    let fresh = s.gql(None, query, json!({"id": event})).await;
    assert_eq!(cache_ext(&fresh), (0, 1, 1), "the event was invalidated: {fresh}");
    assert_eq!(data(&fresh)["event"]["ticketTypes"][0]["remainingQuantity"], 7);
    assert_eq!(cache_ext(&s.gql(None, query, json!({"id": event})).await), (1, 0, 0), "and cached again");

    // Paying touches no cached value; an event in SA leaves NA pages alone.
    let res = s.gql(Some(&customer), "mutation($id: ID!) { payOrder(id: $id) { status } }", json!({"id": order})).await;
    assert_eq!(data(&res)["payOrder"]["status"], "PAID");
    s.event(&organizer, "SA", 1).await;
    let res = s.gql(None, EVENTS_NA, json!({})).await;
    assert_eq!(cache_ext(&res), (1, 0, 0), "NA page still cached: {res}");
    assert_eq!(na_remaining(&res, &event), 7);
    // A new NA event does reach NA pages.
    let (new_event, _) = s.event(&organizer, "NA", 1).await;
    let res = s.gql(None, EVENTS_NA, json!({})).await;
    assert!(data(&res)["events"].as_array().unwrap().iter().any(|e| e["id"] == new_event.as_str()), "{res}");
}

#[tokio::test]
async fn a_repeated_public_read_is_answered_from_its_stored_bytes_until_a_generation_moves() {
    let s = stack().await;
    let (organizer, customer) = s.organizer_and_customer().await;
    let (event, tt) = s.event(&organizer, "NA", 10).await;
    let both = "query($id: ID!) { __typename event(id: $id) { id ticketTypes { remainingQuantity } } \
                events(region: NA) { id ticketTypes { remainingQuantity } } }";
    let vars = json!({"id": event});

    let answers = async || s.redis_keys("response:*").await.len();
    let before = answers().await;
    let first = s.gql(None, both, vars.clone()).await;
    assert_eq!(answers().await, before + 1, "the whole answer is stored: {first}");
    let second = s.gql(None, both, vars.clone()).await;
    assert_eq!(cache_ext(&second), (1, 0, 0), "one hit, no service asked: {second}");
    assert_eq!(data(&first), data(&second), "the stored bytes are the answer");
    assert!(second["errors"].is_null(), "{second}");

    // Other variables are another body, so another answer.
    let other = s.gql(None, both, json!({"id": uuid::Uuid::new_v4().to_string()})).await;
    assert_eq!(code(&other), Some("NOT_FOUND"), "{other}");
    assert_eq!(answers().await, before + 1, "an answer with errors is not stored");

    // An order moves the event's and the region's generations: the stored answer is stale.
    s.order(&customer, None, "NA", &event, &tt, 2).await;
    let after = s.gql(None, both, vars.clone()).await;
    assert_eq!(data(&after)["event"]["ticketTypes"][0]["remainingQuantity"], 8, "{after}");
    assert_eq!(na_remaining(&after, &event), 8);
    assert_eq!(cache_ext(&after).0, 0, "both read anew: {after}");
    assert_eq!(cache_ext(&s.gql(None, both, vars).await), (1, 0, 0), "and stored again");

    // Nothing personal or written is stored: `me` beside `events`, a mutation.
    let personal = "{ me { id } events(region: NA) { id } }";
    for _ in 0..2 {
        let res = s.gql(Some(&customer), personal, json!({})).await;
        assert_eq!(res["extensions"]["downstreamCalls"]["accounts"], 1, "{res}");
    }
    s.order(&customer, None, "NA", &event, &tt, 1).await;
    assert_eq!(answers().await, before + 1, "only the public read's answer is stored");
}

#[tokio::test]
async fn a_sold_out_answer_drops_the_cached_event() {
    let s = stack().await;
    let (organizer, customer) = s.organizer_and_customer().await;
    let (event, tt) = s.event(&organizer, "SA", 2).await;
    assert_eq!(s.remaining(&event).await, 2);
    // Stock taken behind the gateway's back (straight at orders): the cache cannot know...
    let body = json!({"region": "SA", "eventId": event, "ticketTypeId": tt, "quantity": 2});
    let res = s.orders.post_json_as("/api/v1/orders", &customer, &body).await;
    assert_eq!(res.status(), 201);
    assert_eq!(s.remaining(&event).await, 2, "stale until invalidated or expired");
    // ...until an order through the gateway learns it is sold out.
    let res = s.order(&customer, None, "SA", &event, &tt, 1).await;
    assert_eq!(code(&res), Some("SOLD_OUT"));
    assert_eq!(s.remaining(&event).await, 0);
}

/// A Redis of the test's own on a free port, so stopping it disturbs no other test.
struct PrivateRedis {
    child: std::process::Child,
    url: String,
}

impl PrivateRedis {
    fn start() -> Option<Self> {
        let port = TcpListener::bind("127.0.0.1:0").ok()?.local_addr().ok()?.port();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Some(Self { child, url: format!("redis://127.0.0.1:{port}") })
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for PrivateRedis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// An address where nothing listens.
fn dead_redis_url() -> String {
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    format!("redis://127.0.0.1:{port}")
}

async fn assert_everything_answers(s: &Stack, organizer: &str, customer: &str) {
    let (event, tt) = s.event(organizer, "NA", 5).await;
    for _ in 0..2 {
        let res = s.gql(None, EVENTS_NA, json!({})).await;
        assert!(data(&res)["events"].as_array().unwrap().iter().any(|e| e["id"] == event.as_str()), "{res}");
        assert_eq!(s.remaining(&event).await, 5);
    }
    assert!(data(&s.order(customer, Some("no-redis-1"), "NA", &event, &tt, 2).await)["createOrder"].is_object());
    assert_eq!(s.remaining(&event).await, 3);
    let res = s.gql(Some(customer), "{ me { role } }", json!({})).await;
    assert_eq!(data(&res)["me"]["role"], "CUSTOMER");
}

#[tokio::test]
async fn queries_still_answer_when_redis_stops() {
    let Some(mut redis) = PrivateRedis::start() else {
        // No redis-server binary here: the same proof against an address where nothing listens.
        eprintln!("redis-server not available; using a dead address");
        return without_any_redis().await;
    };
    let url = redis.url.clone();
    // Once Redis fails, reads skip it for the rest of the test: each check below then costs
    // no timeout, whatever the machine's load.
    let s = stack_with(|g| {
        g.redis_url = url;
        g.redis_retry = Duration::from_millis(60_000);
    })
    .await;
    let (organizer, customer) = s.organizer_and_customer().await;
    let (event, _) = s.event(&organizer, "NA", 5).await;
    s.gql(None, EVENTS_NA, json!({})).await;
    let res = s.gql(None, EVENTS_NA, json!({})).await;
    assert_eq!(cache_ext(&res), (1, 0, 0), "cached while Redis runs: {res}");
    assert_eq!(s.remaining(&event).await, 5);

    redis.stop();
    assert_everything_answers(&s, &organizer, &customer).await;
    let errors = metric_value(&s.metrics().await, "gateway_cache_errors_total", &[]);
    assert!(errors >= 1.0, "cache failures are counted");
}

#[tokio::test]
async fn queries_answer_without_any_redis() {
    without_any_redis().await;
}

async fn without_any_redis() {
    let s = stack_with(|g| {
        g.redis_url = dead_redis_url();
        g.redis_timeout = Duration::from_millis(500);
        g.redis_retry = Duration::from_millis(60_000);
    })
    .await;
    let (organizer, customer) = s.organizer_and_customer().await;
    assert_everything_answers(&s, &organizer, &customer).await;
}

#[tokio::test]
async fn an_unanswered_order_still_drops_the_event_it_may_have_sold() {
    // orders behind an address that accepts connections and never answers: the order may have
    // been placed, so the stock the cache holds can no longer be trusted.
    let s = stack().await;
    let (organizer, customer) = s.organizer_and_customer().await;
    let (event, tt) = s.event(&organizer, "NA", 5).await;
    assert_eq!(s.redis_keys(&format!("event:{event}")).await.len(), 1, "cached by the read after creation");

    // The same cache, a gateway whose orders never answers.
    let (silent_gateway, held) = s.silent_orders_gateway().await;
    let vars = json!({"input": {"region": "NA", "eventId": event, "ticketTypeId": tt, "quantity": 1}});
    let req = Req { token: Some(&customer), ..Req::default() };
    let (_, res) = post_gql(&silent_gateway, req, CREATE_ORDER, vars).await;
    assert_eq!(code(&res), Some("UNAVAILABLE"), "{res}");
    assert!(s.redis_keys(&format!("event:{event}")).await.is_empty(), "the event's cached stock is dropped");
    held.abort();
}
