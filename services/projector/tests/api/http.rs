//! The read API against real accounts (tokens, JWKS) and orders (who organizes an event):
//! who may read what, and 400s naming the field for bad input.

use platform::db::Schema;
use serde_json::{Value, json};
use test_stack::{Stack, TestUser};
use testkit::{TestApp, TestDb, TestKafka};
use uuid::Uuid;

use super::helpers::{Order, Producer, g, settings, spawn, wait_caught_up};

/// An NA event of `organizer` with one ticket type, created at orders: its id and the ticket
/// type's.
async fn event(s: &Stack, organizer: &TestUser) -> (Uuid, Uuid) {
    let (event, tt) = s.event_by(organizer, "NA", 100).await;
    (event.parse().unwrap(), tt.parse().unwrap())
}

async fn get(app: &TestApp, path: &str, user: Option<&TestUser>) -> (u16, Value) {
    let mut req = app.client.get(app.url(path));
    if let Some(u) = user {
        req = req.bearer_auth(&u.token);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

fn field(body: &Value) -> &str {
    body["details"]["fields"][0]["field"].as_str().unwrap_or_default()
}

#[tokio::test]
async fn reads_are_for_the_customer_the_organizer_or_an_admin() {
    let s = Stack::start().await;
    let (db, kafka) = (TestDb::global(Schema::ReadModels).await.unwrap(), TestKafka::new(2).await.unwrap());
    let app = spawn(projector::Settings {
        accounts_jwks_url: s.accounts.url("/.well-known/jwks.json"),
        orders_url: s.orders.base_url.clone(),
        ..settings(&db.url, &kafka)
    })
    .await;
    let (customer, other, organizer, rival, admin) = (
        s.user("CUSTOMER").await,
        s.user("CUSTOMER").await,
        s.user("ORGANIZER").await,
        s.user("ORGANIZER").await,
        s.admin().await,
    );
    let (event, tt) = event(&s, &organizer).await;

    // Empty before anything is applied: asOf null.
    let (status, body) = get(&app, &format!("/api/v1/read/customers/{}/orders", customer.id), Some(&customer)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body, json!({"customerId": customer.id, "asOf": null, "items": [], "nextCursor": null}));

    let p = Producer::new(&kafka);
    let orders: Vec<Order> = (1..=3).map(|q| Order::new(customer.id, event, tt, q)).collect();
    for (i, o) in orders.iter().enumerate() {
        p.send(&o.created(), "na-1", &format!("c{i}"), None).await;
    }
    p.send(&orders[0].paid(), "na-1", "p0", None).await;
    let orphan = Order::new(other.id, event, tt, 1);
    p.send(&orphan.paid(), "na-1", "p-orphan", None).await;
    wait_caught_up(&db.pool, &kafka, g(1)).await;

    // A customer's orders: the customer and ADMIN; pages newest first with a cursor.
    let path = format!("/api/v1/read/customers/{}/orders?first=2", customer.id);
    let (status, page1) = get(&app, &path, Some(&customer)).await;
    assert_eq!(status, 200, "{page1}");
    assert_eq!(page1["asOf"], "2026-11-25T03:05:00Z");
    assert_eq!(page1["items"].as_array().unwrap().len(), 2);
    let cursor = page1["nextCursor"].as_str().unwrap();
    let (_, page2) = get(&app, &format!("{path}&after={cursor}"), Some(&customer)).await;
    assert_eq!(page2["items"].as_array().unwrap().len(), 1);
    assert_eq!(page2["nextCursor"], Value::Null);
    let mut seen: Vec<String> = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["items"].as_array().unwrap())
        .map(|o| o["orderId"].as_str().unwrap().to_owned())
        .collect();
    seen.sort();
    let mut want: Vec<String> = orders.iter().map(|o| o.id.to_string()).collect();
    want.sort();
    assert_eq!(seen, want);
    let paid = page1["items"]
        .as_array()
        .unwrap()
        .iter()
        .chain(page2["items"].as_array().unwrap())
        .find(|o| o["orderId"] == orders[0].id.to_string())
        .unwrap()
        .clone();
    assert_eq!(
        (paid["status"].as_str(), paid["version"].as_i64(), paid["quantity"].as_i64()),
        (Some("PAID"), Some(2), Some(1)),
        "{paid}"
    );
    assert_eq!(paid["totalPriceInCents"], 2500);
    assert_eq!(get(&app, &path, Some(&other)).await.0, 403);
    assert_eq!(get(&app, &path, Some(&admin)).await.0, 200);
    assert_eq!(get(&app, &path, None).await.0, 401);

    // A timeline: the order's customer and ADMIN; ADMIN only while the customer is unknown.
    let path = format!("/api/v1/read/orders/{}/timeline", orders[0].id);
    let (status, body) = get(&app, &path, Some(&customer)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["customerId"], customer.id.to_string());
    let events: Vec<(i64, &str)> = body["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["version"].as_i64().unwrap(), e["eventName"].as_str().unwrap()))
        .collect();
    assert_eq!(events, vec![(1, "OrderCreated"), (2, "OrderPaid")]);
    assert_eq!(body["events"][0]["source"], "na-1");
    assert_eq!(body["events"][0]["outboxId"], "c0");
    assert_eq!(body["events"][0]["correlationId"], "corr-na-1-c0");
    assert!(body["events"][0]["kafkaOffset"].is_i64());
    assert_eq!(get(&app, &path, Some(&other)).await.0, 403);
    assert_eq!(get(&app, &path, Some(&admin)).await.0, 200);
    let path = format!("/api/v1/read/orders/{}/timeline", orphan.id);
    assert_eq!(get(&app, &path, Some(&other)).await.0, 403, "its OrderCreated was never seen: ADMIN only");
    let (status, body) = get(&app, &path, Some(&admin)).await;
    assert_eq!((status, &body["customerId"]), (200, &Value::Null));
    assert_eq!(get(&app, &format!("/api/v1/read/orders/{}/timeline", Uuid::now_v7()), Some(&admin)).await.0, 404);

    // Sales: the event's organizer (asked of orders) and ADMIN.
    let path = format!("/api/v1/read/events/{event}/sales");
    let (status, body) = get(&app, &path, Some(&organizer)).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["eventId"], event.to_string());
    let t = &body["ticketTypes"][0];
    assert_eq!(t["ticketTypeId"], tt.to_string());
    assert_eq!(
        (t["orders"].as_i64(), t["ordersPaid"].as_i64(), t["ticketsSold"].as_i64()),
        (Some(3), Some(1), Some(6)),
        "{body}"
    );
    assert_eq!(
        (t["ticketsPaid"].as_i64(), t["revenueInCents"].as_i64(), t["region"].as_str()),
        (Some(1), Some(2500), Some("NA"))
    );
    assert_eq!(get(&app, &path, Some(&admin)).await.0, 200);
    assert_eq!(get(&app, &path, Some(&rival)).await.0, 403);
    assert_eq!(get(&app, &path, Some(&customer)).await.0, 403);
    let (status, body) = get(&app, &format!("/api/v1/read/events/{}/sales", Uuid::new_v4()), Some(&organizer)).await;
    assert_eq!(status, 404, "orders' 404 passes through: {body}");

    // Bad input: 400 naming the field, never a 500.
    for (path, want) in [
        ("/api/v1/read/events/nope/sales".to_owned(), "eventId"),
        ("/api/v1/read/customers/nope/orders".to_owned(), "customerId"),
        ("/api/v1/read/orders/nope/timeline".to_owned(), "orderId"),
        (format!("/api/v1/read/customers/{}/orders?first=0", customer.id), "first"),
        (format!("/api/v1/read/customers/{}/orders?first=101", customer.id), "first"),
        (format!("/api/v1/read/customers/{}/orders?after=%%%", customer.id), "after"),
        (format!("/api/v1/read/customers/{}/orders?after=bm9wZQ", customer.id), "after"),
    ] {
        let (status, body) = get(&app, &path, Some(&admin)).await;
        assert_eq!((status, field(&body)), (400, want), "{path}: {body}");
    }
    app.stop().await.unwrap();
}
