//! Ops endpoints, the binary and its subcommands.

use std::process::Stdio;

use accounts::Application;
use serde_json::json;
use testkit::TestApp;

use super::helpers::{settings, spawn, spawn_with};

#[tokio::test]
async fn serves_ops_endpoints_against_real_dependencies() {
    let ctx = spawn().await;
    ctx.app.assert_ops_endpoints(&["postgres", "redis"]).await;
    // Outcomes are counted.
    ctx.login("nobody@example.org", "whatever1").await;
    let metrics = ctx.app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("accounts_logins_total"), "{metrics}");
}

#[tokio::test]
async fn readyz_names_what_is_down_while_healthz_stays_up() {
    let ctx = spawn_with(|s| s.redis_url = "redis://127.0.0.1:1".into()).await;
    ctx.app.assert_not_ready_because("redis").await;
    assert_eq!(ctx.app.get("/healthz").await.status(), 200);

    let ctx = spawn_with(|s| s.database_url = "postgres://postgres@127.0.0.1:1/accounts".into()).await;
    ctx.app.assert_not_ready_because("postgres").await;
    // A request needing the database is a retryable 503, not a 500.
    let res = ctx.app.post_json("/api/v1/login", &json!({"email": "a@b.org", "password": "whatever1"})).await;
    assert_eq!(res.status(), 503);
    assert!(res.headers().contains_key("retry-after"));
}

#[tokio::test]
async fn binary_logs_json_and_stops_on_sigterm() {
    let dir = tempfile::tempdir().unwrap();
    let key = super::helpers::key_file(&dir);
    testkit::process::assert_binary_serves_and_stops(
        env!("CARGO_BIN_EXE_accounts"),
        &[
            ("TICKET_HUB_ACCOUNTS__HTTP_ADDR", "127.0.0.1:0"),
            ("TICKET_HUB_ACCOUNTS__GRPC_ADDR", "127.0.0.1:0"),
            ("TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_FILE", key.to_str().unwrap()),
        ],
    )
    .await;
}

#[tokio::test]
async fn refuses_to_start_without_a_signing_key() {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_accounts"))
        .env("TICKET_HUB_ACCOUNTS__HTTP_ADDR", "127.0.0.1:0")
        .env("TICKET_HUB_ACCOUNTS__GRPC_ADDR", "127.0.0.1:0")
        .env_remove("TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_FILE")
        .current_dir(std::env::temp_dir())
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("jwt.private_key_file"), "{stderr}");
}

#[tokio::test]
async fn gen_key_writes_a_private_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("keys/jwt.pem");
    let run = || {
        std::process::Command::new(env!("CARGO_BIN_EXE_accounts"))
            .args(["gen-key", "--out"])
            .arg(&path)
            .output()
            .unwrap()
    };
    assert!(run().status.success());
    let first = std::fs::read_to_string(&path).unwrap();
    assert!(first.starts_with("-----BEGIN PRIVATE KEY-----"));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    assert!(run().status.success());
    assert_eq!(std::fs::read_to_string(&path).unwrap(), first, "an existing key is never replaced");
}

#[tokio::test]
async fn create_admin_is_the_way_to_an_admin() {
    let ctx = spawn().await;
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_accounts"))
        .args(["create-admin", "--email", "root@example.org", "--name", "Root", "--password-env", "ADMIN_PW"])
        .env("ADMIN_PW", "admin password 1")
        .env("TICKET_HUB_ACCOUNTS__DATABASE_URL", &ctx.db.url)
        .env("TICKET_HUB_ACCOUNTS__ARGON2__MEMORY_KIB", "1024")
        .env("TICKET_HUB_ACCOUNTS__ARGON2__ITERATIONS", "1")
        .stdin(Stdio::null())
        .output()
        .await
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, login) = ctx.login("root@example.org", "admin password 1").await;
    assert_eq!(status, 200, "{login}");
    let (_, me) = ctx.me(login["accessToken"].as_str()).await;
    assert_eq!(me["role"], "ADMIN");
}

#[tokio::test]
async fn secrets_never_reach_the_logs() {
    // Run the real binary, sign up and log in, then read everything it printed.
    let (db, redis) =
        (testkit::TestDb::global(platform::db::Schema::Accounts).await.unwrap(), testkit::TestRedis::new().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let s = settings(&db, &redis, super::helpers::key_file(&dir)).await;
    let app = Application::build(s.clone()).await.unwrap();
    drop(app);
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_accounts"))
        .env("TICKET_HUB_ACCOUNTS__HTTP_ADDR", "127.0.0.1:0")
        .env("TICKET_HUB_ACCOUNTS__GRPC_ADDR", "127.0.0.1:0")
        .env("TICKET_HUB_ACCOUNTS__DATABASE_URL", &db.url)
        .env("TICKET_HUB_ACCOUNTS__REDIS_KEY_PREFIX", &redis.prefix)
        .env("TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_FILE", s.jwt.private_key_file.as_ref().unwrap())
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut port = None;
    let mut seen = String::new();
    while port.is_none() {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).await.unwrap() > 0, "exited early: {seen}");
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        port = v["port"].as_u64();
        seen.push_str(&line);
    }
    let app = TestApp::spawn(u16::try_from(port.unwrap()).unwrap(), |_| async { Ok(()) });
    let password = "very secret password 42";
    assert_eq!(
        app.post_json("/api/v1/signup", &json!({"email": "s@example.org", "name": "S", "password": password}))
            .await
            .status(),
        201
    );
    let login: serde_json::Value = app
        .post_json("/api/v1/login", &json!({"email": "s@example.org", "password": password}))
        .await
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap().to_owned();
    let _ = app.client.get(app.url("/api/v1/me")).header("authorization", format!("Bearer {token}")).send().await;
    let _ = tokio::process::Command::new("kill").arg("-TERM").arg(child.id().unwrap().to_string()).status().await;
    let _ = child.wait().await;
    stdout.read_to_string(&mut seen).await.unwrap();
    assert!(seen.contains("logged in"), "the log was read: {seen}");
    assert!(!seen.contains(password), "password in the log");
    assert!(!seen.contains(&token), "token in the log");
    assert!(!seen.contains(token.split('.').nth(2).unwrap()), "token signature in the log");
}
