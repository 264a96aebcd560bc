//! The gateway, started for real in front of the real accounts and orders services.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

use gateway::{Application, Settings};
use platform::db::Schema;
use testkit::{TestApp, TestDb, TestRedis, TestShards};

async fn spawn(settings: Settings) -> TestApp {
    let app = Application::build(settings).await.expect("build gateway");
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

#[tokio::test]
async fn serves_ops_endpoints_and_names_a_down_downstream() {
    let redis = TestRedis::new().unwrap();
    let (accounts_db, shards) = (TestDb::global(Schema::Accounts).await.unwrap(), TestShards::create().await.unwrap());
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("jwt.pem");
    accounts::keys::generate_file(&key).unwrap();
    let mut settings = accounts::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: accounts_db.url.clone(),
        redis_url: redis.url.clone(),
        ..Default::default()
    };
    settings.jwt.private_key_file = Some(key);
    let accounts = accounts::Application::build(settings).await.unwrap();
    let accounts = TestApp::spawn(accounts.port(), move |stop| accounts.run_until_stopped(stop));
    let orders = orders::Application::build(
        orders::Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            redis_url: redis.url.clone(),
            ..Default::default()
        },
        shards.map.clone(),
    )
    .await
    .unwrap();
    let orders = TestApp::spawn(orders.port(), move |stop| orders.run_until_stopped(stop));

    let settings = Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        redis_url: redis.url.clone(),
        accounts_url: accounts.base_url.clone(),
        orders_url: orders.base_url.clone(),
        ..Settings::default()
    };
    let app = spawn(settings.clone()).await;
    app.assert_ops_endpoints(&["redis", "accounts", "orders"]).await;

    orders.stop().await.unwrap();
    app.assert_not_ready_because("orders").await;
}

#[tokio::test]
async fn binary_logs_json_and_stops_on_sigterm() {
    testkit::process::assert_binary_serves_and_stops(
        env!("CARGO_BIN_EXE_gateway"),
        &[("TICKET_HUB_GATEWAY__HTTP_ADDR", "127.0.0.1:0")],
    )
    .await;
}
