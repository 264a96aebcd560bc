//! Throughput of login (argon2id at the production parameters) and of gRPC GetUserById, against
//! the real service, database and Redis of the local stack (`./dev up -d` or `./dev test` parts).
//!
//! `cargo bench -p accounts --bench throughput`. Each iteration is one request; requests run
//! `CONCURRENCY` at a time, so criterion's elements/s is requests/s at that concurrency.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "benchmark set-up")]

use std::time::{Duration, Instant};

use accounts::settings::Settings;
use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use proto::accounts::v1::GetUserByIdRequest;
use proto::accounts::v1::accounts_service_client::AccountsServiceClient;
use serde_json::json;
use testkit::{TestApp, TestDb, TestRedis};

struct Bench {
    app: TestApp,
    grpc: String,
    user_id: String,
    _keep: (TestDb, TestRedis, tempfile::TempDir),
}

async fn setup() -> Bench {
    let db = TestDb::global(platform::db::Schema::Accounts).await.unwrap();
    let redis = TestRedis::new().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let key = test_stack::services::key_file(dir.path());
    // The production argon2 parameters: their cost is what the login figure measures.
    let settings = Settings {
        argon2: Settings::default().argon2,
        ..test_stack::services::accounts_settings(&db, &redis, &redis.prefix, key)
    };
    let (app, grpc_port) = test_stack::services::spawn_accounts(settings).await;
    let grpc = format!("http://127.0.0.1:{grpc_port}");
    let res = app
        .post_json(
            "/api/v1/signup",
            &json!({"email": "bench@example.org", "name": "Bench", "password": "bench password"}),
        )
        .await;
    let user_id = res.json::<serde_json::Value>().await.unwrap()["userId"].as_str().unwrap().to_owned();
    Bench { app, grpc, user_id, _keep: (db, redis, dir) }
}

/// Runs `n` calls of `f`, `concurrency` at a time, and returns the wall time.
async fn run<F, Fut>(n: u64, concurrency: usize, f: F) -> Duration
where
    F: Fn() -> Fut,
    Fut: Future<Output = ()>,
{
    let started = Instant::now();
    futures::stream::iter(0..n).map(|_| f()).buffer_unordered(concurrency).collect::<Vec<_>>().await;
    started.elapsed()
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let b = rt.block_on(setup());
    let body = json!({"email": "bench@example.org", "password": "bench password"});

    let mut group = c.benchmark_group("accounts");
    group.throughput(Throughput::Elements(1));
    group.sample_size(10).measurement_time(Duration::from_secs(10));
    group.bench_function("login_concurrency_4", |bench| {
        bench.to_async(&rt).iter_custom(|n| {
            let (app, body) = (&b.app, &body);
            async move {
                run(n, 4, || async {
                    let res = app.post_json("/api/v1/login", body).await;
                    assert_eq!(res.status(), 200);
                })
                .await
            }
        });
    });

    let client = rt.block_on(AccountsServiceClient::connect(b.grpc.clone())).unwrap();
    group.bench_function("get_user_by_id_concurrency_16", |bench| {
        bench.to_async(&rt).iter_custom(|n| {
            let (client, id) = (client.clone(), b.user_id.clone());
            async move {
                run(n, 16, || {
                    let (mut client, id) = (client.clone(), id.clone());
                    async move {
                        client.get_user_by_id(GetUserByIdRequest { id }).await.unwrap();
                    }
                })
                .await
            }
        });
    });
    group.finish();
}

criterion_group!(group, benches);
criterion_main!(group);
