//! Ops endpoints of the orders service and the relay process.

use orders::{Application, Settings, relay};
use test_stack::services::relay_settings;
use testkit::{TestApp, TestKafka, TestRedis, TestShards};

async fn spawn(settings: Settings, shards: shard_router::ShardMap) -> TestApp {
    let app = Application::build(settings, shards).await.expect("build orders");
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

fn settings(redis: &TestRedis, shards: &TestShards) -> Settings {
    Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        redis_url: redis.url.clone(),
        placement_url: shards.placement.url.clone(),
        ..Settings::default()
    }
}

#[tokio::test]
async fn serves_ops_endpoints_with_a_check_per_shard() {
    let (shards, redis) = (TestShards::create().await.unwrap(), TestRedis::new().unwrap());
    let app = spawn(settings(&redis, &shards), shards.map.clone()).await;
    app.assert_ops_endpoints(&["postgres:na-1", "postgres:sa-1", "postgres:placement", "redis"]).await;
    app.stop().await.unwrap();
}

/// `openapi/orders.json` and `openapi/orders-relay.json` are what clients and API fuzzing read:
/// they must be the documents the code serves. `UPDATE_OPENAPI=1` rewrites them.
#[test]
fn the_published_openapi_documents_are_current() {
    testkit::published::assert_openapi_current("orders", &platform::openapi::to_json(&orders::openapi()));
    testkit::published::assert_openapi_current("orders-relay", &platform::openapi::to_json(&relay::openapi()));
}

#[tokio::test]
async fn orders_and_the_relay_serve_their_openapi_documents_and_route_what_they_document() {
    let (shards, redis) = (TestShards::create().await.unwrap(), TestRedis::new().unwrap());
    let app = spawn(settings(&redis, &shards), shards.map.clone()).await;
    app.assert_serves_openapi(&platform::openapi::to_json(&orders::openapi())).await;

    let kafka = TestKafka::new(1).await.unwrap();
    let r = relay::Relay::build(relay_settings(&kafka), shards.map.clone()).await.unwrap();
    let relay = TestApp::spawn(r.port(), move |stop| r.run_until_stopped(stop));
    relay.assert_serves_openapi(&platform::openapi::to_json(&relay::openapi())).await;
    relay.stop().await.unwrap();
    app.stop().await.unwrap();
}

#[tokio::test]
async fn a_down_shard_is_named_by_readyz() {
    let (shards, redis) = (TestShards::create().await.unwrap(), TestRedis::new().unwrap());
    let map = shards.map_with_urls([("sa-1", testkit::db::DOWN_URL)]);
    let app = spawn(settings(&redis, &shards), map).await;
    app.assert_not_ready_because("postgres:sa-1").await;
    let body: serde_json::Value = app.get("/readyz").await.json().await.unwrap();
    assert_eq!(body["checks"]["postgres:na-1"], "up", "{body}");
}

#[tokio::test]
async fn relay_serves_ops_endpoints_and_checks_the_broker() {
    let (shards, kafka) = (TestShards::create().await.unwrap(), TestKafka::new(1).await.unwrap());
    let settings = relay_settings(&kafka);
    let r = relay::Relay::build(settings.clone(), shards.map.clone()).await.unwrap();
    let app = TestApp::spawn(r.port(), move |stop| r.run_until_stopped(stop));
    app.assert_ops_endpoints(&["postgres:na-1", "postgres:sa-1", "kafka"]).await;

    let r =
        relay::Relay::build(relay::Settings { kafka_bootstrap: "127.0.0.1:1".into(), ..settings }, shards.map.clone())
            .await
            .unwrap();
    let down = TestApp::spawn(r.port(), move |stop| r.run_until_stopped(stop));
    down.assert_not_ready_because("kafka").await;
}

#[tokio::test]
async fn binaries_log_json_and_stop_on_sigterm() {
    let placement = testkit::TestDb::global(platform::db::Schema::Placement).await.unwrap();
    testkit::process::assert_binary_serves_and_stops(
        env!("CARGO_BIN_EXE_orders"),
        &[("TICKET_HUB_ORDERS__HTTP_ADDR", "127.0.0.1:0"), ("TICKET_HUB_ORDERS__PLACEMENT_URL", &placement.url)],
    )
    .await;
    testkit::process::assert_binary_serves_and_stops(
        env!("CARGO_BIN_EXE_orders-relay"),
        &[("TICKET_HUB_ORDERS_RELAY__HTTP_ADDR", "127.0.0.1:0")],
    )
    .await;
}
