//! A real accounts service for tokens, and orders on fresh shard databases.

use std::collections::BTreeMap;

use platform::db::Schema;
use serde_json::{Value, json};
use shard_router::ShardMap;
use testkit::{TestApp, TestDb, TestRedis, TestShards};

pub struct Stack {
    pub accounts: TestApp,
    pub orders: TestApp,
    pub shards: TestShards,
    _keep: (TestDb, TestRedis, tempfile::TempDir),
}

pub async fn accounts() -> (TestApp, (TestDb, TestRedis, tempfile::TempDir)) {
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
    (TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop)), (db, redis, dir))
}

pub async fn orders(map: ShardMap, accounts: &TestApp, redis: &TestRedis) -> TestApp {
    let settings = orders::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        redis_url: redis.url.clone(),
        accounts_jwks_url: accounts.url("/.well-known/jwks.json"),
        shard_acquire_timeout_ms: 500,
        ..orders::Settings::default()
    };
    let app = orders::Application::build(settings, map).await.unwrap();
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

/// Accounts plus orders; `down` names shards whose URL points at a closed port.
pub async fn stack_with_down(down: &[&str]) -> Stack {
    let (accounts, keep) = accounts().await;
    let shards = TestShards::create().await.unwrap();
    let overrides: BTreeMap<String, String> = down
        .iter()
        .map(|s| (format!("{}_url", s.replace('-', "_")), "postgres://postgres@127.0.0.1:1/ticket_hub".to_owned()))
        .collect();
    let map = shards.map.clone().with_url_overrides(overrides).unwrap();
    let orders = orders(map, &accounts, &keep.1).await;
    Stack { accounts, orders, shards, _keep: keep }
}

pub async fn stack() -> Stack {
    stack_with_down(&[]).await
}

impl Stack {
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
