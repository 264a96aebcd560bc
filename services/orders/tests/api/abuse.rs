//! Inputs an attacker (or a broken client) sends: each is a clear 4xx in the JSON error shape,
//! naming what is wrong, small whatever the input's size, and never a 500.

use serde_json::{Value, json};

use test_stack::Stack;

use super::helpers::{event, fields};

#[tokio::test]
async fn control_characters_in_event_text_are_400_naming_the_field() {
    let s = Stack::start().await;
    let organizer = s.user("ORGANIZER").await.token;
    for (field, value) in [("title", "Indie\u{0}Night"), ("venue", "Down\u{1b}town"), ("description", "a\u{0}b")] {
        let mut body = event("NA");
        body[field] = json!(value);
        let (status, body, _) = s.post("/api/v1/events", Some(&organizer), &body).await;
        assert_eq!((status, fields(&body)), (400, vec![field.to_owned()]), "{body}");
        assert!(body["message"].as_str().unwrap().contains("control characters"), "{body}");
    }
    let mut body = event("NA");
    body["ticketTypes"][1]["name"] = json!("V\u{0}IP");
    let (status, body, _) = s.post("/api/v1/events", Some(&organizer), &body).await;
    assert_eq!((status, fields(&body)), (400, vec!["ticketTypes[1].name".to_owned()]), "{body}");
    // A description may have line breaks.
    let mut body = event("NA");
    body["description"] = json!("Doors 19:00.\nShow 20:00.");
    let (status, body, _) = s.post("/api/v1/events", Some(&organizer), &body).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn bad_paths_query_strings_and_methods_are_json_4xx() {
    let s = Stack::start().await;
    let (status, body) = s.get("/api/v1/events/%FF%FE").await;
    assert_eq!((status, fields(&body)), (400, vec!["id".to_owned()]), "{body}");
    let (status, body) = s.get("/api/v1/events?limit=1&limit=2").await;
    assert_eq!((status, fields(&body)), (400, vec!["limit".to_owned()]), "{body}");
    let (status, body) = s.get("/api/v1/nope").await;
    assert_eq!((status, body["error"].as_str()), (404, Some("NOT_FOUND")), "{body}");
    let res = s.orders.client.delete(s.orders.url("/api/v1/events")).send().await.unwrap();
    assert_eq!(res.status(), 405);
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["error"], "METHOD_NOT_ALLOWED", "{body}");
}

#[tokio::test]
async fn a_huge_value_gets_a_small_answer() {
    let s = Stack::start().await;
    let organizer = s.user("ORGANIZER").await.token;
    let huge = "X".repeat(60 * 1024);
    let mut body = event("NA");
    body["region"] = json!(huge);
    let res = s.orders.client.post(s.orders.url("/api/v1/events")).bearer_auth(&organizer).json(&body).send().await;
    let res = res.unwrap();
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(text.len() < 2048, "a {}-byte answer to a 60 KB region", text.len());
    let (status, body) = s.get_as(&format!("/api/v1/customers/{}/orders", "c".repeat(8000)), &organizer).await;
    assert_eq!((status, fields(&body)), (400, vec!["id".to_owned()]), "{body}");
    assert!(body.to_string().len() < 1024, "{} bytes", body.to_string().len());
}
