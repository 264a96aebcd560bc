//! Spawning accounts for a test, and typed requests.

use std::path::PathBuf;
use std::time::Duration;

use accounts::settings::{Settings, ThrottleSettings};
use platform::db::Schema;
use serde_json::{Value, json};
use test_stack::TestUser;
use testkit::{TestApp, TestDb, TestRedis};

pub use test_stack::services::key_file;

pub struct Ctx {
    pub app: TestApp,
    pub grpc_port: u16,
    pub settings: Settings,
    pub db: TestDb,
    #[allow(dead_code, reason = "held for its clean-up on drop")]
    pub redis: TestRedis,
    pub key_pem: String,
    _dir: tempfile::TempDir,
}

/// [`test_stack::services::accounts_settings`] (port 0, cheap argon2), with a login throttle
/// these tests can reach.
pub async fn settings(db: &TestDb, redis: &TestRedis, key: PathBuf) -> Settings {
    Settings {
        login_throttle: ThrottleSettings { max_failures: 5, window: Duration::from_secs(60) },
        ..test_stack::services::accounts_settings(db, redis, &redis.prefix, key)
    }
}

pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> Ctx {
    let (db, redis) = (TestDb::global(Schema::Accounts).await.unwrap(), TestRedis::new().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(dir.path());
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let mut settings = settings(&db, &redis, key).await;
    tweak(&mut settings);
    let (app, grpc_port) = test_stack::services::spawn_accounts(settings.clone()).await;
    Ctx { app, grpc_port, settings, db, redis, key_pem, _dir: dir }
}

pub async fn spawn() -> Ctx {
    spawn_with(|_| {}).await
}

/// Status and JSON body of a response.
pub async fn json(res: reqwest::Response) -> (u16, Value) {
    let status = res.status().as_u16();
    let body = res.json().await.unwrap_or(Value::Null);
    (status, body)
}

pub use testkit::app::error_fields as fields;

impl Ctx {
    pub async fn signup(&self, email: &str, password: &str, role: Option<&str>) -> (u16, Value) {
        let mut body = json!({"email": email, "name": "Test User", "password": password});
        if let Some(r) = role {
            body["role"] = json!(r);
        }
        json(self.app.post_json("/api/v1/signup", &body).await).await
    }

    pub async fn login(&self, email: &str, password: &str) -> (u16, Value) {
        json(self.app.post_json("/api/v1/login", &json!({"email": email, "password": password})).await).await
    }

    /// Signs up `email` and logs in.
    pub async fn user(&self, email: &str, role: Option<&str>) -> TestUser {
        let (status, body) = self.signup(email, "correct horse battery", role).await;
        assert_eq!(status, 201, "{body}");
        let (status, login) = self.login(email, "correct horse battery").await;
        assert_eq!(status, 200, "{login}");
        TestUser {
            id: body["userId"].as_str().unwrap().parse().unwrap(),
            email: email.to_owned(),
            token: login["accessToken"].as_str().unwrap().to_owned(),
        }
    }

    pub async fn me(&self, token: Option<&str>) -> (u16, Value) {
        let mut req = self.app.client.get(self.app.url("/api/v1/me"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        json(req.send().await.unwrap()).await
    }
}
