//! Each service's settings for a test (port 0, the test's databases and Redis prefix) and its
//! start as a [`TestApp`].

use std::path::{Path, PathBuf};

use accounts::settings::Argon2Settings;
use shard_router::ShardMap;
use std::time::Duration;

use testkit::{TestApp, TestDb, TestKafka, TestRedis};

/// A fresh signing key for accounts, written to `dir`.
pub fn key_file(dir: &Path) -> PathBuf {
    let path = dir.join("jwt.pem");
    accounts::keys::generate_file(&path).unwrap();
    path
}

/// Cheap argon2: what the parameters cost is the accounts benchmark's to measure, not every
/// test's.
pub fn fast_argon2() -> Argon2Settings {
    Argon2Settings { memory_kib: 1024, iterations: 1, parallelism: 1 }
}

/// Accounts listening on port 0 (HTTP and gRPC), on `db`, with Redis keys under
/// `redis_prefix`, signing with the key at `key`, and [`fast_argon2`].
pub fn accounts_settings(db: &TestDb, redis: &TestRedis, redis_prefix: &str, key: PathBuf) -> accounts::Settings {
    let mut s = accounts::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        redis_url: redis.url.clone(),
        redis_key_prefix: redis_prefix.to_owned(),
        argon2: fast_argon2(),
        ..accounts::Settings::default()
    };
    s.jwt.private_key_file = Some(key);
    s
}

/// Builds accounts and runs it: the app and the port its gRPC server bound.
pub async fn spawn_accounts(settings: accounts::Settings) -> (TestApp, u16) {
    let app = accounts::Application::build(settings).await.expect("build accounts");
    let grpc_port = app.grpc_port();
    (TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop)), grpc_port)
}

/// Builds orders on `map` and runs it.
pub async fn spawn_orders(settings: orders::Settings, map: ShardMap) -> TestApp {
    let app = orders::Application::build(settings, map).await.expect("build orders");
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

/// Builds the gateway on `map` and runs it.
pub async fn spawn_gateway(settings: gateway::Settings, map: ShardMap) -> TestApp {
    let app = gateway::Application::build(settings, map).await.expect("build gateway");
    TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop))
}

/// The outbox relay's settings on `kafka`'s topics, on a free port, quick to poll and retry.
pub fn relay_settings(kafka: &TestKafka) -> orders::relay::Settings {
    orders::relay::Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        kafka_bootstrap: kafka.bootstrap.clone(),
        topic: kafka.topic.clone(),
        dlq_topic: kafka.dlq_topic.clone(),
        poll_interval: Duration::from_millis(200),
        lease_retry: Duration::from_millis(200),
        retry_base: Duration::from_millis(50),
        retry_max: Duration::from_millis(1000),
        message_timeout: Duration::from_millis(5000),
        ..orders::relay::Settings::default()
    }
}
