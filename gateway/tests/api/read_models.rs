//! The read-model queries end to end: orders placed, paid and cancelled through the gateway,
//! published by the real relay, projected by the real projector, read back through the
//! gateway with their authorization rules.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use test_stack::{Pipeline, TestUser};
use testkit::TestApp;

use super::helpers::{Req, Stack, code, data, post_gql, stack};

const SALES: &str = "query($e: ID!) { eventSales(eventId: $e) { eventId asOf ticketTypes { ticketTypeId region
    orders ordersPaid ordersCancelled ticketsSold ticketsPaid ticketsCancelled revenueInCents } } }";
const ORDERS: &str = "query($c: ID!) { customerOrders(customerId: $c, first: 10) { customerId asOf
    items { orderId status quantity totalPriceInCents cancelReason version } nextCursor } }";
const TIMELINE: &str = "query($o: ID!) { orderTimeline(orderId: $o) { orderId customerId asOf
    events { version eventName source outboxId correlationId } } }";

/// The relay and the consumers behind a stack, and a gateway that reads from that projector.
async fn with_pipeline(s: &Stack) -> (Pipeline, TestApp) {
    let pipeline = Pipeline::start(s).await;
    let settings =
        gateway::Settings { projector_url: pipeline.projector.base_url.clone(), ..s.gateway_settings().clone() };
    let gateway = s.spawn_gateway(settings).await;
    (pipeline, gateway)
}

async fn gql(gateway: &TestApp, token: &str, query: &str, variables: Value) -> Value {
    post_gql(gateway, Req { token: Some(token), ..Req::default() }, query, variables).await.1
}

#[tokio::test]
async fn the_read_models_answer_through_the_gateway_for_their_owner_or_an_admin() {
    let s = stack().await;
    let (pipeline, reader) = with_pipeline(&s).await;
    let gateway = &reader;
    let organizer = s.user("ORGANIZER").await.token;
    let (event, tt) = s.event(&organizer, "NA", 10).await;
    let TestUser { id: customer_id, token: customer, .. } = s.user("CUSTOMER").await;
    let placed: Vec<String> = {
        let mut ids = Vec::new();
        for _ in 0..2 {
            let res = s.order(&customer, None, "NA", &event, &tt, 2).await;
            ids.push(data(&res)["createOrder"]["orderId"].as_str().unwrap().to_owned());
        }
        ids
    };
    let pay = "mutation($id: ID!) { payOrder(id: $id) { id } }";
    assert!(data(&s.gql(Some(&customer), pay, json!({"id": placed[0]})).await)["payOrder"].is_object());
    let cancel = "mutation($id: ID!) { cancelOrder(id: $id) { id } }";
    assert!(data(&s.gql(Some(&customer), cancel, json!({"id": placed[1]})).await)["cancelOrder"].is_object());

    // Eventually consistent: wait for the projection, through the gateway.
    let deadline = Instant::now() + Duration::from_secs(60);
    let sales = loop {
        let res = gql(gateway, &organizer, SALES, json!({"e": event})).await;
        let sales = data(&res)["eventSales"].clone();
        if sales["ticketTypes"][0]["ordersCancelled"] == 1 && sales["ticketTypes"][0]["ordersPaid"] == 1 {
            break sales;
        }
        assert!(Instant::now() < deadline, "the projection did not catch up: {res}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert!(sales["asOf"].is_string(), "{sales}");
    assert_eq!(
        sales["ticketTypes"][0],
        json!({"ticketTypeId": tt, "region": "NA", "orders": 2, "ordersPaid": 1, "ordersCancelled": 1,
               "ticketsSold": 2, "ticketsPaid": 2, "ticketsCancelled": 2, "revenueInCents": 5000})
    );
    // It agrees with the shard's stock: 10 − 2 paid.
    assert_eq!(s.remaining(&event).await, 8);

    let res = gql(gateway, &customer, ORDERS, json!({"c": customer_id})).await;
    let page = &data(&res)["customerOrders"];
    let items = page["items"].as_array().unwrap();
    assert_eq!(items.len(), 2, "{res}");
    let by_id = |id: &str| items.iter().find(|o| o["orderId"] == id).unwrap().clone();
    assert_eq!((by_id(&placed[0])["status"].as_str(), by_id(&placed[0])["version"].as_i64()), (Some("PAID"), Some(2)));
    assert_eq!(by_id(&placed[1])["cancelReason"], "CUSTOMER");
    assert!(page["nextCursor"].is_null());

    let res = gql(gateway, &customer, TIMELINE, json!({"o": placed[0]})).await;
    let timeline = &data(&res)["orderTimeline"];
    assert_eq!(timeline["customerId"], customer_id.to_string().as_str());
    let events = timeline["events"].as_array().unwrap();
    let kinds: Vec<(i64, &str, &str)> = events
        .iter()
        .map(|e| (e["version"].as_i64().unwrap(), e["eventName"].as_str().unwrap(), e["source"].as_str().unwrap()))
        .collect();
    assert_eq!(kinds, [(1, "OrderCreated", "na-1"), (2, "OrderPaid", "na-1")]);
    assert!(events.iter().all(|e| e["correlationId"].is_string() && e["outboxId"].is_string()), "{res}");

    // Authorization: another customer, another organizer: FORBIDDEN; an ADMIN may read all.
    let stranger = s.user("CUSTOMER").await.token;
    assert_eq!(code(&gql(gateway, &stranger, ORDERS, json!({"c": customer_id})).await), Some("FORBIDDEN"));
    assert_eq!(code(&gql(gateway, &stranger, TIMELINE, json!({"o": placed[0]})).await), Some("FORBIDDEN"));
    let rival = s.user("ORGANIZER").await.token;
    assert_eq!(code(&gql(gateway, &rival, SALES, json!({"e": event})).await), Some("FORBIDDEN"));
    assert_eq!(code(&gql(gateway, &customer, SALES, json!({"e": event})).await), Some("FORBIDDEN"));
    let admin = s.admin().await.token;
    for (query, vars, field) in [
        (SALES, json!({"e": event}), "eventSales"),
        (ORDERS, json!({"c": customer_id}), "customerOrders"),
        (TIMELINE, json!({"o": placed[1]}), "orderTimeline"),
    ] {
        let res = gql(gateway, &admin, query, vars).await;
        assert!(data(&res)[field].is_object(), "{field}: {res}");
    }
    // Bad input names the argument and never reaches the projector.
    let res = gql(gateway, &admin, TIMELINE, json!({"o": "nope"})).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    reader.stop().await.unwrap();
    pipeline.stop().await;
}
