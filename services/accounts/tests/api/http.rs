//! Signup, login, me and the JWKS over HTTP.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::Utc;
use platform::auth::{JwksVerifier, Role, TokenPolicy, TokenVerifier};
use serde_json::json;
use test_stack::TestUser;

use super::helpers::{fields, json, spawn, spawn_with};

#[tokio::test]
async fn signup_login_me_round_trip_with_customer_by_default() {
    let ctx = spawn().await;
    let TestUser { id, token, .. } = ctx.user("  Ann@Example.org ", None).await;
    let (status, me) = ctx.me(Some(&token)).await;
    assert_eq!(status, 200, "{me}");
    assert_eq!(me, json!({"id": id, "email": "Ann@Example.org", "name": "Test User", "role": "CUSTOMER"}));
}

#[tokio::test]
async fn organizer_may_be_chosen_admin_may_not() {
    let ctx = spawn().await;
    let token = ctx.user("org@example.org", Some("ORGANIZER")).await.token;
    assert_eq!(ctx.me(Some(&token)).await.1["role"], "ORGANIZER");

    let (status, body) = ctx.signup("boss@example.org", "correct horse battery", Some("ADMIN")).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"], "VALIDATION_ERROR");
    assert_eq!(fields(&body), ["role"]);
    let (status, body) = ctx.signup("x@example.org", "correct horse battery", Some("KING")).await;
    assert_eq!((status, fields(&body)), (400, vec!["role".to_owned()]));
}

#[tokio::test]
async fn validation_names_every_bad_field() {
    let ctx = spawn().await;
    let (status, body) =
        json(ctx.app.post_json("/api/v1/signup", &json!({"email": "nope", "name": "   ", "password": "short"})).await)
            .await;
    assert_eq!(status, 400);
    assert_eq!(body["error"], "VALIDATION_ERROR");
    assert_eq!(fields(&body), ["email", "name", "password"], "{body}");

    let (status, body) = json(ctx.app.post_json("/api/v1/signup", &json!({})).await).await;
    assert_eq!((status, fields(&body)), (400, vec!["email".into(), "name".into(), "password".into()]));

    let (status, body) = json(
        ctx.app
            .post_json(
                "/api/v1/signup",
                &json!({"email": "a@b.org", "name": "n".repeat(101), "password": "x".repeat(129)}),
            )
            .await,
    )
    .await;
    assert_eq!((status, fields(&body)), (400, vec!["name".into(), "password".into()]));

    // A value of the wrong type is named too.
    let (status, body) = json(ctx.app.post_json("/api/v1/signup", &json!({"email": 5})).await).await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(fields(&body), ["email"], "{body}");
}

#[tokio::test]
async fn duplicate_email_in_another_case_is_a_conflict() {
    let ctx = spawn().await;
    assert_eq!(ctx.signup("dup@example.org", "correct horse battery", None).await.0, 201);
    let (status, body) = ctx.signup("DUP@Example.ORG", "another password", None).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["error"], "CONFLICT");
    assert_eq!(fields(&body), ["email"]);
}

#[tokio::test]
async fn unreadable_bodies_are_4xx_never_500() {
    let ctx = spawn().await;
    let url = ctx.app.url("/api/v1/signup");
    let c = &ctx.app.client;

    let res = c.post(&url).header("content-type", "application/json").body("{\"email\": ").send().await.unwrap();
    let (status, body) = json(res).await;
    assert_eq!((status, body["error"].as_str()), (400, Some("BAD_REQUEST")), "{body}");

    let big = format!("{{\"email\": \"{}\"}}", "a".repeat(70 * 1024));
    let res = c.post(&url).header("content-type", "application/json").body(big).send().await.unwrap();
    assert_eq!(res.status(), 413);

    let res = c.post(&url).header("content-type", "text/plain").body("{}").send().await.unwrap();
    assert_eq!(res.status(), 415);

    let (status, body) =
        json(ctx.app.post_json("/api/v1/login", &json!({"email": "a@b.org", "password": "x", "extra": 1})).await).await;
    assert_eq!(status, 400, "{body}");
}

#[tokio::test]
async fn unknown_email_and_wrong_password_answer_alike() {
    let ctx = spawn().await;
    ctx.user("known@example.org", None).await;
    let wrong = ctx.login("known@example.org", "not the password").await;
    let unknown = ctx.login("nobody@example.org", "not the password").await;
    assert_eq!(wrong.0, 401);
    assert_eq!(wrong, unknown, "the two failures must be indistinguishable");
    assert_eq!(wrong.1["error"], "UNAUTHORIZED");
    // Login compares the address case-insensitively too.
    assert_eq!(ctx.login("KNOWN@example.org", "correct horse battery").await.0, 200);
}

/// Accounts letting 3 failed logins per email through in a 2-minute window.
async fn spawn_throttled_at_3() -> super::helpers::Ctx {
    spawn_with(|s| {
        s.login_throttle.max_failures = 3;
        s.login_throttle.window = Duration::from_secs(120);
    })
    .await
}

#[tokio::test]
async fn repeated_failures_are_throttled_across_instances_via_redis() {
    let ctx = spawn_throttled_at_3().await;
    ctx.user("victim@example.org", None).await;
    for _ in 0..3 {
        assert_eq!(ctx.login("victim@example.org", "guess").await.0, 401);
    }
    let res = ctx
        .app
        .post_json("/api/v1/login", &json!({"email": "Victim@example.org", "password": "correct horse battery"}))
        .await;
    assert_eq!(res.status(), 429);
    let retry: u64 = res.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=120).contains(&retry), "Retry-After {retry}");
    assert_eq!(res.json::<serde_json::Value>().await.unwrap()["error"], "TOO_MANY_REQUESTS");

    // A second instance sharing Redis sees the same lock-out; another email is unaffected.
    let settings = ctx.settings.clone();
    let other = accounts::Application::build(settings).await.unwrap();
    let other = testkit::TestApp::spawn(other.port(), move |stop| other.run_until_stopped(stop));
    let res = other.post_json("/api/v1/login", &json!({"email": "victim@example.org", "password": "guess"})).await;
    assert_eq!(res.status(), 429);
    assert_eq!(ctx.login("bystander@example.org", "whatever1").await.0, 401);
}

#[tokio::test]
async fn a_burst_of_parallel_guesses_gets_no_more_than_the_limit() {
    let ctx = spawn_throttled_at_3().await;
    ctx.user("burst@example.org", None).await;
    let ctx = &ctx;
    let statuses = futures::future::join_all(
        (0..12).map(|i| async move { ctx.login("burst@example.org", &format!("guess number {i}")).await.0 }),
    )
    .await;
    let count = |code| statuses.iter().filter(|&&s| s == code).count();
    assert_eq!((count(401), count(429)), (3, 9), "{statuses:?}");
    // Locked out: even the right password waits for the window.
    assert_eq!(ctx.login("burst@example.org", "correct horse battery").await.0, 429);
}

#[tokio::test]
async fn a_successful_login_clears_earlier_failures() {
    let ctx = spawn_with(|s| s.login_throttle.max_failures = 2).await;
    ctx.user("forgetful@example.org", None).await;
    for _ in 0..3 {
        assert_eq!(ctx.login("forgetful@example.org", "wrong guess").await.0, 401);
        assert_eq!(ctx.login("forgetful@example.org", "correct horse battery").await.0, 200);
    }
}

#[tokio::test]
async fn tokens_verify_through_the_published_jwks() {
    let ctx = spawn_with(|s| s.jwt.ttl = Duration::from_secs(900)).await;
    let TestUser { id, token, .. } = ctx.user("jwks@example.org", Some("ORGANIZER")).await;

    let res = ctx.app.get("/.well-known/jwks.json").await;
    assert_eq!(res.status(), 200);
    let jwks: serde_json::Value = res.json().await.unwrap();
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str(), key["alg"].as_str()),
        (Some("OKP"), Some("Ed25519"), Some("EdDSA"))
    );
    assert!(key["kid"].as_str().is_some_and(|k| !k.is_empty()));
    assert!(key.get("d").is_none(), "the private part must never be published");

    let verifier = JwksVerifier::new(
        ctx.app.url("/.well-known/jwks.json"),
        reqwest::Client::new(),
        TokenPolicy::default(),
        Duration::from_secs(1),
    );
    let claims = verifier.verify(&token).await.unwrap();
    assert_eq!(claims.sub.to_string(), id.to_string());
    assert_eq!(claims.role, Role::Organizer);
    assert_eq!((claims.iss.as_str(), claims.aud.as_str()), ("ticket-hub-accounts", "ticket-hub"));
    assert_eq!(claims.exp - claims.iat, 900);

    // A verifier expecting another audience refuses the same token.
    let strict = JwksVerifier::new(
        ctx.app.url("/.well-known/jwks.json"),
        reqwest::Client::new(),
        TokenPolicy { audience: "someone-else".into(), ..TokenPolicy::default() },
        Duration::from_secs(1),
    );
    assert!(strict.verify(&token).await.is_err());
}

fn b64(v: &serde_json::Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

#[tokio::test]
async fn me_refuses_every_bad_token_with_401() {
    let ctx = spawn().await;
    let TestUser { id, token: good, .. } = ctx.user("me@example.org", None).await;
    let user = accounts::domain::UserId::parse(&id.to_string()).unwrap();
    let policy = ctx.settings.jwt.policy();
    let own = accounts::keys::SigningKeys::from_pem(&ctx.key_pem, None, policy.clone(), 3600).unwrap();

    let expired = own.issue(user, Role::Customer, Utc::now() - chrono::Duration::hours(2)).unwrap().0;
    // Another key claiming this service's key id: the signature does not verify.
    let other_pem = accounts::keys::generate_pem().unwrap();
    let forged = accounts::keys::SigningKeys::from_pem(&other_pem, Some(own.kid().to_owned()), policy, 3600)
        .unwrap()
        .issue(user, Role::Admin, Utc::now())
        .unwrap()
        .0;
    let claims = json!({"sub": id, "role": "ADMIN", "iat": Utc::now().timestamp(), "exp": Utc::now().timestamp() + 600,
                        "iss": "ticket-hub-accounts", "aud": "ticket-hub"});
    let alg_none = format!("{}.{}.", b64(&json!({"alg": "none", "typ": "JWT", "kid": own.kid()})), b64(&claims));
    let hs256 =
        format!("{}.{}.c2lnbmF0dXJl", b64(&json!({"alg": "HS256", "typ": "JWT", "kid": own.kid()})), b64(&claims));
    let mut tampered = good.clone();
    tampered.insert(good.len() / 2, 'x');

    assert_eq!(ctx.me(Some(&good)).await.0, 200);
    for (what, token) in [
        ("missing", None),
        ("garbled", Some("garbage")),
        ("empty", Some("")),
        ("expired", Some(expired.as_str())),
        ("wrong signature", Some(forged.as_str())),
        ("alg none", Some(alg_none.as_str())),
        ("alg HS256", Some(hs256.as_str())),
        ("tampered", Some(tampered.as_str())),
    ] {
        let (status, body) = ctx.me(token).await;
        assert_eq!(status, 401, "{what}: {body}");
        assert_eq!(body["error"], "UNAUTHORIZED", "{what}");
    }
    let res = ctx
        .app
        .client
        .get(ctx.app.url("/api/v1/me"))
        .header("authorization", format!("Basic {good}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 401);
}
