//! Order creation: stock, idempotency, region tags, the customer check, and contention.

use std::collections::BTreeMap;

use futures::future::join_all;
use serde_json::{Value, json};

use test_stack::{Stack, TestUser, order_body};

use super::helpers::fields;

async fn scalar(s: &Stack, shard: &str, sql: &str, id: &str) -> i64 {
    sqlx::query_scalar(sql).bind(id).fetch_one(s.shards.pool(shard).unwrap()).await.unwrap()
}

#[tokio::test]
async fn an_order_takes_stock_and_writes_its_outbox_row_on_the_events_shard() {
    let (s, event, tt) = Stack::with_stock("SA", 10).await;
    let TestUser { id: customer_id, token: customer, .. } = s.user("CUSTOMER").await;
    let (status, body) = s.order(&customer, None, &order_body("SA", &event, &tt, 3)).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!((body["totalPriceInCents"].as_i64(), body["region"].as_str()), (Some(7500), Some("SA")));
    let order_id = body["orderId"].as_str().unwrap();

    let (_, got) = s.get(&format!("/api/v1/events/{event}")).await;
    assert_eq!(got["ticketTypes"][0]["remainingQuantity"], 7);
    assert_eq!(scalar(&s, "sa-1", "select count(*) from orders where id = $1::uuid", order_id).await, 1);
    assert_eq!(scalar(&s, "na-1", "select count(*) from orders where id = $1::uuid", order_id).await, 0);
    let (kind, payload): (String, Value) =
        sqlx::query_as("select event_type, payload from outbox where aggregate_id = $1::uuid")
            .bind(order_id)
            .fetch_one(s.shards.pool("sa-1").unwrap())
            .await
            .unwrap();
    assert_eq!(kind, "OrderCreated");
    assert_eq!(payload["eventName"], "OrderCreated");
    assert_eq!(payload["customerId"], customer_id.to_string());
    assert_eq!((payload["quantity"].as_i64(), payload["totalPriceInCents"].as_i64()), (Some(3), Some(7500)));
    assert_eq!(payload["region"], "SA");
    let event: platform::events::OrderEvent = serde_json::from_value(payload).unwrap();
    assert_eq!(event.order_id().to_string(), order_id);
}

#[tokio::test]
async fn a_wrong_region_tag_is_a_clear_422() {
    let (s, event, tt) = Stack::with_stock("NA", 10).await;
    let customer = s.user("CUSTOMER").await.token;
    let (status, body) = s.order(&customer, None, &order_body("SA", &event, &tt, 1)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"], "REGION_MISMATCH");
    assert_eq!(body["details"], json!({"requestedRegion": "SA", "eventRegion": "NA"}));
}

#[tokio::test]
async fn bad_orders_name_the_field() {
    let (s, event, tt) = Stack::with_stock("NA", 10).await;
    let (other_event, other_tt) = s.event_with_stock("NA", 10).await;
    let customer = s.user("CUSTOMER").await.token;
    for (q, ok) in [(0, false), (11, false), (10, true), (-1, false)] {
        let (status, body) = s.order(&customer, None, &order_body("NA", &event, &tt, q)).await;
        assert_eq!(status == 201, ok, "quantity {q}: {body}");
        if !ok {
            assert_eq!(fields(&body), ["quantity"], "{body}");
        }
    }
    let (status, body) = s.order(&customer, None, &json!({})).await;
    assert_eq!(
        (status, fields(&body)),
        (400, vec!["region".into(), "eventId".into(), "ticketTypeId".into(), "quantity".into()])
    );
    let (status, body) = s.order(&customer, None, &order_body("NA", "nope", &tt, 1)).await;
    assert_eq!((status, fields(&body)), (400, vec!["eventId".to_owned()]));
    // A ticket type of another event: on another partition it is refused by its id alone, on
    // the same one by the database.
    let (status, body) = s.order(&customer, None, &order_body("NA", &event, &other_tt, 1)).await;
    assert!(matches!(status, 400 | 404), "{status} {body}");
    let _ = other_event;
    let (status, body) = s.order(&customer, Some("has space"), &order_body("NA", &event, &tt, 1)).await;
    assert_eq!((status, fields(&body)), (400, vec!["Idempotency-Key".to_owned()]));
}

#[tokio::test]
async fn only_existing_customers_order_and_accounts_down_is_retryable() {
    let (s, event, tt) = Stack::with_stock("NA", 10).await;
    let organizer = s.user("ORGANIZER").await.token;
    let (status, body) = s.order(&organizer, None, &order_body("NA", &event, &tt, 1)).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("FORBIDDEN")), "{body}");
    let (status, _) = s.order("garbage", None, &order_body("NA", &event, &tt, 1)).await;
    assert_eq!(status, 401);

    // The same shards, but accounts' gRPC address points nowhere: 503, not 500.
    let broken = s
        .spawn_orders(s.shards.map.clone(), |o| {
            o.accounts_grpc_url = "http://127.0.0.1:1".to_owned();
            o.shard_acquire_timeout = std::time::Duration::from_millis(2000);
        })
        .await;
    let customer = s.user("CUSTOMER").await.token;
    let res = broken.post_json_as("/api/v1/orders", &customer, &order_body("NA", &event, &tt, 1)).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn sold_out_and_insufficient_stock() {
    let (s, event, tt) = Stack::with_stock("NA", 3).await;
    let customer = s.user("CUSTOMER").await.token;
    assert_eq!(s.order(&customer, None, &order_body("NA", &event, &tt, 2)).await.0, 201);
    let (status, body) = s.order(&customer, None, &order_body("NA", &event, &tt, 2)).await;
    assert_eq!(
        (status, body["error"].as_str(), body["details"]["remaining"].as_i64()),
        (409, Some("INSUFFICIENT_STOCK"), Some(1))
    );
    assert_eq!(s.order(&customer, None, &order_body("NA", &event, &tt, 1)).await.0, 201);
    let (status, body) = s.order(&customer, None, &order_body("NA", &event, &tt, 1)).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("SOLD_OUT")));
}

/// Fires `n` orders of 1 at once from `customers` (round robin); returns counts by status/code.
async fn rush(s: &Stack, customers: &[String], n: usize, event: &str, tt: &str) -> BTreeMap<String, usize> {
    let body = order_body("NA", event, tt, 1);
    let answers = join_all((0..n).map(|i| {
        let token = customers[i % customers.len()].clone();
        let body = body.clone();
        async move { s.order(&token, None, &body).await }
    }))
    .await;
    let mut counts = BTreeMap::new();
    for (status, body) in answers {
        let label = if status == 201 {
            "201".to_owned()
        } else {
            format!("{status} {}", body["error"].as_str().unwrap_or("?"))
        };
        *counts.entry(label).or_insert(0) += 1;
    }
    counts
}

async fn customers(s: &Stack, n: usize) -> Vec<String> {
    join_all((0..n).map(|_| s.user("CUSTOMER"))).await.into_iter().map(|u| u.token).collect()
}

async fn assert_stock_consistent(s: &Stack, event: &str, tt: &str, sold: i64) {
    let (_, got) = s.get(&format!("/api/v1/events/{event}")).await;
    assert_eq!(got["ticketTypes"][0]["remainingQuantity"], 0);
    let pool = s.shards.pool("na-1").unwrap();
    let (orders, quantity): (i64, Option<i64>) =
        sqlx::query_as("select count(*), sum(quantity)::bigint from orders where ticket_type_id = $1::uuid")
            .bind(tt)
            .fetch_one(pool)
            .await
            .unwrap();
    assert_eq!((orders, quantity), (sold, Some(sold)));
    let outbox: i64 = sqlx::query_scalar(
        "select count(*) from outbox o join orders r on r.id = o.aggregate_id where r.ticket_type_id = $1::uuid",
    )
    .bind(tt)
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(outbox, sold, "one outbox row per order");
}

/// `requests` orders of one ticket at once, from `customers` customers, for `stock` tickets:
/// exactly `stock` are taken, every other answer is SOLD_OUT (never a retry answer), and the
/// stock adds up.
async fn assert_sells_exactly_the_stock(stock: usize, customers_n: usize, requests: usize) {
    let (s, event, tt) = Stack::with_stock("NA", i64::try_from(stock).unwrap()).await;
    let buyers = customers(&s, customers_n).await;
    let counts = rush(&s, &buyers, requests, &event, &tt).await;
    assert_eq!(counts, BTreeMap::from([("201".to_owned(), stock), ("409 SOLD_OUT".to_owned(), requests - stock)]));
    assert_stock_consistent(&s, &event, &tt, i64::try_from(stock).unwrap()).await;
}

#[tokio::test]
async fn two_hundred_buyers_for_fifty_tickets_make_exactly_fifty_orders() {
    assert_sells_exactly_the_stock(50, 8, 200).await;
}

#[tokio::test]
async fn flash_sale_500_buyers_100_tickets_no_retry_answers() {
    assert_sells_exactly_the_stock(100, 20, 500).await;
}

#[tokio::test]
async fn fifty_concurrent_duplicates_of_one_key_make_one_order() {
    let (s, event, tt) = Stack::with_stock("NA", 100).await;
    let customer = s.user("CUSTOMER").await.token;
    let body = order_body("NA", &event, &tt, 2);
    let answers = join_all((0..50).map(|_| s.order(&customer, Some("checkout-42"), &body))).await;
    let first = answers[0].clone();
    assert_eq!(first.0, 201, "{}", first.1);
    assert!(answers.iter().all(|a| *a == first), "all 50 answers identical");
    let (_, got) = s.get(&format!("/api/v1/events/{event}")).await;
    assert_eq!(got["ticketTypes"][0]["remainingQuantity"], 98);

    // The same key with another body is refused; another customer's same key is theirs.
    let (status, body2) = s.order(&customer, Some("checkout-42"), &order_body("NA", &event, &tt, 3)).await;
    assert_eq!((status, body2["error"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")));
    let other = s.user("CUSTOMER").await.token;
    let (status, theirs) = s.order(&other, Some("checkout-42"), &body).await;
    assert_eq!(status, 201);
    assert_ne!(theirs["orderId"], first.1["orderId"]);
}

#[tokio::test]
async fn pay_is_pending_to_paid_once_with_an_outbox_row_after_the_created_one() {
    let (s, event, tt) = Stack::with_stock("NA", 10).await;
    let TestUser { id: customer_id, token: customer, .. } = s.user("CUSTOMER").await;
    let (_, created) = s.order(&customer, None, &order_body("NA", &event, &tt, 1)).await;
    let id = created["orderId"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/orders/{id}");
    let (status, got) = s.get_as(&path, &customer).await;
    assert_eq!(status, 200, "{got}");
    assert_eq!(
        (got["status"].as_str(), got["customerId"].as_str()),
        (Some("PENDING"), Some(customer_id.to_string().as_str()))
    );
    let stranger = s.user("CUSTOMER").await.token;
    assert_eq!(s.get_as(&path, &stranger).await.0, 403);

    assert_eq!(s.pay(&stranger, &id).await.0, 403);
    assert_eq!(s.pay(&customer, &id).await, (200, json!({"id": id, "status": "PAID"})));
    // Paying again is the same answer and writes nothing new.
    assert_eq!(s.pay(&customer, &id).await, (200, json!({"id": id, "status": "PAID"})));
    let (_, got) = s.get_as(&path, &customer).await;
    assert_eq!(got["status"], "PAID");
    assert!(got["paidAt"].is_string());

    let kinds: Vec<String> =
        sqlx::query_scalar("select event_type from outbox where aggregate_id = $1::uuid order by id")
            .bind(&id)
            .fetch_all(s.shards.pool("na-1").unwrap())
            .await
            .unwrap();
    assert_eq!(kinds, ["OrderCreated", "OrderPaid"]);

    // A cancelled order cannot be paid; unknown and malformed ids are 404 and 400.
    let (_, other) = s.order(&customer, None, &order_body("NA", &event, &tt, 1)).await;
    let other = other["orderId"].as_str().unwrap().to_owned();
    assert_eq!(s.cancel(&customer, &other).await.0, 200);
    let (status, body) = s.pay(&customer, &other).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("ORDER_CANCELLED")));
    let unknown = shard_router::ids::new_id(shard_router::ids::Placement {
        region_tag: shard_router::ids::region_tag("NA"),
        partition: shard_router::Partition::new(1).unwrap(),
    });
    assert_eq!(s.pay(&customer, &unknown.to_string()).await.0, 404);
    assert_eq!(s.pay(&customer, "nope").await.0, 400);
}

#[tokio::test]
async fn order_and_outbox_commit_together_or_not_at_all() {
    let (s, event, tt) = Stack::with_stock("SA", 10).await;
    let customer = s.user("CUSTOMER").await.token;
    // Inject a failure between the transaction's statements: the outbox insert of any order of
    // 7 tickets fails, after the stock update and the order insert have run.
    sqlx::raw_sql(
        "create function fail_sevens() returns trigger language plpgsql as $$ \
         begin if (new.payload->>'quantity')::int = 7 then raise exception 'injected failure'; end if; return new; end $$; \
         create trigger fail_sevens before insert on outbox for each row execute function fail_sevens();",
    )
    .execute(s.shards.pool("sa-1").unwrap())
    .await
    .unwrap();

    let (status, body) = s.order(&customer, Some("seven"), &order_body("SA", &event, &tt, 7)).await;
    assert_eq!(status, 500, "{body}");
    assert_eq!(body, json!({"error": "INTERNAL", "message": "internal error"}), "no internals leak");
    let pool = s.shards.pool("sa-1").unwrap();
    let orders: i64 = sqlx::query_scalar("select count(*) from orders where event_id = $1::uuid")
        .bind(&event)
        .fetch_one(pool)
        .await
        .unwrap();
    let keys: i64 =
        sqlx::query_scalar("select count(*) from idempotency_keys where key = 'seven'").fetch_one(pool).await.unwrap();
    assert_eq!((orders, keys), (0, 0), "neither order nor idempotency record survived");
    let (_, got) = s.get(&format!("/api/v1/events/{event}")).await;
    assert_eq!(got["ticketTypes"][0]["remainingQuantity"], 10, "stock untouched");

    // The same key works once the fault is gone: nothing half-done blocks it.
    sqlx::raw_sql("drop trigger fail_sevens on outbox").execute(pool).await.unwrap();
    assert_eq!(s.order(&customer, Some("seven"), &order_body("SA", &event, &tt, 7)).await.0, 201);
}

#[tokio::test]
async fn a_stopped_shard_fails_fast_for_its_region_and_recovers_without_a_restart() {
    // `sa-1` is an instance of this test's own, so stopping it disturbs no other test.
    let private = testkit::PrivatePostgres::start().await.unwrap();
    let sa_db = testkit::TestDb::create_on(&private.url(), platform::db::Schema::Shard).await.unwrap();
    let s = Stack::builder()
        .shard_url("sa-1", &sa_db.url)
        .orders_settings(|o| o.shard_acquire_timeout = std::time::Duration::from_millis(500))
        .start()
        .await;

    let ((na_event, na_tt), (sa_event, sa_tt)) = s.stock_in_na_and_sa(10).await;
    let customer = s.user("CUSTOMER").await.token;
    assert_eq!(s.order(&customer, None, &order_body("SA", &sa_event, &sa_tt, 1)).await.0, 201);

    private.stop().await.unwrap();
    let started = std::time::Instant::now();
    let (status, body) = s.order(&customer, None, &order_body("SA", &sa_event, &sa_tt, 1)).await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("region SA"), "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(3), "503 within {:?}", started.elapsed());
    assert_eq!(s.order(&customer, None, &order_body("NA", &na_event, &na_tt, 1)).await.0, 201, "NA keeps selling");

    private.resume().await.unwrap();
    let (status, body) = s.order(&customer, None, &order_body("SA", &sa_event, &sa_tt, 1)).await;
    assert_eq!(status, 201, "SA recovers without restarting orders: {body}");
    drop(sa_db);
}

#[tokio::test]
async fn one_key_for_two_orders_in_different_regions_is_refused() {
    let s = Stack::start().await;
    let ((na_event, na_tt), (sa_event, sa_tt)) = s.stock_in_na_and_sa(10).await;
    let customer = s.user("CUSTOMER").await.token;
    assert_eq!(s.order(&customer, Some("k-1"), &order_body("NA", &na_event, &na_tt, 1)).await.0, 201);
    let (status, body) = s.order(&customer, Some("k-1"), &order_body("SA", &sa_event, &sa_tt, 1)).await;
    assert_eq!((status, body["error"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")), "{body}");
    let (_, sa) = s.get(&format!("/api/v1/events/{sa_event}")).await;
    assert_eq!(sa["ticketTypes"][0]["remainingQuantity"], 10, "no SA order was made");
}

#[tokio::test]
async fn with_redis_down_orders_slow_down_but_never_oversell() {
    let (s, event, tt) = Stack::with_stock("NA", 30).await;
    // The same shards and accounts, but the lock's Redis points nowhere.
    let lockless = s
        .spawn_orders(s.shards.map.clone(), |o| {
            o.redis_url = "redis://127.0.0.1:1".to_owned();
            o.redis_key_prefix = "dead:".to_owned();
        })
        .await;
    let buyers = customers(&s, 5).await;
    let body = order_body("NA", &event, &tt, 1);
    let answers = join_all((0..100).map(|i| {
        let req = lockless.client.post(lockless.url("/api/v1/orders")).bearer_auth(&buyers[i % 5]).json(&body);
        async move { req.send().await.unwrap().status().as_u16() }
    }))
    .await;
    assert_eq!(answers.iter().filter(|s| **s == 201).count(), 30);
    assert_eq!(answers.iter().filter(|s| **s == 409).count(), 70);
    assert_stock_consistent(&s, &event, &tt, 30).await;
}
