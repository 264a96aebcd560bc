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

    /// POST `body` as JSON with `token` as bearer.
    pub async fn post_json_as<B: Serialize + ?Sized>(&self, path: &str, token: &str, body: &B) -> reqwest::Response {
        let req = self.client.post(self.url(path)).bearer_auth(token).json(body);
        req.send().await.unwrap_or_else(|e| panic!("POST {path}: {e}"))
    }

    /// GET with `token` as bearer.
    pub async fn get_as(&self, path: &str, token: &str) -> reqwest::Response {
        let req = self.client.get(self.url(path)).bearer_auth(token);
        req.send().await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// Cancels the shutdown token and waits for the service to finish its graceful shutdown.
    pub async fn stop(mut self) -> anyhow::Result<()> {
        self.shut_down().await
    }

    /// [`TestApp::stop`] in place, for a service held in a larger fixture (the orders of a
    /// stack whose test goes on without it); a second call returns at once.
    pub async fn shut_down(&mut self) -> anyhow::Result<()> {
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

/// The fields a validation error names (`details.fields[].field` of the `{error, message,
/// details}` body every service answers with).
pub fn error_fields(body: &serde_json::Value) -> Vec<String> {
    body["details"]["fields"]
        .as_array()
        .map(|a| a.iter().filter_map(|f| f["field"].as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// The value of metric `name` in a Prometheus text exposition: the sum of its samples whose
/// labels include every `(label, value)` of `labels`; 0 when there is none (a counter never
/// incremented). Naming every label of a series gives that series; naming fewer gives the
/// total over the rest (`gateway_cache_errors_total` over every operation, retries over every
/// shard). Labels match exactly: `consumer="g1"` is not `consumer="g10"`.
pub fn metric_value(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (series, value) = line.trim_end().rsplit_once(' ')?;
            let (series_name, series_labels) = match series.split_once('{') {
                Some((n, rest)) => (n, parse_labels(rest.strip_suffix('}')?)?),
                None => (series, Vec::new()),
            };
            let wanted = series_name == name
                && labels.iter().all(|(k, v)| series_labels.iter().any(|(sk, sv)| sk == k && sv == v));
            wanted.then(|| value.parse::<f64>().unwrap_or_else(|e| panic!("{line}: not a metric value: {e}")))
        })
        .sum()
}

/// `k="v",k2="v2"` (values with `\"`, `\\` and `\n` escapes); `None` when malformed.
fn parse_labels(mut s: &str) -> Option<Vec<(&str, String)>> {
    let mut out = Vec::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if s.is_empty() {
            return Some(out);
        }
        let (key, rest) = s.split_once("=\"")?;
        let (mut value, mut chars) = (String::new(), rest.char_indices());
        let end = loop {
            match chars.next()? {
                (i, '"') => break i,
                (_, '\\') => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    c => value.push(c),
                },
                (_, c) => value.push(c),
            }
        };
        out.push((key.trim(), value));
        s = &rest[end + 1..];
    }
}

impl TestApp {
    /// [`metric_value`] of this app's `/metrics`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        metric_value(&self.get("/metrics").await.text().await.expect("metrics text"), name, labels)
    }
}

#[cfg(test)]
mod tests {
    use super::metric_value;

    const TEXT: &str = r#"# TYPE errors_total counter
errors_total{operation="get"} 2
errors_total{operation="set"} 3
consumed_total{topic="t",consumer="g1",outcome="sent"} 5
consumed_total{topic="t",consumer="g10",outcome="sent"} 7
odd_total{path="a \"quoted\", b",x="1"} 4
epoch 9
latency_bucket{le="0.5"} 11
latency_sum 1.5
latency_count 11
"#;

    #[test]
    fn sums_the_series_carrying_the_labels() {
        assert_eq!(metric_value(TEXT, "errors_total", &[]), 5.0, "every operation");
        assert_eq!(metric_value(TEXT, "errors_total", &[("operation", "set")]), 3.0);
        assert_eq!(metric_value(TEXT, "consumed_total", &[("topic", "t")]), 12.0);
        assert_eq!(metric_value(TEXT, "epoch", &[]), 9.0, "a series without labels");
    }

    #[test]
    fn labels_and_names_match_exactly() {
        assert_eq!(metric_value(TEXT, "consumed_total", &[("consumer", "g1")]), 5.0, "not g10");
        assert_eq!(metric_value(TEXT, "odd_total", &[("path", "a \"quoted\", b"), ("x", "1")]), 4.0);
        assert_eq!(metric_value(TEXT, "latency", &[]), 0.0, "not latency_bucket, _sum or _count");
        assert_eq!(metric_value(TEXT, "errors", &[]), 0.0, "not errors_total");
        assert_eq!(metric_value(TEXT, "errors_total", &[("operation", "del")]), 0.0, "absent: 0");
    }
}
