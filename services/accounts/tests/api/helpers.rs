//! Spawning accounts for a test, and typed requests.

use std::path::PathBuf;
use std::time::Duration;

use accounts::settings::{Argon2Settings, Settings, ThrottleSettings};
use accounts::{Application, keys};
use platform::db::Schema;
use serde_json::{Value, json};
use testkit::{TestApp, TestDb, TestRedis};

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

/// Cheap argon2 for tests: the parameters' cost is measured by the benchmark, not here.
pub fn fast_argon2() -> Argon2Settings {
    Argon2Settings { memory_kib: 1024, iterations: 1, parallelism: 1 }
}

pub fn key_file(dir: &tempfile::TempDir) -> PathBuf {
    let path = dir.path().join("jwt.pem");
    keys::generate_file(&path).unwrap();
    path
}

pub async fn settings(db: &TestDb, redis: &TestRedis, key: PathBuf) -> Settings {
    let mut s = Settings {
        http_addr: "127.0.0.1:0".parse().unwrap(),
        grpc_addr: "127.0.0.1:0".parse().unwrap(),
        database_url: db.url.clone(),
        redis_url: redis.url.clone(),
        redis_key_prefix: redis.prefix.clone(),
        argon2: fast_argon2(),
        login_throttle: ThrottleSettings { max_failures: 5, window: Duration::from_secs(60) },
        ..Settings::default()
    };
    s.jwt.private_key_file = Some(key);
    s
}

pub async fn spawn_with(tweak: impl FnOnce(&mut Settings)) -> Ctx {
    let (db, redis) = (TestDb::global(Schema::Accounts).await.unwrap(), TestRedis::new().unwrap());
    let dir = tempfile::tempdir().unwrap();
    let key = key_file(&dir);
    let key_pem = std::fs::read_to_string(&key).unwrap();
    let mut settings = settings(&db, &redis, key).await;
    tweak(&mut settings);
    let app = Application::build(settings.clone()).await.expect("build accounts");
    let grpc_port = app.grpc_port();
    let app = TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop));
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

/// The fields a validation error names.
pub fn fields(body: &Value) -> Vec<String> {
    body["details"]["fields"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

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

    /// Signs up and logs in; returns the user id and access token.
    pub async fn user(&self, email: &str, role: Option<&str>) -> (String, String) {
        let (status, body) = self.signup(email, "correct horse battery", role).await;
        assert_eq!(status, 201, "{body}");
        let (status, login) = self.login(email, "correct horse battery").await;
        assert_eq!(status, 200, "{login}");
        (body["userId"].as_str().unwrap().to_owned(), login["accessToken"].as_str().unwrap().to_owned())
    }

    pub async fn me(&self, token: Option<&str>) -> (u16, Value) {
        let mut req = self.app.client.get(self.app.url("/api/v1/me"));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        json(req.send().await.unwrap()).await
    }
}
