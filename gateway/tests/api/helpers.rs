//! A stack per test: accounts and orders on fresh databases, the gateway in front, and typed
//! GraphQL helpers.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use serde_json::{Value, json};
use test_stack::TestUser;
use testkit::TestApp;
use tokio::task::JoinHandle;

/// [`test_stack::Stack`] with the gateway, and GraphQL requests to it.
pub struct Stack(test_stack::Stack);

impl Deref for Stack {
    type Target = test_stack::Stack;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for Stack {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

/// The stack with the gateway's default settings (Redis: the shared one, a fresh prefix).
pub async fn stack() -> Stack {
    Stack(test_stack::Stack::builder().with_gateway().start().await)
}

/// The stack with the gateway's settings adjusted by `adjust` (after the test defaults).
pub async fn stack_with(adjust: impl FnOnce(&mut gateway::Settings) + 'static) -> Stack {
    Stack(test_stack::Stack::builder().gateway_settings(adjust).start().await)
}

/// The stack with the shards in `down` unreachable for orders (their URL points at a closed
/// port), as when a regional database is lost.
pub async fn stack_with_down(down: &str) -> Stack {
    Stack(test_stack::Stack::builder().down(down).with_gateway().start().await)
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
        post_gql(self.gateway(), req, query, variables).await
    }

    /// A gateway like the stack's (the same cache) but in front of an orders address that
    /// accepts connections and never answers, with a 500 ms downstream timeout; the silent
    /// listener runs until the returned task is aborted. The stack's own gateway keeps the
    /// default timeout, so a loaded machine cannot make its calls time out.
    pub async fn silent_orders_gateway(&self) -> (TestApp, JoinHandle<()>) {
        let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let orders_url = format!("http://{}", silent.local_addr().unwrap());
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((conn, _)) = silent.accept().await {
                open.push(conn);
            }
        });
        let settings = gateway::Settings {
            orders_url,
            downstream_timeout: Duration::from_millis(500),
            ..self.gateway_settings().clone()
        };
        (self.spawn_gateway(settings).await, held)
    }

    /// A new user with `role` signed up and logged in through the gateway.
    pub async fn user(&self, role: &str) -> TestUser {
        let email = format!("{}@example.org", testkit::unique_id());
        let res = self
            .gql(
                None,
                "mutation($input: SignupInput!) { signup(input: $input) { userId } }",
                json!({"input": {"email": email, "name": "Test User", "password": test_stack::stack::PASSWORD, "role": role}}),
            )
            .await;
        let id = data(&res)["signup"]["userId"].as_str().unwrap().parse().unwrap();
        let token = self.login(&email).await;
        TestUser { id, email, token }
    }

    pub async fn login(&self, email: &str) -> String {
        let res = self
            .gql(
                None,
                "mutation($input: LoginInput!) { login(input: $input) { accessToken expiresAt } }",
                json!({"input": {"email": email, "password": test_stack::stack::PASSWORD}}),
            )
            .await;
        data(&res)["login"]["accessToken"].as_str().unwrap().to_owned()
    }

    /// A new ADMIN through the gateway: signed up, promoted in the accounts database, logged
    /// in again for a token with the role.
    pub async fn admin(&self) -> TestUser {
        let user = self.user("CUSTOMER").await;
        self.make_admin(user.id).await;
        TestUser { token: self.login(&user.email).await, ..user }
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
        self.gateway().get("/metrics").await.text().await.unwrap()
    }

    /// Keys under the gateway's Redis prefix matching `pattern` (after the prefix).
    pub async fn redis_keys(&self, pattern: &str) -> Vec<String> {
        let mut conn = self.redis.pool.get().await.unwrap();
        redis::cmd("KEYS")
            .arg(format!("{}{pattern}", self.gateway_settings().redis_key_prefix))
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

/// POSTs one operation to the gateway `app`; asserts the 200 GraphQL answers even with errors.
pub async fn post_gql(
    app: &TestApp,
    req: Req<'_>,
    query: &str,
    variables: Value,
) -> (reqwest::header::HeaderMap, Value) {
    let mut r = app.client.post(app.url("/graphql")).json(&json!({"query": query, "variables": variables}));
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
