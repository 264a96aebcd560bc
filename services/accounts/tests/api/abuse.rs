//! Inputs an attacker (or a broken client) sends: each is a clear 4xx in the JSON error shape,
//! naming what is wrong, and nothing of it reaches the database.

use serde_json::json;

use super::helpers::{fields, json, spawn};

#[tokio::test]
async fn control_characters_in_text_fields_are_400_naming_the_field() {
    let ctx = spawn().await;
    let ok = json!({"email": "ann@example.org", "name": "Ann Lee", "password": "correct horse battery"});
    for (field, value) in [
        ("name", "Ann\u{0}Lee"),
        ("name", "Ann\u{1b}[2J"),
        ("email", "ann\u{0}@example.org"),
        ("password", "correct\u{0}horse"),
    ] {
        let mut body = ok.clone();
        body[field] = json!(value);
        let (status, body) = json(ctx.app.post_json("/api/v1/signup", &body).await).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("VALIDATION_ERROR")), "{field}: {body}");
        assert_eq!(fields(&body), [field], "{body}");
        // Says what is wrong: not "must not contain spaces" for a NUL.
        let message = body["message"].as_str().unwrap();
        assert!(message.contains("control characters") && message.contains("U+00"), "{message}");
    }
    let (status, body) = ctx.login("ann\u{0}@example.org", "correct horse battery").await;
    assert_eq!((status, fields(&body)), (400, vec!["email".to_owned()]), "{body}");
    assert!(body["message"].as_str().unwrap().contains("control characters"), "{body}");

    let users: i64 = sqlx::query_scalar("select count(*) from users").fetch_one(&ctx.db.pool).await.unwrap();
    assert_eq!(users, 0, "a refused signup must not reach the database");
    // The clean values still sign up.
    let (status, body) = json(ctx.app.post_json("/api/v1/signup", &ok).await).await;
    assert_eq!(status, 201, "{body}");
}

#[tokio::test]
async fn unknown_paths_and_wrong_methods_are_json_errors() {
    let ctx = spawn().await;
    let (status, body) = json(ctx.app.get("/api/v1/nope").await).await;
    assert_eq!((status, body["error"].as_str()), (404, Some("NOT_FOUND")), "{body}");
    let (status, body) = json(ctx.app.get("/api/v1/login").await).await;
    assert_eq!((status, body["error"].as_str()), (405, Some("METHOD_NOT_ALLOWED")), "{body}");
}

#[tokio::test]
async fn a_huge_field_gets_a_small_answer() {
    let ctx = spawn().await;
    // An unknown field's name is quoted by serde; the answer quotes only the start of it.
    let body = json!({"email": "ann@example.org", "password": "x", "x".repeat(60 * 1024): 1});
    let res = ctx.app.post_json("/api/v1/login", &body).await;
    assert_eq!(res.status(), 400);
    let text = res.text().await.unwrap();
    assert!(text.len() < 2048, "a {}-byte answer to a 60 KB field: {}", text.len(), &text[..200]);
}
