//! A measurement, not a check: what the cache saves on `events` and `event(id)`. Run with
//! `cargo nextest run -p gateway --run-ignored only measure --no-capture`.

use std::time::{Duration, Instant};

use serde_json::json;

use super::helpers::{Stack, data, stack, stack_with};

const ROUNDS: u32 = 300;

async fn mean(s: &Stack, query: &str, vars: &serde_json::Value) -> Duration {
    data(&s.gql(None, query, vars.clone()).await);
    let started = Instant::now();
    for _ in 0..ROUNDS {
        s.gql(None, query, vars.clone()).await;
    }
    started.elapsed() / ROUNDS
}

#[tokio::test]
#[ignore = "a measurement; run on demand"]
async fn measure_cached_and_direct_reads() {
    let cached = stack().await;
    let direct = stack_with(|g| {
        g.redis_url = "redis://127.0.0.1:1".into();
        g.redis_timeout = Duration::from_millis(500);
        g.redis_retry = Duration::from_millis(600_000);
    })
    .await;
    for (name, s) in [("cached", &cached), ("direct", &direct)] {
        let organizer = s.user("ORGANIZER").await.token;
        let mut event = String::new();
        for _ in 0..20 {
            event = s.event(&organizer, "NA", 100).await.0;
        }
        let page = "{ events(region: NA, first: 20) { id title ticketTypes { remainingQuantity } } }";
        let one = "query($id: ID!) { event(id: $id) { id ticketTypes { remainingQuantity } } }";
        let list = mean(s, page, &json!({})).await;
        let single = mean(s, one, &json!({"id": event})).await;
        println!("{name}: events(first: 20) {list:?}/query, event(id) {single:?}/query, {ROUNDS} sequential queries");
    }
}
