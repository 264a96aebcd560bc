//! Ops endpoints, the binary and its subcommands.

use std::process::Stdio;

use serde_json::json;
use testkit::TestApp;

use super::helpers::{spawn, spawn_with};

#[tokio::test]
async fn serves_ops_endpoints_against_real_dependencies() {
    let ctx = spawn().await;
    ctx.app.assert_ops_endpoints(&["postgres", "redis"]).await;
    // Outcomes are counted.
    ctx.login("nobody@example.org", "whatever1").await;
    let metrics = ctx.app.get("/metrics").await.text().await.unwrap();
    assert!(metrics.contains("accounts_logins_total"), "{metrics}");
}

/// `openapi/accounts.json` is what clients and API fuzzing read: it must be the document the
/// code serves. `UPDATE_OPENAPI=1` rewrites it.
#[test]
fn the_published_openapi_document_is_current() {
    testkit::published::assert_openapi_current("accounts", &platform::openapi::to_json(&accounts::openapi()));
}

#[tokio::test]
async fn serves_its_openapi_document_and_routes_what_it_documents() {
    let ctx = spawn().await;
    ctx.app.assert_serves_openapi(&platform::openapi::to_json(&accounts::openapi())).await;
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
    let key = super::helpers::key_file(dir.path());
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
async fn refuses_to_start_without_a_usable_signing_key() {
    let dir = tempfile::tempdir().unwrap();
    let not_a_key = dir.path().join("not-a-key.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let missing = dir.path().join("missing.pem");
    for (what, file, expected) in [
        ("no key", None, "jwt.private_key_file is required"),
        ("missing file", Some(&missing), "jwt.private_key_file"),
        ("not a key", Some(&not_a_key), "not an Ed25519 PKCS#8 PEM key"),
    ] {
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_accounts"));
        cmd.env("TICKET_HUB_ACCOUNTS__HTTP_ADDR", "127.0.0.1:0")
            .env("TICKET_HUB_ACCOUNTS__GRPC_ADDR", "127.0.0.1:0")
            .env_remove("TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_FILE")
            .env_remove("TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_PEM")
            .current_dir(std::env::temp_dir());
        if let Some(f) = file {
            cmd.env("TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_FILE", f);
        }
        let out = cmd.output().await.unwrap();
        assert!(!out.status.success(), "{what}: started anyway");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(expected), "{what}: {stderr}");
    }
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

/// `accounts create-admin` with `args`, the password on `stdin`, against `ctx`'s database.
async fn create_admin(ctx: &super::helpers::Ctx, args: &[&str], stdin: &str) -> std::process::Output {
    use tokio::io::AsyncWriteExt;
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_accounts"))
        .arg("create-admin")
        .args(args)
        .env("ADMIN_PW", "admin password 1")
        .env("TICKET_HUB_ACCOUNTS__DATABASE_URL", &ctx.db.url)
        .env("TICKET_HUB_ACCOUNTS__ARGON2__MEMORY_KIB", "1024")
        .env("TICKET_HUB_ACCOUNTS__ARGON2__ITERATIONS", "1")
        .current_dir(std::env::temp_dir())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    input.write_all(stdin.as_bytes()).await.unwrap();
    drop(input);
    child.wait_with_output().await.unwrap()
}

#[tokio::test]
async fn create_admin_is_the_way_to_an_admin() {
    let ctx = spawn().await;
    // Password from the variable --password-env names.
    let out =
        create_admin(&ctx, &["--email", "root@example.org", "--name", "Root", "--password-env", "ADMIN_PW"], "").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, login) = ctx.login("root@example.org", "admin password 1").await;
    assert_eq!(status, 200, "{login}");
    let (_, me) = ctx.me(login["accessToken"].as_str()).await;
    assert_eq!(me["role"], "ADMIN");

    // Password from the first line of standard input.
    let out = create_admin(&ctx, &["--email", "ops@example.org", "--name", "Ops"], "stdin password 2\n").await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let (status, login) = ctx.login("OPS@example.org", "stdin password 2").await;
    assert_eq!(status, 200, "{login}");
    assert_eq!(ctx.me(login["accessToken"].as_str()).await.1["role"], "ADMIN");

    // Never as an argument; the domain rules and uniqueness hold here too.
    for (args, stdin, expected) in [
        (&["--email", "x@example.org", "--name", "X", "--password", "in plain sight"][..], "", "--password"),
        (&["--email", "y@example.org", "--name", "Y"][..], "short\n", "password must be at least 8 bytes"),
        (&["--email", "not-an-email", "--name", "Z"][..], "long enough 3\n", "--email"),
        (&["--email", "Root@Example.org", "--name", "Again"][..], "long enough 4\n", "already exists"),
    ] {
        let out = create_admin(&ctx, args, stdin).await;
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains(expected), "{args:?}: {stderr}");
    }
}

/// Runs the real binary with debug logs, signs up, logs in, calls `/me` and gRPC with a
/// correlation id, then reads everything it printed.
#[tokio::test]
async fn logs_carry_grpc_correlation_ids_and_never_secrets() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};

    let (db, redis) =
        (testkit::TestDb::global(platform::db::Schema::Accounts).await.unwrap(), testkit::TestRedis::new().unwrap());
    let dir = tempfile::tempdir().unwrap();
    // The key inline, as a secret store would inject it: its text must not be logged either.
    let key_pem = std::fs::read_to_string(super::helpers::key_file(dir.path())).unwrap();
    let mut child = tokio::process::Command::new(env!("CARGO_BIN_EXE_accounts"))
        .env("TICKET_HUB_ACCOUNTS__HTTP_ADDR", "127.0.0.1:0")
        .env("TICKET_HUB_ACCOUNTS__GRPC_ADDR", "127.0.0.1:0")
        .env("TICKET_HUB_ACCOUNTS__DATABASE_URL", &db.url)
        .env("TICKET_HUB_ACCOUNTS__REDIS_URL", &redis.url)
        .env("TICKET_HUB_ACCOUNTS__REDIS_KEY_PREFIX", &redis.prefix)
        .env_remove("TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_FILE")
        .env("TICKET_HUB_ACCOUNTS__JWT__PRIVATE_KEY_PEM", &key_pem)
        .env("TICKET_HUB_ACCOUNTS__ARGON2__MEMORY_KIB", "1024")
        .env("TICKET_HUB_ACCOUNTS__ARGON2__ITERATIONS", "1")
        .env("RUST_LOG", "debug")
        .current_dir(std::env::temp_dir())
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut seen = String::new();
    // The gRPC port and the HTTP one are logged on lines of their own.
    let (mut port, mut grpc_port) = (None, None);
    let (port, grpc_port) = loop {
        let mut line = String::new();
        assert!(stdout.read_line(&mut line).await.unwrap() > 0, "exited early: {seen}");
        seen.push_str(&line);
        let v: serde_json::Value = serde_json::from_str(&line).unwrap();
        port = port.or(v["port"].as_u64());
        grpc_port = grpc_port.or(v["grpc_port"].as_u64());
        if let (Some(p), Some(g)) = (port, grpc_port) {
            break (u16::try_from(p).unwrap(), g);
        }
    };
    let app = TestApp::spawn(port, |_| async { Ok(()) });
    let password = "very secret password 42";
    let res =
        app.post_json("/api/v1/signup", &json!({"email": "s@example.org", "name": "S", "password": password})).await;
    assert_eq!(res.status(), 201);
    let user_id = res.json::<serde_json::Value>().await.unwrap()["userId"].as_str().unwrap().to_owned();
    let login: serde_json::Value = app
        .post_json("/api/v1/login", &json!({"email": "s@example.org", "password": password}))
        .await
        .json()
        .await
        .unwrap();
    let token = login["accessToken"].as_str().unwrap().to_owned();
    let me = app.client.get(app.url("/api/v1/me")).header("authorization", format!("Bearer {token}")).send().await;
    assert_eq!(me.unwrap().status(), 200);
    let mut grpc = proto::accounts::v1::accounts_service_client::AccountsServiceClient::connect(format!(
        "http://127.0.0.1:{grpc_port}"
    ))
    .await
    .unwrap();
    for id in [user_id.clone(), uuid::Uuid::now_v7().to_string()] {
        let mut req = tonic::Request::new(proto::accounts::v1::GetUserByIdRequest { id });
        req.metadata_mut().insert("x-correlation-id", "grpc-corr-42".parse().unwrap());
        let _ = grpc.get_user_by_id(req).await;
    }

    let _ = tokio::process::Command::new("kill").arg("-TERM").arg(child.id().unwrap().to_string()).status().await;
    let _ = tokio::time::timeout(std::time::Duration::from_secs(10), child.wait()).await;
    stdout.read_to_string(&mut seen).await.unwrap();
    assert!(seen.contains("logged in"), "the log was read: {seen}");

    let grpc_lines: Vec<serde_json::Value> = seen
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["span"]["method"] == "GetUserById")
        .collect();
    assert!(
        grpc_lines.iter().any(|v| v["message"] == "GetUserById ok")
            && grpc_lines.iter().any(|v| v["message"] == "GetUserById failed"),
        "{seen}"
    );
    assert!(grpc_lines.iter().all(|v| v["span"]["correlation_id"] == "grpc-corr-42"), "{grpc_lines:?}");

    assert!(!seen.contains(password), "password in the log");
    assert!(!seen.contains(&token), "token in the log");
    assert!(!seen.contains(token.split('.').nth(2).unwrap()), "token signature in the log");
    let key_body = key_pem.lines().nth(1).unwrap();
    assert!(!seen.contains(key_body), "private key in the log");
}
