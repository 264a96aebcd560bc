//! The GraphQL client: one pooled HTTP client, the operations of the gateway's schema, and the
//! reduction of every failure to one code.

use std::time::Duration;

use anyhow::Context;
use serde_json::{Value, json};

/// The operations the tool sends, with the names of the gateway's schema (issue 7).
pub mod ops {
    pub const SIGNUP: &str = "mutation Signup($input: SignupInput!) { signup(input: $input) { userId } }";
    pub const LOGIN: &str = "mutation Login($input: LoginInput!) { login(input: $input) { accessToken expiresAt } }";
    pub const CREATE_EVENT: &str =
        "mutation CreateEvent($input: CreateEventInput!) { createEvent(input: $input) { eventId region } }";
    pub const CREATE_ORDER: &str = "mutation CreateOrder($input: CreateOrderInput!) \
         { createOrder(input: $input) { orderId totalPriceInCents region } }";
    pub const PAY_ORDER: &str = "mutation PayOrder($id: ID!) { payOrder(id: $id) { id status } }";
    pub const CANCEL_ORDER: &str = "mutation CancelOrder($id: ID!) { cancelOrder(id: $id) { id status } }";
    pub const EVENTS: &str = "query Events($region: Region!, $first: Int!) \
         { events(region: $region, first: $first) { id title region startsAt } }";

    /// `event(id)` with the id written into the document: a literal is accepted whatever
    /// scalar the argument is declared with (`ID`, `UUID`, `String`), a variable is not.
    pub fn event(id: &str) -> String {
        format!(
            "query Event {{ event(id: \"{id}\") {{ id title region ticketTypes \
             {{ id name priceInCents totalQuantity remainingQuantity }} }} }}"
        )
    }
}

/// The gateway over HTTP.
#[derive(Debug, Clone)]
pub struct Gql {
    http: reqwest::Client,
    url: String,
}

impl Gql {
    /// A client for `url`, which must point at this machine: the tool loads only local stacks.
    pub fn new(url: &str, timeout: Duration) -> anyhow::Result<Self> {
        let parsed = url::Url::parse(url).with_context(|| format!("--gateway {url}"))?;
        match parsed.host_str() {
            Some("127.0.0.1" | "localhost" | "[::1]" | "::1") => {}
            other => anyhow::bail!("--gateway must be a loopback address, not {other:?}"),
        }
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(Duration::from_secs(2))
            .tcp_nodelay(true)
            .pool_idle_timeout(Duration::from_secs(90))
            .build()?;
        Ok(Self { http, url: url.to_owned() })
    }

    /// Sends one operation; `Ok(data)`, or `Err(code)` with the code of the first error.
    pub async fn send(
        &self,
        query: &str,
        variables: Value,
        token: Option<&str>,
        idempotency_key: Option<&str>,
    ) -> Result<Value, Failure> {
        let mut req = self.http.post(&self.url).json(&json!({ "query": query, "variables": variables }));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.map_err(Failure::transport)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(Failure::transport)?;
        let parsed: Value = match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(_) => {
                let code =
                    if status.is_success() { "BAD_RESPONSE".to_owned() } else { format!("HTTP_{}", status.as_u16()) };
                return Err(Failure { code, message: String::from_utf8_lossy(&body).chars().take(300).collect() });
            }
        };
        response_outcome(status.as_u16(), parsed)
    }

    /// Sends a request body serialized once ahead of the load ([`body`]) and only tells
    /// whether it worked: a 2xx answer without an `"errors"` key is a success without parsing
    /// it, so the generator spends its share of the cores on sending, not on JSON.
    pub async fn fire(&self, body: &str, token: Option<&str>, idempotency_key: Option<&str>) -> Result<(), Failure> {
        let mut req = self.http.post(&self.url).header("content-type", "application/json").body(body.to_owned());
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(k) = idempotency_key {
            req = req.header("idempotency-key", k);
        }
        let resp = req.send().await.map_err(Failure::transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(Failure::transport)?;
        if quick_ok(status, &bytes) {
            return Ok(());
        }
        let parsed: Value = serde_json::from_slice(&bytes).map_err(|_| Failure {
            code: if (200..300).contains(&status) { "BAD_RESPONSE".into() } else { format!("HTTP_{status}") },
            message: String::from_utf8_lossy(&bytes).chars().take(300).collect(),
        })?;
        response_outcome(status, parsed).map(drop)
    }

    /// Like [`Gql::send`], for setup steps: a failure is an error naming the operation.
    pub async fn must(&self, what: &str, query: &str, variables: Value, token: Option<&str>) -> anyhow::Result<Value> {
        self.send(query, variables, token, None)
            .await
            .map_err(|f| anyhow::anyhow!("{what} failed: {} {}", f.code, f.message))
    }
}

/// A request body: the operation and its variables, serialized once.
pub fn body(query: &str, variables: &Value) -> String {
    json!({ "query": query, "variables": variables }).to_string()
}

/// A 2xx answer with data and no `"errors"` key anywhere (the tool's own data never contains
/// that text).
pub fn quick_ok(status: u16, body: &[u8]) -> bool {
    (200..300).contains(&status) && body.starts_with(b"{\"data\":{") && !body.windows(8).any(|w| w == b"\"errors\"")
}

/// Why a request failed: a stable code (`extensions.code`, `HTTP_<status>`, `TIMEOUT`,
/// `TRANSPORT`) and the message for setup errors.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub code: String,
    pub message: String,
}

impl Failure {
    fn transport(e: reqwest::Error) -> Self {
        let code = if e.is_timeout() { "TIMEOUT" } else { "TRANSPORT" };
        Self { code: code.into(), message: e.to_string() }
    }
}

/// A GraphQL answer reduced to its data or its first error. A response with both data and
/// errors is a failure: for the tool's single-field operations, an error means that field failed.
pub fn response_outcome(status: u16, body: Value) -> Result<Value, Failure> {
    if let Some(first) = body.get("errors").and_then(Value::as_array).and_then(|e| e.first()) {
        let code = first.pointer("/extensions/code").and_then(Value::as_str).map_or_else(
            || if status >= 400 { format!("HTTP_{status}") } else { "GRAPHQL_ERROR".to_owned() },
            str::to_owned,
        );
        let message = first.get("message").and_then(Value::as_str).unwrap_or_default().to_owned();
        return Err(Failure { code, message });
    }
    if !(200..300).contains(&status) {
        return Err(Failure { code: format!("HTTP_{status}"), message: body.to_string() });
    }
    match body.get("data") {
        Some(data) if !data.is_null() => Ok(data.clone()),
        _ => Err(Failure { code: "BAD_RESPONSE".into(), message: "no data and no errors".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_come_from_the_first_error() {
        let body = json!({"data": null, "errors": [
            {"message": "this ticket type is sold out", "extensions": {"code": "SOLD_OUT"}},
            {"message": "other", "extensions": {"code": "INTERNAL"}}
        ]});
        let f = response_outcome(200, body).unwrap_err();
        assert_eq!((f.code.as_str(), f.message.as_str()), ("SOLD_OUT", "this ticket type is sold out"));
    }

    #[test]
    fn errors_without_a_code_and_bad_statuses() {
        let f = response_outcome(200, json!({"errors": [{"message": "Unknown field"}]})).unwrap_err();
        assert_eq!(f.code, "GRAPHQL_ERROR");
        let f = response_outcome(400, json!({"errors": [{"message": "parse"}]})).unwrap_err();
        assert_eq!(f.code, "HTTP_400");
        assert_eq!(response_outcome(503, json!({"x": 1})).unwrap_err().code, "HTTP_503");
        assert_eq!(response_outcome(200, json!({"data": null})).unwrap_err().code, "BAD_RESPONSE");
    }

    #[test]
    fn quick_success_only_without_errors() {
        assert!(quick_ok(200, br#"{"data":{"events":[{"id":"1"}]}}"#));
        assert!(!quick_ok(200, br#"{"data":{"createOrder":null},"errors":[{"message":"x"}]}"#));
        assert!(!quick_ok(200, br#"{"data":null,"errors":[]}"#));
        assert!(!quick_ok(503, br#"{"data":{"events":[]}}"#));
        assert!(!quick_ok(200, b"not json"));
        let b = body("query Q($n: Int!) { f(n: $n) }", &json!({"n": 1}));
        assert_eq!(
            serde_json::from_str::<Value>(&b).unwrap(),
            json!({"query": "query Q($n: Int!) { f(n: $n) }", "variables": {"n": 1}})
        );
    }

    #[test]
    fn data_is_returned() {
        let data = response_outcome(200, json!({"data": {"createOrder": {"orderId": "x"}}})).unwrap();
        assert_eq!(data.pointer("/createOrder/orderId"), Some(&json!("x")));
    }

    #[test]
    fn only_loopback_gateways() {
        assert!(Gql::new("http://127.0.0.1:4000/graphql", Duration::from_secs(1)).is_ok());
        assert!(Gql::new("http://localhost:4000/graphql", Duration::from_secs(1)).is_ok());
        assert!(Gql::new("http://10.0.0.5:4000/graphql", Duration::from_secs(1)).is_err());
        assert!(Gql::new("https://example.org/graphql", Duration::from_secs(1)).is_err());
    }
}
