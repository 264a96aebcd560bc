//! The accounts service, started for real against fresh databases.

use accounts::{Application, Settings};
use platform::db::Schema;
use testkit::{TestApp, TestDb, TestRedis};

async fn spawn(settings: Settings) -> TestApp {
    let app = Application::build(settings).await.expect("build accounts");
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

fn settings(db: &TestDb, redis: &TestRedis) -> Settings {
    Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        redis_url: redis.url.clone(),
        ..Settings::default()
    }
}

#[tokio::test]
async fn serves_ops_endpoints_against_real_dependencies() {
    let (db, redis) = (
        TestDb::global(Schema::Accounts).await.unwrap(),
        TestRedis::new().unwrap(),
    );
    let app = spawn(settings(&db, &redis)).await;
    app.assert_ops_endpoints(&["postgres", "redis"]).await;
    app.stop().await.unwrap();
}

#[tokio::test]
async fn readyz_names_what_is_down_while_healthz_stays_up() {
    let (db, redis) = (
        TestDb::global(Schema::Accounts).await.unwrap(),
        TestRedis::new().unwrap(),
    );
    let app = spawn(Settings {
        redis_url: "redis://127.0.0.1:1".into(),
        ..settings(&db, &redis)
    })
    .await;
    app.assert_not_ready_because("redis").await;
    assert_eq!(app.get("/healthz").await.status(), 200);

    let app = spawn(Settings {
        database_url: "postgres://postgres@127.0.0.1:1/accounts".into(),
        ..settings(&db, &redis)
    })
    .await;
    app.assert_not_ready_because("postgres").await;
}

#[tokio::test]
async fn binary_logs_json_and_stops_on_sigterm() {
    testkit::process::assert_binary_serves_and_stops(
        env!("CARGO_BIN_EXE_accounts"),
        &[("TICKET_HUB_ACCOUNTS__HTTP_ADDR", "127.0.0.1:0")],
    )
    .await;
}
