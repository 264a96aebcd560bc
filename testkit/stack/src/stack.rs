//! [`Stack`]: accounts and orders on fresh databases (the gateway in front when asked for),
//! named users, and requests to orders.

use std::collections::BTreeMap;
use std::time::Duration;

use platform::db::Schema;
use serde_json::{Value, json};
use shard_router::ShardMap;
use testkit::{TestApp, TestDb, TestRedis, TestShards};
use uuid::Uuid;

use crate::services;

/// The password of every [`TestUser`].
pub const PASSWORD: &str = "password 123";

/// A user signed up and logged in for a test.
#[derive(Debug, Clone)]
pub struct TestUser {
    pub id: Uuid,
    pub email: String,
    /// An access token carrying the user's role.
    pub token: String,
}

/// A change to a service's settings, applied after the stack's own.
type Adjust<S> = Box<dyn FnOnce(&mut S)>;

/// What a test asks of its stack; [`StackBuilder::start`] starts it.
#[must_use = "a builder starts nothing until `start`"]
pub struct StackBuilder {
    /// Shards whose URL orders gets pointing at a closed port.
    down: Vec<String>,
    /// Shards served by another database than their fresh one (`shard` → URL).
    shard_urls: BTreeMap<String, String>,
    orders_adjust: Vec<Adjust<orders::Settings>>,
    /// `Some` when the gateway is wanted, with the adjustments to its settings.
    gateway: Option<Vec<Adjust<gateway::Settings>>>,
}

impl StackBuilder {
    /// Orders gets `shard`'s URL pointing at a closed port, as when a regional database is
    /// lost. Orders then gives up on a shard connection after 500 ms (not 10 s), so a down
    /// shard answers fast.
    pub fn down(mut self, shard: &str) -> Self {
        self.down.push(shard.to_owned());
        self
    }

    /// Orders gets `shard` served by the database at `url` (one on a private instance the
    /// test stops, say) instead of its fresh one on the shared instance.
    pub fn shard_url(mut self, shard: &str, url: &str) -> Self {
        self.shard_urls.insert(shard.to_owned(), url.to_owned());
        self
    }

    /// Adjusts orders' settings after the stack's (several calls apply in order).
    pub fn orders_settings(mut self, adjust: impl FnOnce(&mut orders::Settings) + 'static) -> Self {
        self.orders_adjust.push(Box::new(adjust));
        self
    }

    /// Starts the gateway in front of accounts and orders.
    pub fn with_gateway(mut self) -> Self {
        self.gateway.get_or_insert_with(Vec::new);
        self
    }

    /// Starts the gateway, its settings adjusted by `adjust` after the stack's.
    pub fn gateway_settings(mut self, adjust: impl FnOnce(&mut gateway::Settings) + 'static) -> Self {
        self.gateway.get_or_insert_with(Vec::new).push(Box::new(adjust));
        self
    }

    pub async fn start(self) -> Stack {
        let redis = TestRedis::new().unwrap();
        let keys = tempfile::tempdir().unwrap();
        let accounts_db = TestDb::global(Schema::Accounts).await.unwrap();
        let key = services::key_file(keys.path());
        let settings = services::accounts_settings(&accounts_db, &redis, &format!("{}accounts:", redis.prefix), key);
        let (accounts, grpc_port) = services::spawn_accounts(settings).await;
        let accounts_grpc = format!("http://127.0.0.1:{grpc_port}");

        let shards = TestShards::create().await.unwrap();
        let mut orders_settings = orders::Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            redis_url: redis.url.clone(),
            redis_key_prefix: format!("{}orders:", redis.prefix),
            accounts_jwks_url: accounts.url("/.well-known/jwks.json"),
            accounts_grpc_url: accounts_grpc.clone(),
            // A down shard must answer fast; otherwise leave room for the concurrency tests'
            // queues.
            shard_acquire_timeout: Duration::from_millis(if self.down.is_empty() { 10_000 } else { 500 }),
            placement_url: shards.placement.url.clone(),
            ..orders::Settings::default()
        };
        for adjust in self.orders_adjust {
            adjust(&mut orders_settings);
        }
        let down = self.down.iter().map(|shard| (shard.as_str(), testkit::db::DOWN_URL));
        let map = shards.map_with_urls(down.chain(self.shard_urls.iter().map(|(s, u)| (s.as_str(), u.as_str()))));
        let orders = services::spawn_orders(orders_settings.clone(), map).await;

        let gateway = match self.gateway {
            None => None,
            Some(adjustments) => {
                let mut settings = gateway::Settings {
                    http_addr: "127.0.0.1:0".parse().unwrap(),
                    accounts_url: accounts.base_url.clone(),
                    orders_url: orders.base_url.clone(),
                    redis_url: redis.url.clone(),
                    redis_key_prefix: format!("{}gateway:", redis.prefix),
                    // Generous, so a loaded machine does not turn a slow cache answer into a
                    // miss and break a test's hit/miss expectations; the outage tests set
                    // their own.
                    redis_timeout: Duration::from_millis(2000),
                    ..gateway::Settings::default()
                };
                for adjust in adjustments {
                    adjust(&mut settings);
                }
                Some((services::spawn_gateway(settings.clone(), shards.map.clone()).await, settings))
            }
        };
        Stack { gateway, orders, orders_settings, accounts, accounts_grpc, accounts_db, shards, redis, _keys: keys }
    }
}

/// Accounts and orders on fresh databases, and the gateway when the builder asked for it.
/// Dropping it stops the services and drops the databases, after the shards' teardown check
/// ([`TestShards`]: no FAILED outbox row unless `s.shards.expect_failed_outbox()`).
pub struct Stack {
    /// The gateway and the settings it was started with (kept to start another like it).
    gateway: Option<(TestApp, gateway::Settings)>,
    pub orders: TestApp,
    /// The settings orders was started with: the base of [`Stack::spawn_orders`].
    pub orders_settings: orders::Settings,
    /// Issues the tokens and serves the JWKS orders (and the gateway) check them with.
    pub accounts: TestApp,
    /// The accounts gRPC URL (orders asks it whether a customer exists).
    pub accounts_grpc: String,
    /// The accounts database, for promoting a user to ADMIN.
    pub accounts_db: TestDb,
    /// The fresh shard databases (the map before the builder's `down`/`shard_url`).
    pub shards: TestShards,
    /// One prefix for the stack; each service keys under `<prefix><service>:`.
    pub redis: TestRedis,
    /// Holds accounts' signing key.
    _keys: tempfile::TempDir,
}

impl Stack {
    /// Accounts and orders with the stack's defaults.
    pub async fn start() -> Self {
        Self::builder().start().await
    }

    pub fn builder() -> StackBuilder {
        StackBuilder { down: Vec::new(), shard_urls: BTreeMap::new(), orders_adjust: Vec::new(), gateway: None }
    }

    /// The gateway; panics when the builder did not ask for it.
    pub fn gateway(&self) -> &TestApp {
        &self.gateway.as_ref().expect("a stack started `with_gateway()`").0
    }

    /// The settings the gateway was started with.
    pub fn gateway_settings(&self) -> &gateway::Settings {
        &self.gateway.as_ref().expect("a stack started `with_gateway()`").1
    }

    /// Another orders process beside the stack's, on `map`: the stack's orders settings
    /// (accounts, placement, Redis prefix) adjusted by `adjust`.
    pub async fn spawn_orders(&self, map: ShardMap, adjust: impl FnOnce(&mut orders::Settings)) -> TestApp {
        let mut settings = self.orders_settings.clone();
        adjust(&mut settings);
        services::spawn_orders(settings, map).await
    }

    /// Another gateway with `settings`, on the stack's shard map.
    pub async fn spawn_gateway(&self, settings: gateway::Settings) -> TestApp {
        services::spawn_gateway(settings, self.shards.map.clone()).await
    }

    /// A stack with one event in `region` whose first ticket type has `stock` tickets, and the
    /// ids of both: most order tests' starting point.
    pub async fn with_stock(region: &str, stock: i64) -> (Self, String, String) {
        let s = Self::start().await;
        let (event, tt) = s.event_with_stock(region, stock).await;
        (s, event, tt)
    }

    /// An event with `stock` tickets in NA and one in SA: `((na_event, na_tt), (sa_event, sa_tt))`.
    pub async fn stock_in_na_and_sa(&self, stock: i64) -> ((String, String), (String, String)) {
        (self.event_with_stock("NA", stock).await, self.event_with_stock("SA", stock).await)
    }

    /// A new user with `role`, signed up and logged in at accounts.
    pub async fn user(&self, role: &str) -> TestUser {
        let email = format!("{}@example.org", testkit::unique_id());
        let body = json!({"email": email, "name": "Test User", "password": PASSWORD, "role": role});
        let res = self.accounts.post_json("/api/v1/signup", &body).await;
        assert_eq!(res.status(), 201);
        let id = res.json::<Value>().await.unwrap()["userId"].as_str().unwrap().parse().unwrap();
        let token = self.login(&email).await;
        TestUser { id, email, token }
    }

    /// The tokens of a new ORGANIZER and a new CUSTOMER, the two roles most tests act as.
    pub async fn organizer_and_customer(&self) -> (String, String) {
        (self.user("ORGANIZER").await.token, self.user("CUSTOMER").await.token)
    }

    /// An access token for `email` (password [`PASSWORD`]).
    pub async fn login(&self, email: &str) -> String {
        let res = self.accounts.post_json("/api/v1/login", &json!({"email": email, "password": PASSWORD})).await;
        assert_eq!(res.status(), 200, "login {email}");
        res.json::<Value>().await.unwrap()["accessToken"].as_str().unwrap().to_owned()
    }

    /// A new ADMIN: signed up as a customer, made ADMIN, logged in again for a token with the
    /// role.
    pub async fn admin(&self) -> TestUser {
        let user = self.user("CUSTOMER").await;
        self.make_admin(user.id).await;
        TestUser { token: self.login(&user.email).await, ..user }
    }

    /// Makes user `id` an ADMIN in the accounts database (the only other way to one is
    /// `accounts create-admin`); tokens issued before keep the old role.
    pub async fn make_admin(&self, id: Uuid) {
        sqlx::query("update users set role = 'ADMIN' where id = $1")
            .bind(id)
            .execute(&self.accounts_db.pool)
            .await
            .unwrap();
    }

    /// POST to orders with an optional token: status, JSON body (null if none), headers.
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

    /// GET from orders without a token: status and JSON body.
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let res = self.orders.get(path).await;
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    /// GET from orders with a bearer token.
    pub async fn get_as(&self, path: &str, token: &str) -> (u16, Value) {
        let res = self.orders.client.get(self.orders.url(path)).bearer_auth(token).send().await.unwrap();
        (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
    }

    /// An event of `organizer` in `region` with one ticket type "GA" of `stock` at 2500
    /// cents: the event id and the ticket type id.
    pub async fn event_by(&self, organizer: &TestUser, region: &str, stock: i64) -> (String, String) {
        let mut body = event_body(region);
        body["ticketTypes"] = json!([{"name": "GA", "priceInCents": 2500, "totalQuantity": stock}]);
        let (status, created, _) = self.post("/api/v1/events", Some(&organizer.token), &body).await;
        assert_eq!(status, 201, "{created}");
        let id = created["eventId"].as_str().unwrap().to_owned();
        let (_, got) = self.get(&format!("/api/v1/events/{id}")).await;
        (id, got["ticketTypes"][0]["id"].as_str().unwrap().to_owned())
    }

    /// [`Stack::event_by`] a new organizer.
    pub async fn event_with_stock(&self, region: &str, stock: i64) -> (String, String) {
        self.event_by(&self.user("ORGANIZER").await, region, stock).await
    }

    /// Places an order, with `key` as `Idempotency-Key` if given: status and body.
    pub async fn order(&self, token: &str, key: Option<&str>, body: &Value) -> (u16, Value) {
        let mut req = self.orders.client.post(self.orders.url("/api/v1/orders")).bearer_auth(token).json(body);
        if let Some(k) = key {
            req = req.header("Idempotency-Key", k);
        }
        let res = req.send().await.unwrap();
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
}

/// An order body: `quantity` tickets of `ticket_type` of `event`, placed in `region`.
pub fn order_body(region: &str, event: &str, ticket_type: &str, quantity: i64) -> Value {
    json!({"region": region, "eventId": event, "ticketTypeId": ticket_type, "quantity": quantity})
}

/// A valid event body in `region`: two ticket types, Standard (100 at 5000 cents) and VIP
/// (20 at 15000).
pub fn event_body(region: &str) -> Value {
    json!({
        "region": region, "title": "Indie Night", "description": "Loud.", "venue": "Downtown",
        "startsAt": "2026-01-20T20:00:00Z", "endsAt": "2026-01-20T23:00:00-00:00",
        "ticketTypes": [
            {"name": "Standard", "priceInCents": 5000, "totalQuantity": 100},
            {"name": "VIP", "priceInCents": 15000, "totalQuantity": 20}
        ]
    })
}
