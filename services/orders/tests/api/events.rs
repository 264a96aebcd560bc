//! Events: created on their region's shard, read back by id alone.

use serde_json::json;

use super::helpers::{event, fields, stack, stack_with_down};

async fn count_on(stack: &super::helpers::Stack, shard: &str, id: &str) -> i64 {
    sqlx::query_scalar("select count(*) from events where id = $1::uuid")
        .bind(id)
        .fetch_one(stack.shards.pool(shard).unwrap())
        .await
        .unwrap()
}

#[tokio::test]
async fn an_event_lives_on_its_regions_shard_and_routes_by_id() {
    let s = stack().await;
    let (organizer, token) = s.user("ORGANIZER").await;
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
        assert_eq!(got["organizerId"], organizer);
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
    let s = stack().await;
    let (_, customer) = s.user("CUSTOMER").await;
    let (status, body, _) = s.post("/api/v1/events", Some(&customer), &event("NA")).await;
    assert_eq!((status, body["error"].as_str()), (403, Some("FORBIDDEN")), "{body}");
    let (status, _, _) = s.post("/api/v1/events", None, &event("NA")).await;
    assert_eq!(status, 401);
    let (status, _, _) = s.post("/api/v1/events", Some("not.a.token"), &event("NA")).await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn bad_events_name_every_field() {
    let s = stack().await;
    let (_, token) = s.user("ORGANIZER").await;
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
    let s = stack().await;
    let (status, body) = s.get("/api/v1/events/not-a-uuid").await;
    assert_eq!((status, fields(&body)), (400, vec!["id".to_owned()]), "{body}");
    // A UUID this system never handed out, and a routable one with no row behind it.
    let (status, _) = s.get(&format!("/api/v1/events/{}", uuid::Uuid::new_v4())).await;
    assert_eq!(status, 404);
    let na = shard_router::ids::Placement { region_tag: shard_router::ids::region_tag("NA"), partition: 3 };
    let (status, body) = s.get(&format!("/api/v1/events/{}", shard_router::ids::new_id(na))).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("NOT_FOUND")));
}

#[tokio::test]
async fn a_down_shard_answers_503_for_its_region_while_the_other_works() {
    let s = stack_with_down(&["sa-1"]).await;
    let (_, token) = s.user("ORGANIZER").await;
    let started = std::time::Instant::now();
    let (status, body, headers) = s.post("/api/v1/events", Some(&token), &event("SA")).await;
    assert_eq!(status, 503, "{body}");
    assert!(started.elapsed() < std::time::Duration::from_secs(5), "answered within the acquire timeout");
    assert!(headers.contains_key("retry-after"));
    assert!(body["message"].as_str().unwrap().contains("region SA"), "{body}");
    let (status, _, _) = s.post("/api/v1/events", Some(&token), &event("NA")).await;
    assert_eq!(status, 201);
}
