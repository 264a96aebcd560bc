//! A real accounts service for tokens, and orders on fresh shard databases.

use std::collections::BTreeMap;

use platform::db::Schema;
use serde_json::{Value, json};
use shard_router::ShardMap;
use testkit::{TestApp, TestDb, TestRedis, TestShards};

pub struct Stack {
    pub accounts: TestApp,
    /// The accounts gRPC URL, for tests that start a second orders service.
    pub accounts_grpc: String,
    pub orders: TestApp,
    pub shards: TestShards,
    _keep: (TestDb, TestRedis, tempfile::TempDir),
}

/// A real accounts service: its HTTP app, its gRPC URL, and what must live as long as it.
pub async fn accounts() -> (TestApp, String, (TestDb, TestRedis, tempfile::TempDir)) {
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
    (TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop)), grpc, (db, redis, dir))
}

/// An orders service on `map`, following the live map in `placement` (a URL).
pub async fn orders(
    map: ShardMap,
    placement: &str,
    accounts: &TestApp,
    grpc: &str,
    redis: (&str, &str),
    acquire_ms: u64,
) -> TestApp {
    orders_with(map, placement, accounts, grpc, redis, acquire_ms, |_| {}).await
}

/// The same with settings adjusted by `adjust`.
pub async fn orders_with(
    map: ShardMap,
    placement: &str,
    accounts: &TestApp,
    grpc: &str,
    redis: (&str, &str),
    acquire_ms: u64,
    adjust: impl FnOnce(&mut orders::Settings),
) -> TestApp {
    let mut settings = orders::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        redis_url: redis.0.to_owned(),
        redis_key_prefix: redis.1.to_owned(),
        accounts_jwks_url: accounts.url("/.well-known/jwks.json"),
        accounts_grpc_url: grpc.to_owned(),
        shard_acquire_timeout: std::time::Duration::from_millis(acquire_ms),
        placement_url: placement.to_owned(),
        ..orders::Settings::default()
    };
    adjust(&mut settings);
    let app = orders::Application::build(settings, map).await.unwrap();
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

/// Accounts plus orders; `down` names shards whose URL points at a closed port.
pub async fn stack_with_down(down: &[&str]) -> Stack {
    stack_built(down, |_| {}).await
}

/// Accounts plus orders with settings adjusted by `adjust`.
pub async fn stack_adjusted(adjust: impl FnOnce(&mut orders::Settings)) -> Stack {
    stack_built(&[], adjust).await
}

async fn stack_built(down: &[&str], adjust: impl FnOnce(&mut orders::Settings)) -> Stack {
    let (accounts, grpc, keep) = accounts().await;
    let shards = TestShards::create().await.unwrap();
    let overrides: BTreeMap<String, String> = down
        .iter()
        .map(|s| (format!("{}_url", s.replace('-', "_")), "postgres://postgres@127.0.0.1:1/ticket_hub".to_owned()))
        .collect();
    let map = shards.map.clone().with_url_overrides(overrides).unwrap();
    // A down shard must answer fast; otherwise leave room for the concurrency tests' queues.
    let acquire_ms = if down.is_empty() { 10_000 } else { 500 };
    let orders =
        orders_with(map, &shards.placement.url, &accounts, &grpc, (&keep.1.url, &keep.1.prefix), acquire_ms, adjust)
            .await;
    Stack { accounts, accounts_grpc: grpc, orders, shards, _keep: keep }
}

pub async fn stack() -> Stack {
    stack_with_down(&[]).await
}

impl Stack {
    pub fn from_parts(
        accounts: TestApp,
        accounts_grpc: String,
        orders: TestApp,
        shards: TestShards,
        keep: (TestDb, TestRedis, tempfile::TempDir),
    ) -> Self {
        Self { accounts, accounts_grpc, orders, shards, _keep: keep }
    }

    /// A new user with `role`, logged in: its id and token.
    pub async fn user(&self, role: &str) -> (String, String) {
        let email = format!("{}@example.org", testkit::unique_id());
        let res = self
            .accounts
            .post_json(
                "/api/v1/signup",
                &json!({"email": email, "name": "U", "password": "password 123", "role": role}),
            )
            .await;
        assert_eq!(res.status(), 201);
        let id = res.json::<Value>().await.unwrap()["userId"].as_str().unwrap().to_owned();
        let login: Value = self
            .accounts
            .post_json("/api/v1/login", &json!({"email": email, "password": "password 123"}))
            .await
            .json()
            .await
            .unwrap();
        (id, login["accessToken"].as_str().unwrap().to_owned())
    }

    /// A new ADMIN, logged in: signed up, then promoted in the accounts database (the only
    /// other way to one is `accounts create-admin`).
    pub async fn admin(&self) -> (String, String) {
        let email = format!("{}@example.org", testkit::unique_id());
        let body = json!({"email": email, "name": "A", "password": "password 123"});
        let res = self.accounts.post_json("/api/v1/signup", &body).await;
        assert_eq!(res.status(), 201);
        let id = res.json::<Value>().await.unwrap()["userId"].as_str().unwrap().to_owned();
        sqlx::query("update users set role = 'ADMIN' where id = $1::uuid")
            .bind(&id)
            .execute(&self._keep.0.pool)
            .await
            .unwrap();
        let login: Value = self
            .accounts
            .post_json("/api/v1/login", &json!({"email": email, "password": "password 123"}))
            .await
            .json()
            .await
            .unwrap();
        (id, login["accessToken"].as_str().unwrap().to_owned())
    }

    pub async fn post(
        &self,
        path: &str,
        token: Option<&str>,
        body: &Value,
    ) -> (u16, Value, reqwest::header::HeaderMap) {
        let mut req = self.orders.client.post(self.orders.url(path)).json(body);
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let res = req.send().await.unwrap();
        let (status, headers) = (res.status().as_u16(), res.headers().clone());
        (status, res.json().await.unwrap_or(Value::Null), headers)
    }

    /// Creates an NA (or `region`) event with one ticket type of `stock` at 2500 cents; returns
    /// the event and ticket type ids.
    pub async fn event_with_stock(&self, region: &str, stock: i64) -> (String, String) {
        let (_, organizer) = self.user("ORGANIZER").await;
        let mut body = event(region);
        body["ticketTypes"] = json!([{"name": "GA", "priceInCents": 2500, "totalQuantity": stock}]);
        let (status, created, _) = self.post("/api/v1/events", Some(&organizer), &body).await;
        assert_eq!(status, 201, "{created}");
        let id = created["eventId"].as_str().unwrap().to_owned();
        let (_, got) = self.get(&format!("/api/v1/events/{id}")).await;
        (id, got["ticketTypes"][0]["id"].as_str().unwrap().to_owned())
    }

    /// Places an order; returns status and body.
    pub async fn order(&self, token: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.orders.client.post(self.orders.url("/api/v1/orders")).bearer_auth(token).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    /// GET with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> (u16, Value) {
        let res = self.orders.client.get(self.orders.url(path)).bearer_auth(token).send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    /// POST /api/v1/orders/{id}/cancel.
    pub async fn cancel(&self, token: &str, id: &str) -> (u16, Value) {
        let (status, body, _) = self.post(&format!("/api/v1/orders/{id}/cancel"), Some(token), &json!({})).await;
        (status, body)
    }

    /// POST /api/v1/orders/{id}/pay.
    pub async fn pay(&self, token: &str, id: &str) -> (u16, Value) {
        let (status, body, _) = self.post(&format!("/api/v1/orders/{id}/pay"), Some(token), &json!({})).await;
        (status, body)
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self.orders.get(path).await;
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }
}

/// A valid event body in `region`.
pub fn event(region: &str) -> Value {
    json!({
        "region": region, "title": "Indie Night", "description": "Loud.", "venue": "Downtown",
        "startsAt": "2026-01-20T20:00:00Z", "endsAt": "2026-01-20T23:00:00-00:00",
        "ticketTypes": [
            {"name": "Standard", "priceInCents": 5000, "totalQuantity": 100},
            {"name": "VIP", "priceInCents": 15000, "totalQuantity": 20}
        ]
    })
}

pub fn fields(body: &Value) -> Vec<String> {
    body["details"]["fields"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}
