//! A service under test, started for real on port 0.

use serde::Serialize;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running service and a client for it. Dropping it cancels the service's shutdown token.
#[derive(Debug)]
pub struct TestApp {
    pub base_url: String,
    pub client: reqwest::Client,
    shutdown: CancellationToken,
    task: Option<JoinHandle<anyhow::Result<()>>>,
}

impl TestApp {
    /// Starts `run(shutdown)` (a service's `run_until_stopped`) on the current runtime; `port` is
    /// the port the service bound.
    pub fn spawn<F, Fut>(port: u16, run: F) -> Self
    where
        F: FnOnce(CancellationToken) -> Fut,
        Fut: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let shutdown = CancellationToken::new();
        let task = tokio::spawn(run(shutdown.clone()));
        Self {
            base_url: format!("http://127.0.0.1:{port}"),
            client: reqwest::Client::new(),
            shutdown,
            task: Some(task),
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base_url)
    }

    pub async fn get(&self, path: &str) -> reqwest::Response {
        self.client.get(self.url(path)).send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    pub async fn post_json<B: Serialize + ?Sized>(&self, path: &str, body: &B) -> reqwest::Response {
        self.client.post(self.url(path)).json(body).send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// Cancels the shutdown token and waits for the service to finish its graceful shutdown.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await?,
            None => Ok(()),
        }
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

impl TestApp {
    /// Asserts what every service must serve: `/healthz` 200, `/readyz` 200 listing `checks` as
    /// up, `/metrics` in Prometheus text with the request counter, and the correlation id echoed
    /// (a caller's well-formed one kept, a malformed one replaced).
    pub async fn assert_ops_endpoints(&self, checks: &[&str]) {
        let res = self.get("/healthz").await;
        assert_eq!(res.status(), 200, "/healthz");

        let res = self.get("/readyz").await;
        let status = res.status();
        let body: serde_json::Value = res.json().await.expect("/readyz body is JSON");
        assert_eq!(status, 200, "/readyz: {body}");
        for check in checks {
            assert_eq!(body["checks"][*check], "up", "/readyz check {check}: {body}");
        }

        let res =
            self.client.get(self.url("/healthz")).header("x-correlation-id", "test-corr-1").send().await.expect("GET");
        assert_eq!(res.headers()["x-correlation-id"], "test-corr-1");
        let res =
            self.client.get(self.url("/healthz")).header("x-correlation-id", "bad id!").send().await.expect("GET");
        let generated = res.headers()["x-correlation-id"].to_str().expect("ascii").to_owned();
        assert!(!generated.is_empty() && generated != "bad id!");

        let res = self.get("/metrics").await;
        assert_eq!(res.status(), 200);
        assert!(res.headers()["content-type"].to_str().expect("ascii").starts_with("text/plain"));
        let text = res.text().await.expect("metrics text");
        assert!(text.contains("http_requests_total"), "metrics: {text}");
    }

    /// Asserts `/readyz` answers 503 and names `down` among the dependencies that are down.
    pub async fn assert_not_ready_because(&self, down: &str) {
        let res = self.get("/readyz").await;
        assert_eq!(res.status(), 503);
        let body: serde_json::Value = res.json().await.expect("/readyz body is JSON");
        let names: Vec<&str> = body["down"].as_array().expect("down list").iter().filter_map(|v| v.as_str()).collect();
        assert!(names.contains(&down), "{down} not reported down: {body}");
        assert_ne!(body["checks"][down], "up");
    }
}

/// The value of metric `name` in a Prometheus text exposition, on the first line whose labels
/// include every `(label, value)` of `labels`; 0 when absent (a counter never incremented).
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let prefix = format!("{name}{{");
    text.lines()
        .filter(|l| l.starts_with(&prefix) || (labels.is_empty() && l.starts_with(&format!("{name} "))))
        .find(|l| labels.iter().all(|(k, v)| l.contains(&format!("{k}=\"{v}\""))))
        .and_then(|l| l.rsplit_once(' '))
        .map_or(0.0, |(_, v)| v.trim().parse().expect("a metric value"))
}

impl TestApp {
    /// [`metric_value`] of this app's `/metrics`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.get("/metrics").await.text().await.expect("metrics text"), name, labels)
    }
}
