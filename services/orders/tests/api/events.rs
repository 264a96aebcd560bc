//! Events: created on their region's shard, read back by id alone.

use serde_json::json;

use test_stack::{Stack, TestUser, order_body};

use super::helpers::{event, fields};

async fn count_on(stack: &Stack, shard: &str, id: &str) -> i64 {
    sqlx::query_scalar("select count(*) from events where id = $1::uuid")
        .bind(id)
        .fetch_one(stack.shards.pool(shard).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_event_lives_on_its_regions_shard_and_routes_by_id() {
    let s = Stack::start().await;
    let TestUser { id: organizer, token, .. } = s.user("ORGANIZER").await;
    for (region, home, other) in [("NA", "na-1", "sa-1"), ("SA", "sa-1", "na-1")] {
        let (status, body, _) = s.post("/api/v1/events", Some(&token), &event(region)).await;
        assert_eq!(status, 201, "{body}");
        assert_eq!(body["region"], region);
        let id = body["eventId"].as_str().unwrap();
        assert_eq!(count_on(&s, home, id).await, 1, "stored on {home}");
        assert_eq!(count_on(&s, other, id).await, 0, "not on {other}");

        let (status, got) = s.get(&format!("/api/v1/events/{id}")).await;
        assert_eq!(status, 200, "{got}");
        assert_eq!(got["id"], id);
        assert_eq!(got["region"], region);
        assert_eq!(got["organizerId"], organizer.to_string());
        assert_eq!((got["title"].as_str(), got["venue"].as_str()), (Some("Indie Night"), Some("Downtown")));
        assert_eq!(got["startsAt"], "2026-01-20T20:00:00Z");
        let types = got["ticketTypes"].as_array().unwrap();
        assert_eq!(types.len(), 2);
        assert_eq!(types[0]["name"], "Standard");
        assert_eq!((types[0]["priceInCents"].as_i64(), types[0]["totalQuantity"].as_i64()), (Some(5000), Some(100)));
        assert_eq!(types[0]["remainingQuantity"], types[0]["totalQuantity"]);
    }
}

#[tokio::test]
async fn only_organizers_and_admins_create_events() {
    let s = Stack::start().await;
    let customer = s.user("CUSTOMER").await.token;
    let (status, body, _) = s.post("/api/v1/events", Some(&customer), &event("NA")).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("FORBIDDEN")), "{body}");
    let (status, _, _) = s.post("/api/v1/events", None, &event("NA")).await;
    assert_eq!(status, 401);
    let (status, _, _) = s.post("/api/v1/events", Some("not.a.token"), &event("NA")).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn bad_events_name_every_field() {
    let s = Stack::start().await;
    let token = s.user("ORGANIZER").await.token;
    let mut bad = event("EU");
    bad["title"] = json!("   ");
    bad["startsAt"] = json!("2026-01-20T20:00:00");
    bad["ticketTypes"] = json!([{"name": "Free", "priceInCents": 0, "totalQuantity": 2_000_000}]);
    let (status, body, _) = s.post("/api/v1/events", Some(&token), &bad).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "VALIDATION_ERROR");
    assert_eq!(
        fields(&body),
        ["region", "title", "startsAt", "ticketTypes[0].priceInCents", "ticketTypes[0].totalQuantity"],
        "{body}"
    );
    assert!(body["message"].as_str().unwrap().contains("known: NA, SA"), "{body}");

    let mut reversed = event("NA");
    reversed["endsAt"] = json!("2026-01-20T19:00:00Z");
    let (status, body, _) = s.post("/api/v1/events", Some(&token), &reversed).await;
    assert_eq!((status, fields(&body)), (400, vec!["endsAt".to_owned()]));

    for types in [
        json!([]),
        json!(
            (0..51)
                .map(|i| json!({"name": format!("T{i}"), "priceInCents": 1, "totalQuantity": 1}))
                .collect::<Vec<_>>()
        ),
    ] {
        let mut e = event("NA");
        e["ticketTypes"] = types;
        let (status, body, _) = s.post("/api/v1/events", Some(&token), &e).await;
        assert_eq!((status, fields(&body)), (400, vec!["ticketTypes".to_owned()]), "{body}");
    }
}

#[tokio::test]
async fn unknown_and_malformed_ids() {
    let s = Stack::start().await;
    let (status, body) = s.get("/api/v1/events/not-a-uuid").await;
    assert_eq!((status, fields(&body)), (400, vec!["id".to_owned()]), "{body}");
    // A UUID this system never handed out, and a routable one with no row behind it.
    let (status, _) = s.get(&format!("/api/v1/events/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
    let na = shard_router::ids::Placement {
        region_tag: shard_router::ids::region_tag("NA"),
        partition: shard_router::Partition::new(3).unwrap(),
    };
    let (status, body) = s.get(&format!("/api/v1/events/{}", shard_router::ids::new_id(na))).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("NOT_FOUND")));
}

#[tokio::test]
async fn a_down_shard_answers_503_for_its_region_while_the_other_works() {
    let s = Stack::builder().down("sa-1").start().await;
    let token = s.user("ORGANIZER").await.token;
    let started = std::time::Instant::now();
    let (status, body, headers) = s.post("/api/v1/events", Some(&token), &event("SA")).await;
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "answered within the acquire timeout");
    assert!(headers.contains_key("retry-after"));
    assert!(body["message"].as_str().unwrap().contains("region SA"), "{body}");
    let (status, _, _) = s.post("/api/v1/events", Some(&token), &event("NA")).await;
    assert_eq!(status, 201);
}

/// Creates an event in `region` starting on day `day` of January 2027, titled `title`.
async fn dated(s: &Stack, token: &str, region: &str, day: u32, title: &str) -> String {
    let mut body = event(region);
    body["title"] = json!(title);
    body["startsAt"] = json!(format!("2027-01-{day:02}T20:00:00Z"));
    body["endsAt"] = json!(format!("2027-01-{day:02}T23:00:00Z"));
    let (status, created, _) = s.post("/api/v1/events", Some(token), &body).await;
    assert_eq!(status, 201, "{created}");
    created["eventId"].as_str().unwrap().to_owned()
}

fn titles(page: &serde_json::Value) -> Vec<String> {
    page["items"].as_array().unwrap().iter().map(|e| e["title"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn listing_pages_one_region_or_fans_out_over_all_by_start_time() {
    let s = Stack::start().await;
    let TestUser { id: organizer, token, .. } = s.user("ORGANIZER").await;
    let other = s.user("ORGANIZER").await.token;
    for (region, day, title) in
        [("NA", 1, "na1"), ("SA", 2, "sa2"), ("NA", 3, "na3"), ("SA", 4, "sa4"), ("NA", 5, "na5")]
    {
        dated(&s, &token, region, day, title).await;
    }
    dated(&s, &other, "NA", 6, "other6").await;

    let (status, first) = s.get("/api/v1/events?region=NA&limit=2").await;
    assert_eq!(status, 200, "{first}");
    assert_eq!(titles(&first), ["na1", "na3"]);
    assert_eq!(first["items"][0]["ticketTypes"].as_array().unwrap().len(), 2, "ticket types come along");
    let cursor = first["nextCursor"].as_str().unwrap();
    let (_, second) = s.get(&format!("/api/v1/events?region=NA&limit=2&cursor={cursor}")).await;
    assert_eq!(titles(&second), ["na5", "other6"]);
    assert!(second["nextCursor"].is_null(), "the last page says so: {second}");

    // No region: every shard, merged by start time.
    let (_, all) = s.get(&format!("/api/v1/events?organizerId={organizer}&limit=4")).await;
    assert_eq!(titles(&all), ["na1", "sa2", "na3", "sa4"]);
    let (_, rest) = s
        .get(&format!("/api/v1/events?organizerId={organizer}&limit=4&cursor={}", all["nextCursor"].as_str().unwrap()))
        .await;
    assert_eq!(titles(&rest), ["na5"]);
    assert!(rest["nextCursor"].is_null());

    let (status, body) = s.get("/api/v1/events?region=EU&limit=0&cursor=garbage&organizerId=x").await;
    assert_eq!(
        (status, fields(&body)),
        (400, vec!["region".into(), "organizerId".into(), "limit".into(), "cursor".into()])
    );
}

#[tokio::test]
async fn a_fan_out_over_a_down_shard_is_a_clear_503_while_the_other_region_lists() {
    let s = Stack::builder().down("sa-1").start().await;
    let token = s.user("ORGANIZER").await.token;
    dated(&s, &token, "NA", 1, "na1").await;
    let (status, page) = s.get("/api/v1/events?region=NA").await;
    assert_eq!((status, titles(&page)), (200, vec!["na1".to_owned()]));
    let (status, body) = s.get("/api/v1/events").await;
    assert_eq!(status, 503, "{body}");
    assert!(body["message"].as_str().unwrap().contains("region SA"), "{body}");
}

#[tokio::test]
async fn a_customer_lists_their_orders_across_regions_newest_first() {
    let s = Stack::start().await;
    let ((na_event, na_tt), (sa_event, sa_tt)) = s.stock_in_na_and_sa(10).await;
    let customer = s.user("CUSTOMER").await.token;
    let mut placed = Vec::new();
    for (region, e, t) in [("NA", &na_event, &na_tt), ("SA", &sa_event, &sa_tt), ("NA", &na_event, &na_tt)] {
        let (status, body) = s.order(&customer, None, &order_body(region, e, t, 1)).await;
        assert_eq!(status, 201);
        placed.push(body["orderId"].as_str().unwrap().to_owned());
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
    let (status, page) = s.get_as("/api/v1/customers/me/orders?limit=2", &customer).await;
    assert_eq!(status, 200, "{page}");
    let ids = |p: &serde_json::Value| {
        p["items"].as_array().unwrap().iter().map(|o| o["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
    };
    assert_eq!(ids(&page), [placed[2].clone(), placed[1].clone()]);
    let (_, rest) = s
        .get_as(
            &format!("/api/v1/customers/me/orders?limit=2&cursor={}", page["nextCursor"].as_str().unwrap()),
            &customer,
        )
        .await;
    assert_eq!(ids(&rest), [placed[0].clone()]);
    assert_eq!(rest["items"][0]["region"], "NA");

    let stranger = s.user("CUSTOMER").await.token;
    let (_, none) = s.get_as("/api/v1/customers/me/orders", &stranger).await;
    assert!(ids(&none).is_empty());
    assert_eq!(s.get("/api/v1/customers/me/orders").await.0, 401);
}

#[tokio::test]
async fn creating_an_event_is_idempotent_by_key() {
    let s = Stack::start().await;
    let token = s.user("ORGANIZER").await.token;
    let post = |body: serde_json::Value, key: &'static str| {
        let req = s
            .orders
            .client
            .post(s.orders.url("/api/v1/events"))
            .bearer_auth(token.clone())
            .header("Idempotency-Key", key)
            .json(&body);
        async move {
            let res = req.send().await.unwrap();
            (res.status().as_u16(), res.json::<serde_json::Value>().await.unwrap())
        }
    };
    let answers = futures::future::join_all((0..10).map(|_| post(event("NA"), "launch-1"))).await;
    assert_eq!(answers[0].0, 201, "{:?}", answers[0]);
    assert!(answers.iter().all(|a| *a == answers[0]), "one event, ten identical answers");
    let (_, page) = s.get("/api/v1/events?region=NA").await;
    assert_eq!(page["items"].as_array().unwrap().len(), 1);
    let (status, body) = post(event("SA"), "launch-1").await;
    assert_eq!((status, body["error"].as_str()), (422, Some("IDEMPOTENCY_KEY_REUSED")));
}

#[tokio::test]
async fn a_customers_orders_are_listed_to_them_and_to_admins_only() {
    let s = Stack::start().await;
    let ((na_event, na_tt), (sa_event, sa_tt)) = s.stock_in_na_and_sa(5).await;
    let TestUser { id: customer_id, token: customer, .. } = s.user("CUSTOMER").await;
    for (region, event, tt) in [("NA", &na_event, &na_tt), ("SA", &sa_event, &sa_tt)] {
        assert_eq!(s.order(&customer, None, &order_body(region, event, tt, 1)).await.0, 201);
    }
    let path = format!("/api/v1/customers/{customer_id}/orders");
    let regions = |p: &serde_json::Value| {
        let mut r: Vec<String> =
            p["items"].as_array().unwrap().iter().map(|o| o["region"].as_str().unwrap().to_owned()).collect();
        r.sort();
        r
    };
    let (status, own) = s.get_as(&path, &customer).await;
    assert_eq!(status, 200, "{own}");
    assert_eq!(regions(&own), ["NA", "SA"]);
    let admin = s.admin().await.token;
    let (status, seen) = s.get_as(&path, &admin).await;
    assert_eq!(status, 200, "{seen}");
    assert_eq!(regions(&seen), ["NA", "SA"]);

    let other = s.user("CUSTOMER").await.token;
    let (status, body) = s.get_as(&path, &other).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("FORBIDDEN")));
    assert_eq!(s.get_as("/api/v1/customers/not-a-uuid/orders", &admin).await.0, 400);
    assert_eq!(s.get(&path).await.0, 401);
}
