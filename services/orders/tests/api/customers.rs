//! The customer check's positive cache, against a real accounts: a second order within the
//! TTL asks accounts nothing, a zero TTL asks every time, and a demoted or deleted account is
//! refused once the TTL has passed.

use std::time::Duration;

use test_stack::{Stack, order_body};

/// `GetUserById` calls accounts answered so far (the process's one recorder holds the metrics
/// of both services).
async fn accounts_calls(s: &Stack) -> f64 {
    let text = s.orders.get("/metrics").await.text().await.unwrap();
    testkit::app::metric_value(&text, "grpc_requests_total", &[("method", "GetUserById")])
}

async fn cache_outcomes(s: &Stack, outcome: &str) -> f64 {
    let text = s.orders.get("/metrics").await.text().await.unwrap();
    testkit::app::metric_value(&text, "orders_customer_cache_total", &[("outcome", outcome)])
}

async fn stack_with_ttl(ttl: Duration) -> (Stack, String, String) {
    let s = Stack::builder().orders_settings(move |o| o.customer_cache_ttl = ttl).start().await;
    let (event, tt) = s.event_with_stock("NA", 50).await;
    (s, event, tt)
}

#[tokio::test]
async fn a_second_order_within_the_ttl_does_not_ask_accounts_again() {
    // Long enough that a slow machine stays within it.
    let (s, event, tt) = stack_with_ttl(Duration::from_secs(60)).await;
    let customer = s.user("CUSTOMER").await.token;
    let before = accounts_calls(&s).await;
    for _ in 0..3 {
        assert_eq!(s.order(&customer, None, &order_body("NA", &event, &tt, 1)).await.0, 201);
    }
    assert_eq!(accounts_calls(&s).await - before, 1.0, "one GetUserById for three orders");
    assert_eq!((cache_outcomes(&s, "miss").await, cache_outcomes(&s, "hit").await), (1.0, 2.0));
}

#[tokio::test]
async fn with_a_zero_ttl_every_order_asks_accounts() {
    let (s, event, tt) = stack_with_ttl(Duration::ZERO).await;
    let customer = s.user("CUSTOMER").await.token;
    let before = accounts_calls(&s).await;
    for _ in 0..3 {
        assert_eq!(s.order(&customer, None, &order_body("NA", &event, &tt, 1)).await.0, 201);
    }
    assert_eq!(accounts_calls(&s).await - before, 3.0);
    assert_eq!(cache_outcomes(&s, "hit").await, 0.0);
}

#[tokio::test]
async fn a_demoted_or_deleted_customer_is_refused_once_the_ttl_has_passed() {
    let ttl = Duration::from_secs(1);
    let (s, event, tt) = stack_with_ttl(ttl).await;
    let body = order_body("NA", &event, &tt, 1);
    let (demoted, deleted) = (s.user("CUSTOMER").await, s.user("CUSTOMER").await);
    assert_eq!(s.order(&demoted.token, None, &body).await.0, 201);
    assert_eq!(s.order(&deleted.token, None, &body).await.0, 201);

    // accounts has no API to disable or delete a user: change its database, as an operator would.
    s.make_admin(demoted.id).await;
    sqlx::query("delete from users where id = $1").bind(deleted.id).execute(&s.accounts_db.pool).await.unwrap();

    tokio::time::sleep(ttl + Duration::from_millis(100)).await;
    let (status, answer) = s.order(&demoted.token, None, &body).await;
    assert_eq!((status, answer["error"].as_str()), (403, Some("FORBIDDEN")), "{answer}");
    let (status, answer) = s.order(&deleted.token, None, &body).await;
    assert_eq!((status, answer["error"].as_str()), (404, Some("NOT_FOUND")), "{answer}");
    // A refusal is not cached: asked again, refused again, by accounts.
    let before = accounts_calls(&s).await;
    assert_eq!(s.order(&demoted.token, None, &body).await.0, 403);
    assert_eq!(accounts_calls(&s).await - before, 1.0);
}
