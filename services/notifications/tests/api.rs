//! The notifications service, started for real against a fresh database and the broker.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

use notifications::{Application, Settings};
use platform::db::Schema;
use testkit::{TestApp, TestDb, TestKafka};

async fn spawn(settings: Settings) -> TestApp {
    let app = Application::build(settings).await.expect("build notifications");
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

#[tokio::test]
async fn serves_ops_endpoints_and_names_a_down_broker() {
    let (db, kafka) = (TestDb::global(Schema::Notifications).await.unwrap(), TestKafka::new(1).await.unwrap());
    let settings = Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        kafka_bootstrap: kafka.bootstrap.clone(),
    };
    let app = spawn(settings.clone()).await;
    app.assert_ops_endpoints(&["postgres", "kafka"]).await;
    app.stop().await.unwrap();

    let app = spawn(Settings { kafka_bootstrap: "127.0.0.1:1".into(), ..settings }).await;
    app.assert_not_ready_because("kafka").await;
}

#[tokio::test]
async fn binary_logs_json_and_stops_on_sigterm() {
    testkit::process::assert_binary_serves_and_stops(
        env!("CARGO_BIN_EXE_notifications"),
        &[("TICKET_HUB_NOTIFICATIONS__HTTP_ADDR", "127.0.0.1:0")],
    )
    .await;
}
