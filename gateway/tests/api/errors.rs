//! Every failure is a GraphQL error with a code and a message for people, never an address;
//! limits refuse abusive requests before any downstream call.

use serde_json::json;

use super::helpers::{CREATE_EVENT, Req, code, data, post_gql, stack, stack_with, stack_with_down};

#[tokio::test]
async fn bad_input_is_refused_with_codes_and_field_details() {
    let s = stack().await;
    let (organizer, customer) = s.organizer_and_customer().await;
    let event = |region: &str, starts: &str| {
        json!({"input": {"region": region, "title": "T", "venue": "V", "startsAt": starts,
            "endsAt": "2027-01-20T23:00:00Z", "ticketTypes": [{"name": "GA", "priceInCents": 100, "totalQuantity": 1}]}})
    };
    // A region the shard map does not hold; a string that is no region name at all.
    let res = s.gql(Some(&organizer), CREATE_EVENT, event("EU", "2027-01-20T20:00:00Z")).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    assert_eq!(res["errors"][0]["extensions"]["details"]["fields"][0]["field"], "region");
    let res = s.gql(Some(&organizer), CREATE_EVENT, event("na; drop", "2027-01-20T20:00:00Z")).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    // The service's validation, passed on with its fields.
    let res = s.gql(Some(&organizer), CREATE_EVENT, event("NA", "tomorrow")).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    assert_eq!(res["errors"][0]["extensions"]["details"]["fields"][0]["field"], "startsAt", "{res}");
    // Roles.
    let res = s.gql(Some(&customer), CREATE_EVENT, event("NA", "2027-01-20T20:00:00Z")).await;
    assert_eq!(code(&res), Some("FORBIDDEN"), "{res}");
    let res = s.gql(None, CREATE_EVENT, event("NA", "2027-01-20T20:00:00Z")).await;
    assert_eq!(code(&res), Some("UNAUTHENTICATED"), "{res}");
    // Ids: malformed never reaches a URL; well formed but unknown is NOT_FOUND.
    for id in ["../../admin", "nope", ""] {
        let res = s.gql(None, "query($id: ID!) { event(id: $id) { id } }", json!({"id": id})).await;
        assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{id}: {res}");
    }
    let res = s.gql(None, "{ event(id: \"0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\") { id } }", json!({})).await;
    assert_eq!(code(&res), Some("NOT_FOUND"), "{res}");
    assert_eq!(res["data"]["event"], serde_json::Value::Null);
    // Page sizes and cursors.
    for args in ["first: 0", "first: 101", "after: \"x&region=SA\""] {
        let res = s.gql(None, &format!("{{ events({args}) {{ id }} }}"), json!({})).await;
        assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{args}: {res}");
    }
    // What the engine refuses itself: syntax, unknown fields, a wrong variable type.
    for query in ["{ events { id ", "{ nope }", "query($r: Region!) { events(region: $r) { id } }"] {
        let res = s.gql(None, query, json!({"r": 5})).await;
        assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{query}: {res}");
    }
}

#[tokio::test]
async fn limits_refuse_deep_complex_and_large_requests() {
    let s = stack_with(|g| {
        g.max_query_depth = 3;
        g.max_query_complexity = 300;
        g.max_body_bytes = 4096;
    })
    .await;
    let customer = s.user("CUSTOMER").await.token;
    let deep = "query($c: ID!) { ordersByCustomer(customerId: $c) { event { ticketTypes { id } } } }";
    let res = s.gql(Some(&customer), deep, json!({"c": "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b"})).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    assert!(res["errors"][0]["message"].as_str().unwrap().to_lowercase().contains("deep"), "{res}");
    assert_eq!(res["extensions"]["downstreamCalls"]["orders"], 0);

    let wide = "{ events(first: 100) { id title venue startsAt endsAt } }";
    let res = s.gql(None, wide, json!({})).await;
    assert_eq!(code(&res), Some("BAD_USER_INPUT"), "{res}");
    assert!(res["errors"][0]["message"].as_str().unwrap().to_lowercase().contains("complex"), "{res}");

    let big = format!("{{ regions {{ name }} }} # {}", "x".repeat(8192));
    let res = s.gateway().client.post(s.gateway().url("/graphql")).json(&json!({"query": big})).send().await.unwrap();
    assert_eq!(res.status(), 413);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
    assert!(body["errors"][0]["message"].as_str().unwrap().contains("4096 bytes"), "{body}");

    let res = s
        .gateway()
        .client
        .post(s.gateway().url("/graphql"))
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 400);
    let body: serde_json::Value = res.json().await.unwrap();
    assert_eq!(code(&body), Some("BAD_USER_INPUT"), "{body}");
}

#[tokio::test]
async fn a_down_or_silent_service_is_unavailable_without_its_address() {
    // orders behind an address that accepts connections and never answers.
    let mut s = stack().await;
    let (silent_gateway, held) = s.silent_orders_gateway().await;
    let (_, res) = post_gql(&silent_gateway, Req::default(), "{ events(region: NA) { id } }", json!({})).await;
    assert_eq!(code(&res), Some("UNAVAILABLE"), "{res}");
    let message = res["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("did not answer within 500 ms"), "{message}");
    assert!(!message.contains("127.0.0.1"), "{message}");
    held.abort();

    // orders stopped: UNAVAILABLE naming the service only; accounts still answers.
    s.orders.shut_down().await.unwrap();
    let res = s.gql(None, "{ events { id } }", json!({})).await;
    assert_eq!(code(&res), Some("UNAVAILABLE"), "{res}");
    let message = res["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("orders") && !message.contains("127.0.0.1"), "{message}");
    let token = s.user("CUSTOMER").await.token;
    let res = s.gql(Some(&token), "{ me { role } }", json!({})).await;
    assert_eq!(res["data"]["me"]["role"], "CUSTOMER", "{res}");
}

#[tokio::test]
async fn a_lost_region_is_unavailable_with_retry_after_while_the_other_answers() {
    let s = stack_with_down("sa-1").await;
    let organizer = s.user("ORGANIZER").await.token;
    let (event, _) = s.event(&organizer, "NA", 5).await;
    let res = s.gql(None, "{ events(region: SA) { id } }", json!({})).await;
    assert_eq!(code(&res), Some("UNAVAILABLE"), "{res}");
    assert!(res["errors"][0]["message"].as_str().unwrap().contains("region SA"), "{res}");
    assert!(res["errors"][0]["extensions"]["retryAfter"].as_u64().is_some_and(|s| s > 0), "{res}");
    let res = s.gql(None, "{ events(region: NA) { id } }", json!({})).await;
    assert_eq!(data(&res)["events"][0]["id"], event.as_str());
}
