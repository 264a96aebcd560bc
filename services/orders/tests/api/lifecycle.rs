//! The order lifecycle: cancel, reservation expiry, and their races with pay.

use std::time::Duration;

use futures::future::join_all;
use serde_json::Value;

use test_stack::{Stack, order_body};

async fn remaining(s: &Stack, event: &str) -> i64 {
    let (_, got) = s.get(&format!("/api/v1/events/{event}")).await;
    got["ticketTypes"][0]["remainingQuantity"].as_i64().unwrap()
}

/// The order's events in the outbox: (type, version, payload).
async fn events_of(s: &Stack, id: &str) -> Vec<(String, i64, Value)> {
    let rows: Vec<(String, Value)> =
        sqlx::query_as("select event_type, payload from outbox where aggregate_id = $1::uuid order by id")
            .bind(id)
            .fetch_all(s.shards.pool("na-1").unwrap())
            .await
            .unwrap();
    rows.into_iter().map(|(t, p)| (t, p["version"].as_i64().unwrap(), p)).collect()
}

/// A stack whose reservations expire after `ttl`, swept every `sweep`, an NA event of `stock`
/// tickets, and `n` orders of 2 by one customer: the stack, the event, the customer's token and
/// the order ids.
async fn reserved(ttl: Duration, sweep: Duration, stock: i64, n: usize) -> (Stack, String, String, Vec<String>) {
    let s = Stack::builder()
        .orders_settings(move |o| {
            o.reservation_ttl = ttl;
            o.expiry_sweep_interval = sweep;
        })
        .start()
        .await;
    let (event, tt) = s.event_with_stock("NA", stock).await;
    let customer = s.user("CUSTOMER").await.token;
    let mut ids = Vec::new();
    for _ in 0..n {
        let (status, created) = s.order(&customer, None, &order_body("NA", &event, &tt, 2)).await;
        assert_eq!(status, 201, "{created}");
        ids.push(created["orderId"].as_str().unwrap().to_owned());
    }
    (s, event, customer, ids)
}

/// Makes the order's reservation older than any TTL.
async fn backdate(s: &Stack, id: &str) {
    sqlx::query("update orders set created_at = now() - interval '2 hours' where id = $1::uuid")
        .bind(id)
        .execute(s.shards.pool("na-1").unwrap())
        .await
        .unwrap();
}

#[tokio::test]
async fn cancel_returns_the_stock_once_and_a_second_cancel_answers_the_same() {
    let (s, event, tt) = Stack::with_stock("NA", 10).await;
    let customer = s.user("CUSTOMER").await.token;
    let stranger = s.user("CUSTOMER").await.token;
    let (_, created) = s.order(&customer, None, &order_body("NA", &event, &tt, 3)).await;
    let id = created["orderId"].as_str().unwrap().to_owned();
    assert_eq!(remaining(&s, &event).await, 7);

    assert_eq!(s.cancel(&stranger, &id).await.0, 403);
    let (status, first) = s.cancel(&customer, &id).await;
    assert_eq!(status, 200, "{first}");
    assert_eq!((first["status"].as_str(), first["cancelReason"].as_str()), (Some("CANCELLED"), Some("CUSTOMER")));
    assert_eq!((first["eventId"].as_str(), first["version"].as_i64()), (Some(event.as_str()), Some(2)));
    assert_eq!(remaining(&s, &event).await, 10);
    // Again: the same answer, and nothing returned twice.
    assert_eq!(s.cancel(&customer, &id).await, (200, first.clone()));
    assert_eq!(remaining(&s, &event).await, 10);

    let events = events_of(&s, &id).await;
    let kinds: Vec<(&str, i64)> = events.iter().map(|(t, v, _)| (t.as_str(), *v)).collect();
    assert_eq!(kinds, [("OrderCreated", 1), ("OrderCancelled", 2)]);
    let cancelled: platform::events::OrderEvent = serde_json::from_value(events[1].2.clone()).unwrap();
    assert!(matches!(cancelled, platform::events::OrderEvent::OrderCancelled(c)
        if c.reason == platform::events::CancelReason::Customer && c.region == "NA"));
    let (_, got) = s.get_as(&format!("/api/v1/orders/{id}"), &customer).await;
    assert_eq!((got["status"].as_str(), got["version"].as_i64()), (Some("CANCELLED"), Some(2)));
    assert_eq!(got["cancelReason"], "CUSTOMER");

    // A paid order stays paid.
    let (_, paid) = s.order(&customer, None, &order_body("NA", &event, &tt, 1)).await;
    let paid = paid["orderId"].as_str().unwrap().to_owned();
    assert_eq!(s.pay(&customer, &paid).await.0, 200);
    let (status, body) = s.cancel(&customer, &paid).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("ORDER_PAID")), "{body}");
    assert_eq!(remaining(&s, &event).await, 9);
    let kinds: Vec<(String, i64)> = events_of(&s, &paid).await.into_iter().map(|(t, v, _)| (t, v)).collect();
    assert_eq!(kinds, [("OrderCreated".to_owned(), 1), ("OrderPaid".to_owned(), 2)]);
    assert_eq!(s.cancel(&customer, "nope").await.0, 400);
}

#[tokio::test]
async fn an_expired_reservation_cannot_be_paid_and_the_sweeper_releases_the_rest() {
    let (s, event, customer, mut ids) = reserved(Duration::from_secs(60), Duration::from_millis(50), 10, 3).await;
    let fresh = ids.pop().unwrap();
    assert_eq!(remaining(&s, &event).await, 4);

    // Paying an expired one is refused with its own code, whether or not the sweeper came by.
    backdate(&s, &ids[0]).await;
    let (status, body) = s.pay(&customer, &ids[0]).await;
    assert_eq!((status, body["error"].as_str()), (409, Some("RESERVATION_EXPIRED")), "{body}");
    assert_eq!(s.pay(&customer, &ids[0]).await.1["error"], "RESERVATION_EXPIRED");

    // The sweeper cancels the other expired one; the fresh one keeps its tickets.
    backdate(&s, &ids[1]).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while remaining(&s, &event).await != 8 {
        assert!(std::time::Instant::now() < deadline, "the sweeper did not release the expired reservation");
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    for id in &ids {
        let (_, got) = s.get_as(&format!("/api/v1/orders/{id}"), &customer).await;
        assert_eq!((got["status"].as_str(), got["cancelReason"].as_str()), (Some("CANCELLED"), Some("EXPIRED")));
        let kinds: Vec<(String, i64)> = events_of(&s, id).await.into_iter().map(|(t, v, _)| (t, v)).collect();
        assert_eq!(kinds, [("OrderCreated".to_owned(), 1), ("OrderCancelled".to_owned(), 2)], "{id}");
        assert_eq!(s.pay(&customer, id).await.1["error"], "RESERVATION_EXPIRED");
    }
    assert_eq!(s.pay(&customer, &fresh).await.0, 200);
    assert_eq!(remaining(&s, &event).await, 8);
    let metrics = s.orders.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("orders_expired_total"), "{metrics}");
}

/// Pay, cancel and the sweeper race for each order right at its expiry: every order ends in
/// exactly one of the three outcomes, its answers agree with it, and the stock is right.
#[tokio::test]
async fn concurrent_cancel_pay_and_expiry_of_one_order_have_one_outcome() {
    let (s, event, customer, ids) = reserved(Duration::from_secs(1), Duration::from_millis(10), 100, 16).await;
    let races = ids.iter().enumerate().map(|(i, id)| {
        let (s, customer) = (&s, &customer);
        async move {
            // Spread around the one-second expiry so every outcome happens.
            tokio::time::sleep(std::time::Duration::from_millis(850 + 20 * i as u64)).await;
            let (pay, cancel) = tokio::join!(s.pay(customer, id), s.cancel(customer, id));
            (id.clone(), pay, cancel)
        }
    });
    let mut paid_tickets = 0;
    let mut outcomes = std::collections::BTreeMap::<&str, u32>::new();
    for (id, (pay, pay_body), (cancel, cancel_body)) in join_all(races).await {
        let (_, got) = s.get_as(&format!("/api/v1/orders/{id}"), &customer).await;
        let outcome = match (got["status"].as_str().unwrap(), got["cancelReason"].as_str()) {
            ("PAID", _) => {
                assert_eq!((pay, cancel, cancel_body["error"].as_str()), (200, 409, Some("ORDER_PAID")), "{id}");
                paid_tickets += 2;
                "paid"
            }
            ("CANCELLED", Some("CUSTOMER")) => {
                assert_eq!((cancel, pay, pay_body["error"].as_str()), (200, 409, Some("ORDER_CANCELLED")), "{id}");
                "cancelled"
            }
            ("CANCELLED", Some("EXPIRED")) => {
                assert_eq!((pay, pay_body["error"].as_str()), (409, Some("RESERVATION_EXPIRED")), "{id}");
                assert_eq!((cancel, cancel_body["cancelReason"].as_str()), (200, Some("EXPIRED")), "{id}");
                "expired"
            }
            other => panic!("order {id} ended as {other:?}"),
        };
        *outcomes.entry(outcome).or_default() += 1;
        let kinds: Vec<(String, i64)> = events_of(&s, &id).await.into_iter().map(|(t, v, _)| (t, v)).collect();
        assert_eq!(kinds.len(), 2, "{id}: one outcome, one event: {kinds:?}");
        assert_eq!(kinds[1].1, 2, "{id}");
    }
    // Whatever is still pending by now is swept; then only paid tickets are gone.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while remaining(&s, &event).await != 100 - paid_tickets {
        assert!(std::time::Instant::now() < deadline, "stock {} after {outcomes:?}", remaining(&s, &event).await);
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    println!("outcomes: {outcomes:?}");
}
