//! One order is one trace across every service, seen by a real OTLP receiver.
//!
//! The receiver is the project's own trace viewer (`tools::traces`, what `./dev up` starts),
//! in this process on port 0, taking the services' OTLP/gRPC exports; the test reads what it
//! kept through its JSON API, as a script would. The six services are their real binaries
//! (target/debug, built by `cargo nextest run --workspace`), each a process of its own with
//! `OTEL_EXPORTER_OTLP_ENDPOINT` pointing at it, on fresh databases, a fresh topic and consumer
//! group. A tracer provider is per process, which is why they cannot run in this one.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::time::Duration;

use platform::db::Schema;
use serde_json::{Value, json};
use testkit::process::Process;
use testkit::{TestDb, TestKafka, TestRedis, TestShards};

/// One span as the viewer kept it (ids in hex; `parent_span_id` empty for a root).
#[derive(Debug, Clone)]
struct Got {
    service: String,
    name: String,
    trace_id: String,
    span_id: String,
    parent_span_id: String,
    attributes: BTreeMap<String, String>,
    /// The trace ids this span links to.
    links: Vec<String>,
}

/// The trace viewer on 127.0.0.1:0 (both listeners), serving until the test ends.
struct Viewer {
    /// Its pages and JSON API.
    base_url: String,
    /// The OTLP/gRPC endpoint the services export to.
    otlp: String,
}

impl Viewer {
    async fn start() -> Self {
        let any = "127.0.0.1:0".parse().unwrap();
        let settings = tools::traces::Settings { otlp_addr: any, http_addr: any, ..Default::default() };
        let app = tools::traces::Application::build(settings).await.unwrap();
        let viewer = Self {
            base_url: format!("http://127.0.0.1:{}", app.port()),
            otlp: format!("http://127.0.0.1:{}", app.otlp_port()),
        };
        tokio::spawn(app.run_until_stopped(tokio_util::sync::CancellationToken::new()));
        viewer
    }

    /// Every span kept so far, trace by trace.
    async fn spans(&self) -> Vec<Got> {
        let get = |url: String| async move { reqwest::get(url).await.unwrap().json::<Value>().await.unwrap() };
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let list = get(format!("{}/api/traces?limit=2000", self.base_url)).await;
        let mut got = Vec::new();
        for summary in list["traces"].as_array().unwrap() {
            let trace = get(format!("{}/api/traces/{}", self.base_url, text(&summary["traceId"]))).await;
            for span in trace["spans"].as_array().unwrap() {
                got.push(Got {
                    service: text(&span["service"]),
                    name: text(&span["name"]),
                    trace_id: text(&span["traceId"]),
                    span_id: text(&span["spanId"]),
                    parent_span_id: text(&span["parentSpanId"]),
                    attributes: serde_json::from_value(span["attributes"].clone()).unwrap(),
                    links: span["links"].as_array().unwrap().iter().map(|l| text(&l["traceId"])).collect(),
                });
            }
        }
        got
    }
}

/// A service binary built next to this test (target/debug).
fn binary(name: &str) -> String {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let path: PathBuf = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: build the service binaries first (`cargo build --workspace --bins`; \
         `cargo nextest run --workspace` builds them)",
        path.display()
    );
    path.display().to_string()
}

/// A port free right now, for the accounts gRPC listener (the binary logs only its HTTP port
/// in the line the process helper reads).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `(prefix + key, value)` pairs, plus the OTLP variables every service gets.
fn env(prefix: &str, pairs: &[(&str, String)], otlp: &str) -> Vec<(String, String)> {
    let mut env: Vec<(String, String)> = pairs.iter().map(|(k, v)| (format!("{prefix}{k}"), v.clone())).collect();
    env.push(("OTEL_EXPORTER_OTLP_ENDPOINT".into(), otlp.to_owned()));
    // Spans leave every 100 ms instead of every 5 s: the test waits less, nothing else changes.
    env.push(("OTEL_BSP_SCHEDULE_DELAY".into(), "100".into()));
    env.push(("OTEL_SDK_DISABLED".into(), "false".into()));
    env
}

async fn spawn(name: &str, env: &[(String, String)]) -> Process {
    let pairs: Vec<(&str, &str)> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    Process::spawn(&binary(name), &pairs).await
}

async fn post(url: &str, token: Option<&str>, body: &Value) -> (u16, Value) {
    let mut req = reqwest::Client::new().post(url).json(body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let res = req.send().await.unwrap();
    (res.status().as_u16(), res.json().await.unwrap_or(Value::Null))
}

/// Signs up a user with `role` at accounts and logs in: the access token.
async fn user(accounts: &str, role: &str) -> String {
    let email = format!("{}@example.org", testkit::unique_id());
    let password = "password 123";
    let body = json!({"email": email, "name": "Trace Test", "password": password, "role": role});
    let (status, created) = post(&format!("{accounts}/api/v1/signup"), None, &body).await;
    assert_eq!(status, 201, "{created}");
    let (status, login) =
        post(&format!("{accounts}/api/v1/login"), None, &json!({"email": email, "password": password})).await;
    assert_eq!(status, 200, "{login}");
    login["accessToken"].as_str().unwrap().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_order_is_one_trace_across_every_service() {
    let viewer = Viewer::start().await;
    let otlp = viewer.otlp.clone();

    let redis = TestRedis::new().unwrap();
    let shards = TestShards::create().await.unwrap();
    let kafka = TestKafka::new(3).await.unwrap();
    let accounts_db = TestDb::global(Schema::Accounts).await.unwrap();
    let notifications_db = TestDb::global(Schema::Notifications).await.unwrap();
    let read_models = TestDb::global(Schema::ReadModels).await.unwrap();
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("jwt.pem");
    accounts::keys::generate_file(&key).unwrap();
    let shard_urls: Vec<(String, String)> = shards
        .dbs
        .iter()
        .map(|(name, db)| (shards.map.shard_named(name).unwrap().name.env_var(), db.url.clone()))
        .collect();

    let grpc_port = free_port();
    let accounts = spawn(
        "accounts",
        &env(
            "TICKET_HUB_ACCOUNTS__",
            &[
                ("HTTP_ADDR", "127.0.0.1:0".into()),
                ("GRPC_ADDR", format!("127.0.0.1:{grpc_port}")),
                ("DATABASE_URL", accounts_db.url.clone()),
                ("REDIS_URL", redis.url.clone()),
                ("REDIS_KEY_PREFIX", format!("{}accounts:", redis.prefix)),
                ("JWT__PRIVATE_KEY_FILE", key.display().to_string()),
            ],
            &otlp,
        ),
    )
    .await;
    let jwks = format!("{}/.well-known/jwks.json", accounts.base_url);

    let mut orders_env = env(
        "TICKET_HUB_ORDERS__",
        &[
            ("HTTP_ADDR", "127.0.0.1:0".into()),
            ("REDIS_URL", redis.url.clone()),
            ("REDIS_KEY_PREFIX", format!("{}orders:", redis.prefix)),
            ("ACCOUNTS_JWKS_URL", jwks.clone()),
            ("ACCOUNTS_GRPC_URL", format!("http://127.0.0.1:{grpc_port}")),
            ("PLACEMENT_URL", shards.placement.url.clone()),
        ],
        &otlp,
    );
    orders_env.extend(shard_urls.iter().cloned());
    let orders = spawn("orders", &orders_env).await;

    let consumer = || -> Vec<(&'static str, String)> {
        vec![
            ("HTTP_ADDR", "127.0.0.1:0".into()),
            ("CONSUMER__KAFKA_BOOTSTRAP", kafka.bootstrap.clone()),
            ("CONSUMER__TOPIC", kafka.topic.clone()),
            ("CONSUMER__DLQ_TOPIC", kafka.dlq_topic.clone()),
            ("CONSUMER__RETRY_INITIAL_MS", "50".into()),
            ("CONSUMER__RETRY_MAX_MS", "500".into()),
            ("CONSUMER__LEASE_RETRY_MS", "200".into()),
        ]
    };
    let mut projector_env = consumer();
    projector_env.extend([
        ("DATABASE_URL", read_models.url.clone()),
        ("ORDERS_URL", orders.base_url.clone()),
        ("ACCOUNTS_JWKS_URL", jwks.clone()),
        ("SUPERVISE_INTERVAL_MS", "200".into()),
    ]);
    let projector = spawn("projector", &env("TICKET_HUB_PROJECTOR__", &projector_env, &otlp)).await;

    let gateway = spawn(
        "gateway",
        &env(
            "TICKET_HUB_GATEWAY__",
            &[
                ("HTTP_ADDR", "127.0.0.1:0".into()),
                ("ACCOUNTS_URL", accounts.base_url.clone()),
                ("ORDERS_URL", orders.base_url.clone()),
                ("PROJECTOR_URL", projector.base_url.clone()),
                ("REDIS_URL", redis.url.clone()),
                ("REDIS_KEY_PREFIX", format!("{}gateway:", redis.prefix)),
            ],
            &otlp,
        ),
    )
    .await;

    let mut relay_env = env(
        "TICKET_HUB_ORDERS_RELAY__",
        &[
            ("HTTP_ADDR", "127.0.0.1:0".into()),
            ("KAFKA_BOOTSTRAP", kafka.bootstrap.clone()),
            ("TOPIC", kafka.topic.clone()),
            ("DLQ_TOPIC", kafka.dlq_topic.clone()),
            ("TOPIC_PARTITIONS", "3".into()),
            ("POLL_INTERVAL_MS", "200".into()),
            ("LEASE_RETRY_MS", "200".into()),
        ],
        &otlp,
    );
    relay_env.extend(shard_urls.iter().cloned());
    let relay = spawn("orders-relay", &relay_env).await;

    let mut notifications_env = consumer();
    notifications_env.extend([("DATABASE_URL", notifications_db.url.clone()), ("CONSUMER_NAME", kafka.group.clone())]);
    let notifications = spawn("notifications", &env("TICKET_HUB_NOTIFICATIONS__", &notifications_env, &otlp)).await;

    // A probe and a scrape, which must leave no span (they would flood any trace store).
    for path in ["readyz", "metrics"] {
        let res = reqwest::get(format!("{}/{path}", orders.base_url)).await.unwrap();
        assert!(res.status().is_success(), "/{path}: {}", res.status());
    }

    // An event with stock, straight at orders; then the one order, through the gateway.
    let organizer = user(&accounts.base_url, "ORGANIZER").await;
    let customer = user(&accounts.base_url, "CUSTOMER").await;
    let event = json!({
        "region": "NA", "title": "Traced Night", "description": "One trace.", "venue": "Downtown",
        "startsAt": "2026-01-20T20:00:00Z", "endsAt": "2026-01-20T23:00:00Z",
        "ticketTypes": [{"name": "GA", "priceInCents": 2500, "totalQuantity": 10}]
    });
    let (status, created) = post(&format!("{}/api/v1/events", orders.base_url), Some(&organizer), &event).await;
    assert_eq!(status, 201, "{created}");
    let event_id = created["eventId"].as_str().unwrap().to_owned();
    let got = reqwest::get(format!("{}/api/v1/events/{event_id}", orders.base_url)).await.unwrap();
    let got: Value = got.json().await.unwrap();
    let ticket_type = got["ticketTypes"][0]["id"].as_str().unwrap().to_owned();

    let mutation = "mutation CreateOrder($input: CreateOrderInput!) { createOrder(input: $input) { orderId } }";
    let variables = json!({"input": {"region": "NA", "eventId": event_id, "ticketTypeId": ticket_type, "quantity": 2}});
    let res = reqwest::Client::new()
        .post(format!("{}/graphql", gateway.base_url))
        .bearer_auth(&customer)
        .header("Idempotency-Key", format!("trace-{}", testkit::unique_id()))
        .json(&json!({"query": mutation, "variables": variables}))
        .send()
        .await
        .unwrap();
    let answer: Value = res.json().await.unwrap();
    let order_id = answer["data"]["createOrder"]["orderId"].as_str().unwrap_or_else(|| panic!("{answer}")).to_owned();

    // The spans of the order's trace, from every service, as they arrive (polled, with a
    // deadline that only bounds a failing test).
    let wanted = ["gateway", "orders", "accounts", "orders-relay", "notifications", "projector"];
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let (trace, in_trace) = loop {
        let spans = viewer.spans().await;
        let root = spans.iter().find(|s| s.service == "gateway" && s.name == "mutation CreateOrder");
        if let Some(root) = root {
            let trace = root.trace_id.clone();
            let in_trace: Vec<Got> = spans.iter().filter(|s| s.trace_id == trace).cloned().collect();
            let services: BTreeSet<&str> = in_trace.iter().map(|s| s.service.as_str()).collect();
            let applied = |service: &str| in_trace.iter().any(|s| s.service == service && s.name == "apply");
            if wanted.iter().all(|w| services.contains(w)) && applied("notifications") && applied("projector") {
                break (trace, in_trace);
            }
        }
        if tokio::time::Instant::now() > deadline {
            let seen: BTreeSet<(String, String)> = spans.iter().map(|s| (s.service.clone(), s.name.clone())).collect();
            panic!("order {order_id}: the trace never reached every service; spans seen: {seen:#?}");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let one = |service: &str, name: &str| {
        in_trace
            .iter()
            .find(|s| s.service == service && s.name.starts_with(name))
            .unwrap_or_else(|| panic!("no {service} span {name:?} in the trace: {in_trace:#?}"))
    };
    // The shard transaction names its shard, region and partition.
    let tx = one("orders", "shard tx");
    assert_eq!(tx.attributes.get("shard").map(String::as_str), Some("na-1"), "{tx:?}");
    assert_eq!(tx.attributes.get("region").map(String::as_str), Some("NA"), "{tx:?}");
    assert!(tx.attributes.contains_key("partition"), "{tx:?}");
    // Each hop is the child of the one before it: gateway → orders (HTTP) → accounts (gRPC).
    let http_in = one("orders", "POST /api/v1/orders");
    assert!(in_trace.iter().any(|s| s.service == "gateway" && s.span_id == http_in.parent_span_id), "{http_in:?}");
    let grpc = one("accounts", "accounts.v1.AccountsService/GetUserById");
    let grpc_client = one("orders", "accounts.v1.AccountsService/GetUserById");
    assert_eq!(grpc.parent_span_id, grpc_client.span_id);
    // The relay's per-row span is the child of the transaction that wrote the row; the
    // consumers' apply spans are children of that publish span (the Kafka header).
    let publish = one("orders-relay", "relay publish");
    let in_tx = |id: &str| in_trace.iter().any(|s| s.service == "orders" && s.span_id == id);
    assert!(in_tx(&publish.parent_span_id), "the publish span's parent is in orders: {publish:?}");
    for consumer in ["notifications", "projector"] {
        let apply = one(consumer, "apply");
        assert_eq!(apply.parent_span_id, publish.span_id, "{consumer}: {apply:?}");
    }
    // The batch spans are roots of their own, linked to the order's trace.
    let spans = viewer.spans().await;
    for (service, name) in
        [("orders-relay", "relay batch"), ("notifications", "consume batch"), ("projector", "consume batch")]
    {
        assert!(
            spans.iter().any(|s| s.service == service && s.name == name && s.links.contains(&trace)),
            "no {service} {name:?} linked to the order's trace"
        );
    }
    let ops: Vec<&Got> = spans.iter().filter(|s| s.name.ends_with("/readyz") || s.name.ends_with("/metrics")).collect();
    assert!(ops.is_empty(), "probes and scrapes are not exported: {ops:?}");
    // No request carried a token, password or email into an attribute.
    for s in &spans {
        for (k, v) in &s.attributes {
            assert!(
                !v.contains(&customer) && !v.contains("@example.org") && !v.contains("password"),
                "{k}={v} in {s:?}"
            );
        }
    }

    // Consumers and the relay first, so the topics can go (see `Pipeline::stop`); each stops
    // cleanly on SIGTERM with its exporter shut down.
    notifications.terminate().await;
    projector.terminate().await;
    relay.terminate().await;
    gateway.terminate().await;
    orders.terminate().await;
    accounts.terminate().await;
}
