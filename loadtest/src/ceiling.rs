//! The read ceiling: the cheapest HTTP endpoint that can serve the gateway's cached reads on
//! this machine, as pgbench is the write ceiling.
//!
//! A bare axum server (the `read-ceiling` binary, a process of its own like the gateway) that
//! answers each POST with the very bytes the gateway gave for the same body, fetched with one
//! Redis `GET`. It parses nothing, checks nothing and builds nothing, so what a cached
//! `events` page costs the gateway beyond this (GraphQL parsing and validation, the generation
//! check, decoding and re-serialising the page, limits, metrics, logs) is the gap between the
//! two rates. A body seen for the first time is asked of the gateway once and stored (the
//! warm-up does that), so the measured requests are all hits.

use std::hash::{Hash, Hasher};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use platform::redis::RedisPool;

struct Ceiling {
    redis: RedisPool,
    prefix: String,
    upstream: String,
    http: reqwest::Client,
}

fn key(prefix: &str, body: &[u8]) -> String {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    body.hash(&mut h);
    format!("{prefix}{:016x}", h.finish())
}

fn json(bytes: Vec<u8>) -> Response {
    ([(header::CONTENT_TYPE, "application/json")], bytes).into_response()
}

fn failed(what: &str, e: impl std::fmt::Display) -> Response {
    (StatusCode::BAD_GATEWAY, format!("{what}: {e}")).into_response()
}

async fn answer(State(c): State<Arc<Ceiling>>, body: Bytes) -> Response {
    let key = key(&c.prefix, &body);
    let mut conn = match c.redis.get().await {
        Ok(conn) => conn,
        Err(e) => return failed("redis", e),
    };
    let cached: Option<Vec<u8>> = match redis::cmd("GET").arg(&key).query_async(&mut *conn).await {
        Ok(v) => v,
        Err(e) => return failed("redis", e),
    };
    if let Some(bytes) = cached {
        return json(bytes);
    }
    let fetched = c.http.post(&c.upstream).header(header::CONTENT_TYPE, "application/json").body(body).send().await;
    let bytes = match fetched {
        Ok(res) => match res.bytes().await {
            Ok(b) => b.to_vec(),
            Err(e) => return failed("upstream", e),
        },
        Err(e) => return failed("upstream", e),
    };
    let stored: Result<(), _> =
        redis::cmd("SET").arg(&key).arg(&bytes).arg("EX").arg(600).query_async(&mut *conn).await;
    if let Err(e) = stored {
        return failed("redis", e);
    }
    json(bytes)
}

/// Serves the ceiling on `addr` until the process ends; prints `listening <addr>` first.
pub async fn serve(addr: SocketAddr, redis_url: &str, prefix: &str, upstream: &str) -> anyhow::Result<()> {
    let state = Arc::new(Ceiling {
        redis: platform::redis::pool_lazy(redis_url, 64, Duration::from_secs(2))?,
        prefix: prefix.to_owned(),
        upstream: upstream.to_owned(),
        http: reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?,
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    println!("listening {}", listener.local_addr()?);
    let app = Router::new().route("/graphql", post(answer)).with_state(state);
    axum::serve(listener, app).await?;
    Ok(())
}

/// The ceiling as a child process beside the gateway; killed when dropped.
pub struct Process {
    /// Held so the process dies with it (`kill_on_drop`).
    _child: tokio::process::Child,
    pub url: String,
}

impl Process {
    /// Starts the `read-ceiling` binary next to this one, on a free port.
    pub async fn start(redis_url: &str, upstream: &str) -> anyhow::Result<Self> {
        use tokio::io::AsyncBufReadExt;
        let exe = std::env::current_exe()?.with_file_name("read-ceiling");
        let mut child = tokio::process::Command::new(&exe)
            .args(["--redis", redis_url, "--upstream", upstream])
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow::anyhow!("read-ceiling: no stdout"))?;
        let mut lines = tokio::io::BufReader::new(stdout).lines();
        let line = tokio::time::timeout(Duration::from_secs(10), lines.next_line())
            .await
            .map_err(|_| anyhow::anyhow!("read-ceiling did not start within 10 s"))??
            .unwrap_or_default();
        let addr = line.strip_prefix("listening ").ok_or_else(|| anyhow::anyhow!("read-ceiling said {line:?}"))?;
        Ok(Self { _child: child, url: format!("http://{addr}/graphql") })
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_same_body_has_the_same_key_and_another_body_another() {
        let a = super::key("p:", br#"{"query":"{ events { id } }"}"#);
        assert_eq!(a, super::key("p:", br#"{"query":"{ events { id } }"}"#));
        assert_ne!(a, super::key("p:", br#"{"query":"{ events { title } }"}"#));
        assert!(a.starts_with("p:"));
    }
}
