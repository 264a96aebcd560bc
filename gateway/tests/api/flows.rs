//! The product flow through the gateway: accounts, events in two regions, orders with region
//! tags, idempotency, stock limits, payment and listings.

use serde_json::json;
use test_stack::TestUser;

use super::helpers::{CREATE_EVENT, Req, code, data, stack};

#[tokio::test]
async fn signup_login_and_me_resolve_the_user_once_per_request() {
    let s = stack().await;
    let TestUser { id, email, token } = s.user("ORGANIZER").await;
    let res = s.gql(Some(&token), "{ me { id email name role } again: me { role } }", json!({})).await;
    assert_eq!(data(&res)["me"], json!({"id": id, "email": email, "name": "Test User", "role": "ORGANIZER"}));
    assert_eq!(data(&res)["again"]["role"], "ORGANIZER");
    assert_eq!(res["extensions"]["downstreamCalls"]["accounts"], 1, "one /me for two fields: {res}");

    let res = s.gql(None, "{ me { id } }", json!({})).await;
    assert_eq!(code(&res), Some("UNAUTHENTICATED"), "{res}");
    let res = s.gql(Some("not-a-token"), "{ me { id } }", json!({})).await;
    assert_eq!(code(&res), Some("UNAUTHENTICATED"), "{res}");

    let res = s
        .gql(
            None,
            "mutation { login(input: {email: \"nobody@example.org\", password: \"password 123\"}) { accessToken } }",
            json!({}),
        )
        .await;
    assert_eq!(code(&res), Some("UNAUTHENTICATED"), "{res}");
    let res = s
        .gql(
            None,
            "mutation($e: String!) { signup(input: {email: $e, name: \"X\", password: \"password 123\"}) { userId } }",
            json!({"e": email}),
        )
        .await;
    assert_eq!(code(&res), Some("CONFLICT"), "{res}");
}

#[tokio::test]
async fn regions_come_from_the_shard_map() {
    let s = stack().await;
    let res = s.gql(None, "{ regions { name shards partitions } }", json!({})).await;
    assert_eq!(
        data(&res)["regions"],
        json!([
            {"name": "NA", "shards": ["na-1"], "partitions": 1024},
            {"name": "SA", "shards": ["sa-1"], "partitions": 1024},
        ])
    );
}

#[tokio::test]
async fn regions_show_the_live_placement_and_pending_moves() {
    let s = stack().await;
    let query =
        "{ regions { name placement { epoch pendingMoves shards { shard livePartitions desiredPartitions } } } }";
    let res = s.gql(None, query, json!({})).await;
    // Seeding NA and SA took one epoch each; every partition is where shards.toml wants it.
    assert_eq!(
        data(&res)["regions"],
        json!([
            {"name": "NA", "placement": {"epoch": 2, "pendingMoves": 0,
                "shards": [{"shard": "na-1", "livePartitions": 1024, "desiredPartitions": 1024}]}},
            {"name": "SA", "placement": {"epoch": 2, "pendingMoves": 0,
                "shards": [{"shard": "sa-1", "livePartitions": 1024, "desiredPartitions": 1024}]}},
        ])
    );
}

#[tokio::test]
async fn a_customer_buys_in_two_regions_with_region_tags_keys_and_stock_limits() {
    let s = stack().await;
    let organizer = s.user("ORGANIZER").await.token;
    let TestUser { id: customer_id, token: customer, .. } = s.user("CUSTOMER").await;

    // createEvent in NA and SA, the region passed as a `Region!` variable.
    let res = s
        .gql(
            Some(&organizer),
            "mutation($region: Region!) {
               createEvent(input: {region: $region, title: \"Indie Night\", venue: \"Downtown\",
                 startsAt: \"2027-01-20T20:00:00Z\", endsAt: \"2027-01-20T23:00:00Z\",
                 ticketTypes: [{name: \"Standard\", priceInCents: 5000, totalQuantity: 3},
                               {name: \"VIP\", priceInCents: 15000, totalQuantity: 20}]}) { eventId region }
             }",
            json!({"region": "NA"}),
        )
        .await;
    assert_eq!(data(&res)["createEvent"]["region"], "NA");
    let na_event = data(&res)["createEvent"]["eventId"].as_str().unwrap().to_owned();
    let (sa_event, sa_tt) = s.event(&organizer, "SA", 10).await;

    let res = s
        .gql(
            None,
            "query($id: ID!) { event(id: $id) { id region title ticketTypes { id name priceInCents totalQuantity remainingQuantity } } }",
            json!({"id": na_event}),
        )
        .await;
    let event = &data(&res)["event"];
    assert_eq!(event["region"], "NA");
    assert_eq!(event["ticketTypes"][0]["name"], "Standard");
    assert_eq!(event["ticketTypes"][0]["remainingQuantity"], 3);
    let standard = event["ticketTypes"][0]["id"].as_str().unwrap().to_owned();

    // The right region tag.
    let res = s.order(&customer, None, "NA", &na_event, &standard, 1).await;
    assert_eq!(data(&res)["createOrder"]["region"], "NA");
    assert_eq!(data(&res)["createOrder"]["totalPriceInCents"], 5000);
    let na_order = data(&res)["createOrder"]["orderId"].as_str().unwrap().to_owned();

    // A wrong one: a clear REGION_MISMATCH naming both regions.
    let res = s.order(&customer, None, "SA", &na_event, &standard, 1).await;
    assert_eq!(code(&res), Some("REGION_MISMATCH"), "{res}");
    let message = res["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("SA") && message.contains("NA"), "{message}");
    assert_eq!(res["errors"][0]["extensions"]["details"]["eventRegion"], "NA");
    // An unknown region never reaches orders.
    let res = s.order(&customer, None, "EU", &na_event, &standard, 1).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    assert!(res["errors"][0]["message"].as_str().unwrap().contains("known: NA, SA"), "{res}");

    // Idempotent replay: the same key answers the same order and takes stock once.
    let first = s.order(&customer, Some("checkout-1"), "NA", &na_event, &standard, 1).await;
    let again = s.order(&customer, Some("checkout-1"), "NA", &na_event, &standard, 1).await;
    assert_eq!(data(&first)["createOrder"], data(&again)["createOrder"]);
    assert_eq!(s.remaining(&na_event).await, 1);
    let other_body = s.order(&customer, Some("checkout-1"), "NA", &na_event, &standard, 2).await;
    assert_eq!(code(&other_body), Some("CONFLICT"), "{other_body}");
    // The lower-case header name is accepted too.
    let req = Req { token: Some(&customer), headers: vec![("x-idempotency-key", "checkout-2".into())] };
    let vars = json!({"input": {"region": "SA", "eventId": sa_event, "ticketTypeId": sa_tt, "quantity": 1}});
    let (_, a) = s.gql_req(req, super::helpers::CREATE_ORDER, vars.clone()).await;
    let req = Req { token: Some(&customer), headers: vec![("x-idempotency-key", "checkout-2".into())] };
    let (_, b) = s.gql_req(req, super::helpers::CREATE_ORDER, vars).await;
    assert_eq!(data(&a)["createOrder"], data(&b)["createOrder"]);
    let sa_order = data(&a)["createOrder"]["orderId"].as_str().unwrap().to_owned();

    // Stock limits.
    let res = s.order(&customer, None, "NA", &na_event, &standard, 2).await;
    assert_eq!(code(&res), Some("INSUFFICIENT_STOCK"), "{res}");
    assert_eq!(res["errors"][0]["extensions"]["details"]["remaining"], 1);
    assert!(data(&s.order(&customer, None, "NA", &na_event, &standard, 1).await)["createOrder"].is_object());
    let res = s.order(&customer, None, "NA", &na_event, &standard, 1).await;
    assert_eq!(code(&res), Some("SOLD_OUT"), "{res}");
    assert_eq!(s.remaining(&na_event).await, 0);

    // Paying, twice (the second answers the same).
    for _ in 0..2 {
        let res = s
            .gql(Some(&customer), "mutation($id: ID!) { payOrder(id: $id) { id status } }", json!({"id": na_order}))
            .await;
        assert_eq!(data(&res)["payOrder"], json!({"id": na_order, "status": "PAID"}));
    }
    let res = s
        .gql(
            Some(&customer),
            "query($id: ID!) { order(id: $id) { id status region paidAt event { title region } } }",
            json!({"id": na_order}),
        )
        .await;
    assert_eq!(data(&res)["order"]["status"], "PAID");
    assert_eq!(data(&res)["order"]["event"], json!({"title": "Indie Night", "region": "NA"}));

    // Orders across both regions, each with its event, batched: one listing call and one
    // read per distinct event, however many orders share it.
    let query =
        "query($c: ID!) { me { id } ordersByCustomer(customerId: $c) { id region status event { id region } } }";
    let res = s.gql(Some(&customer), query, json!({"c": customer_id})).await;
    let orders = data(&res)["ordersByCustomer"].as_array().unwrap();
    assert_eq!(orders.len(), 4, "{res}");
    let mut regions: Vec<&str> = orders.iter().map(|o| o["region"].as_str().unwrap()).collect();
    regions.sort_unstable();
    assert_eq!(regions, ["NA", "NA", "NA", "SA"]);
    assert!(orders.iter().any(|o| o["id"] == sa_order.as_str() && o["event"]["region"] == "SA"));
    assert!(orders.iter().all(|o| o["event"]["region"] == o["region"]));
    assert_eq!(res["extensions"]["downstreamCalls"]["accounts"], 1, "me resolved once: {res}");
    // One batch: each distinct event looked up once (in Redis, then orders for the misses).
    let ext = &res["extensions"];
    let (hits, misses) = (ext["cache"]["hits"].as_u64().unwrap(), ext["cache"]["misses"].as_u64().unwrap());
    assert_eq!(hits + misses, 2, "two distinct events, one lookup each: {res}");
    assert_eq!(ext["downstreamCalls"]["orders"].as_u64().unwrap(), 1 + misses, "{res}");

    // Another customer's id: FORBIDDEN, without asking orders; an ADMIN may.
    let stranger = s.user("CUSTOMER").await.token;
    let res = s.gql(Some(&stranger), query, json!({"c": customer_id})).await;
    assert_eq!(code(&res), Some("FORBIDDEN"), "{res}");
    let admin = s.admin().await.token;
    let res = s.gql(Some(&admin), query, json!({"c": customer_id})).await;
    assert_eq!(data(&res)["ordersByCustomer"].as_array().unwrap().len(), 4, "{res}");
    let res = s.gql(Some(&stranger), "query($id: ID!) { order(id: $id) { id } }", json!({"id": na_order})).await;
    assert_eq!(code(&res), Some("FORBIDDEN"), "{res}");
    let res = s.gql(Some(&stranger), "mutation($id: ID!) { payOrder(id: $id) { id } }", json!({"id": sa_order})).await;
    assert_eq!(code(&res), Some("FORBIDDEN"), "{res}");
}

#[tokio::test]
async fn events_page_by_cursor_and_filter_by_region_and_organizer() {
    let s = stack().await;
    let TestUser { id: org_id, token: organizer, .. } = s.user("ORGANIZER").await;
    let other = s.user("ORGANIZER").await.token;
    for (token, region) in [(&organizer, "NA"), (&organizer, "NA"), (&organizer, "SA"), (&other, "NA")] {
        s.event(token, region, 5).await;
    }
    let page = |vars: serde_json::Value| {
        let s = &s;
        async move {
            let res = s
                .gql(
                    None,
                    "query($r: Region, $o: ID, $f: Int, $a: String) {
                       events(region: $r, organizerId: $o, first: $f, after: $a) { id region organizerId cursor }
                     }",
                    vars,
                )
                .await;
            data(&res)["events"].as_array().unwrap().clone()
        }
    };
    assert_eq!(page(json!({})).await.len(), 4, "every region when none is named");
    assert_eq!(page(json!({"r": "SA"})).await.len(), 1);
    let mine = page(json!({"r": "NA", "o": org_id})).await;
    assert_eq!(mine.len(), 2);
    assert!(mine.iter().all(|e| e["organizerId"] == org_id.to_string().as_str()));
    let first = page(json!({"r": "NA", "f": 2})).await;
    let rest = page(json!({"r": "NA", "f": 2, "a": first[1]["cursor"]})).await;
    assert_eq!(rest.len(), 1);
    assert!(first.iter().all(|e| e["id"] != rest[0]["id"]));

    // The seed's operation, as it is: no arguments at all.
    let res = s.gql(None, "query Events { events { id title venue startsAt endsAt } }", json!({})).await;
    assert_eq!(data(&res)["events"].as_array().unwrap().len(), 4);
}

#[tokio::test]
async fn the_correlation_id_is_returned_and_reaches_the_services() {
    let s = stack().await;
    let organizer = s.user("ORGANIZER").await.token;
    let corr = format!("gw-test-{}", testkit::unique_id());
    let vars = json!({"input": {
        "region": "NA", "title": "Traced", "venue": "Hall", "startsAt": "2027-01-20T20:00:00Z",
        "endsAt": "2027-01-20T23:00:00Z", "ticketTypes": [{"name": "GA", "priceInCents": 100, "totalQuantity": 5}],
    }});
    let req = Req { token: Some(&organizer), headers: vec![("x-correlation-id", corr.clone())] };
    let (headers, res) = s.gql_req(req, CREATE_EVENT, vars).await;
    assert_eq!(headers["x-correlation-id"], corr.as_str());
    let event = data(&res)["createEvent"]["eventId"].as_str().unwrap().to_owned();
    let customer = s.user("CUSTOMER").await.token;
    let tt = {
        let res = s.gql(None, "query($id: ID!) { event(id: $id) { ticketTypes { id } } }", json!({"id": event})).await;
        data(&res)["event"]["ticketTypes"][0]["id"].as_str().unwrap().to_owned()
    };
    let req = Req { token: Some(&customer), headers: vec![("x-correlation-id", corr.clone())] };
    let vars = json!({"input": {"region": "NA", "eventId": event, "ticketTypeId": tt, "quantity": 1}});
    let (_, res) = s.gql_req(req, super::helpers::CREATE_ORDER, vars).await;
    assert!(data(&res)["createOrder"].is_object());
    // orders stores the request's correlation id on the outbox row of the order it created.
    let stored: Vec<(Option<String>,)> =
        sqlx::query_as("select correlation_id from outbox").fetch_all(s.shards.pool("na-1").unwrap()).await.unwrap();
    assert_eq!(stored, [(Some(corr),)]);

    // A malformed one is replaced, not forwarded.
    let req = Req { token: None, headers: vec![("x-correlation-id", "bad id!".into())] };
    let (headers, _) = s.gql_req(req, "{ regions { name } }", json!({})).await;
    assert_ne!(headers["x-correlation-id"], "bad id!");
}

#[tokio::test]
async fn a_region_added_to_the_shard_map_is_a_region_of_the_schema() {
    let s = stack().await;
    let map = shard_router::ShardMap::parse(
        "[regions.NA]\npartitions = 1024\nshards = [\"na-1\"]\n\
         [regions.SA]\npartitions = 1024\nshards = [\"sa-1\"]\n\
         [regions.EU]\npartitions = 512\nshards = [\"eu-1\", \"eu-2\"]\n\
         [shards.na-1]\nurl = \"postgres://h/na\"\n[shards.sa-1]\nurl = \"postgres://h/sa\"\n\
         [shards.eu-1]\nurl = \"postgres://h/eu1\"\n[shards.eu-2]\nurl = \"postgres://h/eu2\"\n",
        "test shards.toml",
    )
    .unwrap();
    let app = gateway::Application::build(s.gateway_settings().clone(), map).await.unwrap();
    let three = testkit::TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop));
    let ask = |query: &'static str| {
        let three = &three;
        async move {
            let res = three.post_json("/graphql", &json!({"query": query})).await;
            res.json::<serde_json::Value>().await.unwrap()
        }
    };
    let res = ask("{ regions { name shards partitions } }").await;
    assert_eq!(data(&res)["regions"][0], json!({"name": "EU", "shards": ["eu-1", "eu-2"], "partitions": 512}));
    // The gateway takes EU (orders, on the stack's own map, does not know it: its words come back).
    let res = ask("{ events(region: EU) { id } }").await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    assert_eq!(res["extensions"]["downstreamCalls"]["orders"], 1, "{res}");
    let res = ask("{ events(region: XX) { id } }").await;
    assert!(res["errors"][0]["message"].as_str().unwrap().contains("known: EU, NA, SA"), "{res}");
    assert_eq!(res["extensions"]["downstreamCalls"]["orders"], 0, "{res}");
}

#[tokio::test]
async fn cancel_order_returns_the_tickets_and_the_cached_event_shows_them() {
    let s = stack().await;
    let organizer = s.user("ORGANIZER").await.token;
    let (event, tt) = s.event(&organizer, "NA", 5).await;
    let customer = s.user("CUSTOMER").await.token;
    let res = s.order(&customer, None, "NA", &event, &tt, 2).await;
    let order = data(&res)["createOrder"]["orderId"].as_str().unwrap().to_owned();
    // Cached now, with the order's stock taken.
    assert_eq!(s.remaining(&event).await, 3);
    assert_eq!(s.remaining(&event).await, 3);

    let cancel = "mutation($id: ID!) { cancelOrder(id: $id) { id status cancelReason version } }";
    let stranger = s.user("CUSTOMER").await.token;
    assert_eq!(code(&s.gql(Some(&stranger), cancel, json!({"id": order})).await), Some("FORBIDDEN"));
    for _ in 0..2 {
        let res = s.gql(Some(&customer), cancel, json!({"id": order})).await;
        assert_eq!(
            data(&res)["cancelOrder"],
            json!({"id": order, "status": "CANCELLED", "cancelReason": "CUSTOMER", "version": 2})
        );
    }
    assert_eq!(s.remaining(&event).await, 5, "the cached event was dropped on cancel");
    let res = s.gql(Some(&customer), "mutation($id: ID!) { payOrder(id: $id) { id } }", json!({"id": order})).await;
    assert_eq!(code(&res), Some("ORDER_CANCELLED"), "{res}");
    let res = s
        .gql(
            Some(&customer),
            "query($id: ID!) { order(id: $id) { status cancelReason version } }",
            json!({"id": order}),
        )
        .await;
    assert_eq!(data(&res)["order"], json!({"status": "CANCELLED", "cancelReason": "CUSTOMER", "version": 2}));
    assert_eq!(code(&s.gql(Some(&customer), cancel, json!({"id": "nope"})).await), Some("BAD_USER_INPUT"));
}
