//! A stack per test: accounts and orders on fresh databases, the gateway in front, and typed
//! GraphQL helpers.

use std::time::Duration;

use platform::db::Schema;
use serde_json::{Value, json};
use testkit::{TestApp, TestDb, TestRedis, TestShards};

pub struct Stack {
    pub gateway: TestApp,
    /// Kept running for the test's lifetime.
    pub accounts: TestApp,
    pub orders: Option<TestApp>,
    pub settings: gateway::Settings,
    pub accounts_db: TestDb,
    pub shards: TestShards,
    pub redis: TestRedis,
    _keys: tempfile::TempDir,
}

/// The stack with the gateway's default settings (Redis: the shared one, a fresh prefix).
pub async fn stack() -> Stack {
    stack_with(|_| {}).await
}

/// The stack with the gateway's settings adjusted by `adjust` (after the test defaults).
pub async fn stack_with(adjust: impl FnOnce(&mut gateway::Settings)) -> Stack {
    build(adjust, &[]).await
}

/// The stack with the shards in `down` unreachable for orders (their URL points at a closed
/// port), as when a regional database is lost.
pub async fn stack_with_down(down: &[&str]) -> Stack {
    build(|_| {}, down).await
}

async fn build(adjust: impl FnOnce(&mut gateway::Settings), down: &[&str]) -> Stack {
    let redis = TestRedis::new().unwrap();
    let accounts_db = TestDb::global(Schema::Accounts).await.unwrap();
    let shards = TestShards::create().await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("jwt.pem");
    accounts::keys::generate_file(&key).unwrap();
    let mut settings = accounts::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: accounts_db.url.clone(),
        redis_url: redis.url.clone(),
        redis_key_prefix: format!("{}accounts:", redis.prefix),
        argon2: accounts::settings::Argon2Settings { memory_kib: 1024, iterations: 1, parallelism: 1 },
        ..Default::default()
    };
    settings.jwt.private_key_file = Some(key);
    let accounts = accounts::Application::build(settings).await.unwrap();
    let grpc = format!("http://127.0.0.1:{}", accounts.grpc_port());
    let accounts = TestApp::spawn(accounts.port(), move |stop| accounts.run_until_stopped(stop));
    let overrides = down
        .iter()
        .map(|s| (format!("{}_url", s.replace('-', "_")), "postgres://postgres@127.0.0.1:1/ticket_hub".to_owned()))
        .collect();
    let orders = orders::Application::build(
        orders::Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            redis_url: redis.url.clone(),
            redis_key_prefix: format!("{}orders:", redis.prefix),
            accounts_jwks_url: accounts.url("/.well-known/jwks.json"),
            accounts_grpc_url: grpc,
            shard_acquire_timeout: std::time::Duration::from_millis(if down.is_empty() { 10_000 } else { 500 }),
            placement_url: shards.placement.url.clone(),
            ..orders::Settings::default()
        },
        shards.map.clone().with_url_overrides(overrides).unwrap(),
    )
    .await
    .unwrap();
    let orders = TestApp::spawn(orders.port(), move |stop| orders.run_until_stopped(stop));

    let mut settings = gateway::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        accounts_url: accounts.base_url.clone(),
        orders_url: orders.base_url.clone(),
        redis_url: redis.url.clone(),
        redis_key_prefix: format!("{}gateway:", redis.prefix),
        // Generous, so a loaded machine does not turn a slow cache answer into a miss and
        // break a test's hit/miss expectations; the outage tests set their own.
        redis_timeout: Duration::from_millis(2000),
        ..gateway::Settings::default()
    };
    adjust(&mut settings);
    let gateway = spawn_gateway(settings.clone(), &shards).await;
    Stack { gateway, accounts, orders: Some(orders), settings, accounts_db, shards, redis, _keys: keys }
}

pub async fn spawn_gateway(settings: gateway::Settings, shards: &TestShards) -> TestApp {
    let app = gateway::Application::build(settings, shards.map.clone()).await.expect("build gateway");
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

/// The `extensions.code` of the first error, if any.
pub fn code(res: &Value) -> Option<&str> {
    res["errors"][0]["extensions"]["code"].as_str()
}

/// Asserts the response has no errors and returns its `data`.
pub fn data(res: &Value) -> &Value {
    assert!(res["errors"].is_null(), "unexpected errors: {res}");
    &res["data"]
}

/// One value of a Prometheus counter: the sum of the samples of `name` carrying every label
/// in `labels` (`key="value"` pairs).
pub fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']))
        .filter(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// A request to the gateway: optional token and extra headers.
#[derive(Default)]
pub struct Req<'a> {
    pub token: Option<&'a str>,
    pub headers: Vec<(&'a str, String)>,
}

impl Stack {
    /// POSTs one operation; returns the whole response body.
    pub async fn gql(&self, token: Option<&str>, query: &str, variables: Value) -> Value {
        self.gql_req(Req { token, ..Req::default() }, query, variables).await.1
    }

    pub async fn gql_req(&self, req: Req<'_>, query: &str, variables: Value) -> (reqwest::header::HeaderMap, Value) {
        let mut r = self.gateway.client.post(self.gateway.url("/graphql")).json(&json!({
            "query": query, "variables": variables,
        }));
        if let Some(t) = req.token {
            r = r.bearer_auth(t);
        }
        for (k, v) in req.headers {
            r = r.header(k, v);
        }
        let res = tokio::time::timeout(Duration::from_secs(30), r.send()).await.expect("gateway answers").unwrap();
        assert_eq!(res.status(), 200, "GraphQL answers 200 even with errors");
        let headers = res.headers().clone();
        (headers, res.json().await.unwrap())
    }

    /// A new user with `role` signed up and logged in through the gateway: id, email, token.
    pub async fn user(&self, role: &str) -> (String, String, String) {
        let email = format!("{}@example.org", testkit::unique_id());
        let res = self
            .gql(
                None,
                "mutation($input: SignupInput!) { signup(input: $input) { userId } }",
                json!({"input": {"email": email, "name": "Test User", "password": "password 123", "role": role}}),
            )
            .await;
        let id = data(&res)["signup"]["userId"].as_str().unwrap().to_owned();
        let token = self.login(&email).await;
        (id, email, token)
    }

    pub async fn login(&self, email: &str) -> String {
        let res = self
            .gql(
                None,
                "mutation($input: LoginInput!) { login(input: $input) { accessToken expiresAt } }",
                json!({"input": {"email": email, "password": "password 123"}}),
            )
            .await;
        data(&res)["login"]["accessToken"].as_str().unwrap().to_owned()
    }

    /// A new ADMIN: signed up, promoted in the accounts database (the only other way is
    /// `accounts create-admin`), logged in again for a token with the role.
    pub async fn admin(&self) -> (String, String) {
        let (id, email, _) = self.user("CUSTOMER").await;
        sqlx::query("update users set role = 'ADMIN' where id = $1::uuid")
            .bind(&id)
            .execute(&self.accounts_db.pool)
            .await
            .unwrap();
        (id, self.login(&email).await)
    }

    /// Creates an event in `region` with one ticket type "GA" of `stock` at 2500 cents; returns
    /// the event id and the ticket type id.
    pub async fn event(&self, organizer: &str, region: &str, stock: i64) -> (String, String) {
        let res = self
            .gql(
                Some(organizer),
                CREATE_EVENT,
                json!({"input": {
                    "region": region, "title": "Indie Night", "venue": "Downtown",
                    "startsAt": "2027-01-20T20:00:00Z", "endsAt": "2027-01-20T23:00:00Z",
                    "ticketTypes": [{"name": "GA", "priceInCents": 2500, "totalQuantity": stock}],
                }}),
            )
            .await;
        let event = data(&res)["createEvent"]["eventId"].as_str().unwrap().to_owned();
        let res =
            self.gql(None, "query($id: ID!) { event(id: $id) { ticketTypes { id } } }", json!({"id": event})).await;
        let tt = data(&res)["event"]["ticketTypes"][0]["id"].as_str().unwrap().to_owned();
        (event, tt)
    }

    /// Places an order, with `key` as `Idempotency-Key` if given; returns the whole response.
    pub async fn order(&self, token: &str, key: Option<&str>, region: &str, event: &str, tt: &str, qty: i32) -> Value {
        let mut req = Req { token: Some(token), ..Req::default() };
        if let Some(k) = key {
            req.headers.push(("Idempotency-Key", k.to_owned()));
        }
        let vars = json!({"input": {"region": region, "eventId": event, "ticketTypeId": tt, "quantity": qty}});
        self.gql_req(req, CREATE_ORDER, vars).await.1
    }

    /// The remaining stock of the first ticket type of `event`, through `event(id)`.
    pub async fn remaining(&self, event: &str) -> i64 {
        let res = self
            .gql(None, "query($id: ID!) { event(id: $id) { ticketTypes { remainingQuantity } } }", json!({"id": event}))
            .await;
        data(&res)["event"]["ticketTypes"][0]["remainingQuantity"].as_i64().unwrap()
    }

    pub async fn metrics(&self) -> String {
        self.gateway.get("/metrics").await.text().await.unwrap()
    }

    /// Keys under the gateway's Redis prefix matching `pattern` (after the prefix).
    pub async fn redis_keys(&self, pattern: &str) -> Vec<String> {
        let mut conn = self.redis.pool.get().await.unwrap();
        redis::cmd("KEYS")
            .arg(format!("{}{pattern}", self.settings.redis_key_prefix))
            .query_async(&mut *conn)
            .await
            .unwrap()
    }
}

pub const CREATE_EVENT: &str = "mutation CreateEvent($input: CreateEventInput!) {
  createEvent(input: $input) { eventId region }
}";

pub const CREATE_ORDER: &str = "mutation CreateOrder($input: CreateOrderInput!) {
  createOrder(input: $input) { orderId totalPriceInCents region }
}";
