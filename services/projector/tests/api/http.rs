//! The read API against real accounts (tokens, JWKS) and orders (who organizes an event):
//! who may read what, and 400s naming the field for bad input.

use platform::db::Schema;
use serde_json::{Value, json};
use testkit::{TestApp, TestDb, TestKafka, TestRedis, TestShards};
use uuid::Uuid;

use super::helpers::{Order, Producer, g, settings, spawn, wait_caught_up};

/// Accounts and orders, started for real, and what must live as long as they do.
struct Identity {
    accounts: TestApp,
    orders: TestApp,
    accounts_db: TestDb,
    _keep: (TestRedis, tempfile::TempDir, TestShards),
}

/// A logged-in user.
struct User {
    id: Uuid,
    token: String,
}

impl Identity {
    async fn start() -> Self {
        let (db, redis) = (TestDb::global(Schema::Accounts).await.unwrap(), TestRedis::new().unwrap());
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("jwt.pem");
        accounts::keys::generate_file(&key).unwrap();
        let mut s = accounts::Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            grpc_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: db.url.clone(),
            redis_url: redis.url.clone(),
            redis_key_prefix: redis.prefix.clone(),
            argon2: accounts::settings::Argon2Settings { memory_kib: 1024, iterations: 1, parallelism: 1 },
            ..Default::default()
        };
        s.jwt.private_key_file = Some(key);
        let app = accounts::Application::build(s).await.unwrap();
        let grpc = format!("http://127.0.0.1:{}", app.grpc_port());
        let accounts = TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop));
        let shards = TestShards::create().await.unwrap();
        let settings = orders::Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            redis_url: redis.url.clone(),
            redis_key_prefix: redis.prefix.clone(),
            accounts_jwks_url: accounts.url("/.well-known/jwks.json"),
            accounts_grpc_url: grpc,
            placement_url: shards.placement.url.clone(),
            ..orders::Settings::default()
        };
        let app = orders::Application::build(settings, shards.map.clone()).await.unwrap();
        let orders = TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop));
        Self { accounts, orders, accounts_db: db, _keep: (redis, dir, shards) }
    }

    async fn user(&self, role: &str) -> User {
        let email = format!("{}@example.org", testkit::unique_id());
        // ADMIN is not a role one signs up for: promoted in the accounts database afterwards.
        let signup_role = if role == "ADMIN" { "CUSTOMER" } else { role };
        let body = json!({"email": email, "name": "U", "password": "password 123", "role": signup_role});
        let res = self.accounts.post_json("/api/v1/signup", &body).await;
        assert_eq!(res.status(), 201);
        let id: Uuid = res.json::<Value>().await.unwrap()["userId"].as_str().unwrap().parse().unwrap();
        if role == "ADMIN" {
            sqlx::query("update users set role = 'ADMIN' where id = $1")
                .bind(id)
                .execute(&self.accounts_db.pool)
                .await
                .unwrap();
        }
        let login: Value = self
            .accounts
            .post_json("/api/v1/login", &json!({"email": email, "password": "password 123"}))
            .await
            .json()
            .await
            .unwrap();
        User { id, token: login["accessToken"].as_str().unwrap().to_owned() }
    }

    /// An NA event of `organizer` with one ticket type: its id and the ticket type's.
    async fn event(&self, organizer: &User) -> (Uuid, Uuid) {
        let body = json!({
            "region": "NA", "title": "Indie Night", "description": "Loud.", "venue": "Downtown",
            "startsAt": "2026-01-20T20:00:00Z", "endsAt": "2026-01-20T23:00:00Z",
            "ticketTypes": [{"name": "GA", "priceInCents": 2500, "totalQuantity": 100}]
        });
        let res = self
            .orders
            .client
            .post(self.orders.url("/api/v1/events"))
            .bearer_auth(&organizer.token)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
        let id = res.json::<Value>().await.unwrap()["eventId"].as_str().unwrap().to_owned();
        let got: Value = self.orders.get(&format!("/api/v1/events/{id}")).await.json().await.unwrap();
        (id.parse().unwrap(), got["ticketTypes"][0]["id"].as_str().unwrap().parse().unwrap())
    }
}

async fn get(app: &TestApp, path: &str, user: Option<&User>) -> (u16, Value) {
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
    let id = Identity::start().await;
    let (db, kafka) = (TestDb::global(Schema::ReadModels).await.unwrap(), TestKafka::new(2).await.unwrap());
    let app = spawn(projector::Settings {
        accounts_jwks_url: id.accounts.url("/.well-known/jwks.json"),
        orders_url: id.orders.base_url.clone(),
        ..settings(&db.url, &kafka)
    })
    .await;
    let (customer, other, organizer, rival, admin) = (
        id.user("CUSTOMER").await,
        id.user("CUSTOMER").await,
        id.user("ORGANIZER").await,
        id.user("ORGANIZER").await,
        id.user("ADMIN").await,
    );
    let (event, tt) = id.event(&organizer).await;

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
