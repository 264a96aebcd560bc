//! The three operational endpoints every service serves.
//!
//! - `/healthz`: the process is alive and serving; never touches a dependency, so an
//!   orchestrator does not restart a healthy process because its database blinked.
//! - `/readyz`: every dependency answers within a deadline; 503 with a body naming what is down.
//! - `/metrics`: Prometheus text.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures::future::BoxFuture;
use serde::Serialize;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// How long one dependency may take to answer a readiness probe.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

type Probe = dyn Fn() -> BoxFuture<'static, Result<(), String>> + Send + Sync;

/// One named dependency probe, e.g. `postgres:na-1`.
#[derive(Clone)]
pub struct Check {
    name: String,
    probe: Arc<Probe>,
}

impl std::fmt::Debug for Check {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Check").field("name", &self.name).finish_non_exhaustive()
    }
}

impl Check {
    pub fn new<F, Fut>(name: impl Into<String>, probe: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Self { name: name.into(), probe: Arc::new(move || Box::pin(probe())) }
    }

    /// `SELECT 1` on a pool.
    pub fn postgres(name: impl Into<String>, pool: sqlx::PgPool) -> Self {
        Self::new(name, move || {
            let pool = pool.clone();
            async move { sqlx::query("select 1").execute(&pool).await.map(drop).map_err(|e| e.to_string()) }
        })
    }

    /// `PING` on a Redis pool.
    pub fn redis(name: impl Into<String>, pool: crate::redis::RedisPool) -> Self {
        Self::new(name, move || {
            let pool = pool.clone();
            async move { crate::redis::ping(&pool).await }
        })
    }

    /// A downstream HTTP service's `/healthz` (its liveness, not its readiness, so that one
    /// service's missing dependency does not cascade into every caller's readiness).
    pub fn http(name: impl Into<String>, client: reqwest::Client, url: String) -> Self {
        Self::new(name, move || {
            let (client, url) = (client.clone(), url.clone());
            async move {
                let res = client.get(&url).send().await.map_err(|e| e.to_string())?;
                if res.status().is_success() { Ok(()) } else { Err(format!("{url} answered {}", res.status())) }
            }
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Runs the probe with [`CHECK_TIMEOUT`].
    pub async fn run(&self) -> Result<(), String> {
        match tokio::time::timeout(CHECK_TIMEOUT, (self.probe)()).await {
            Ok(result) => result,
            Err(_) => Err(format!("no answer within {} ms", CHECK_TIMEOUT.as_millis())),
        }
    }
}

type Note = dyn Fn() -> String + Send + Sync;

/// The dependencies a service needs before it can serve traffic, and notes that `/readyz`
/// shows without failing on them (state an operator should see, such as a pending plan).
#[derive(Clone, Default)]
pub struct Readiness {
    checks: Vec<Check>,
    notes: Vec<(String, Arc<Note>)>,
}

impl std::fmt::Debug for Readiness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Readiness").field("checks", &self.checks).finish_non_exhaustive()
    }
}

impl Readiness {
    pub fn new(checks: Vec<Check>) -> Self {
        Self { checks, notes: Vec::new() }
    }

    /// Adds a note named `name`, computed on every probe.
    pub fn with_note(mut self, name: impl Into<String>, note: impl Fn() -> String + Send + Sync + 'static) -> Self {
        self.notes.push((name.into(), Arc::new(note)));
        self
    }

    fn notes(&self) -> BTreeMap<String, String> {
        self.notes.iter().map(|(name, note)| (name.clone(), note())).collect()
    }

    /// Runs every check concurrently; `Ok` names each up dependency, `Err` the down ones with
    /// their reason.
    pub async fn evaluate(&self) -> (bool, BTreeMap<String, String>) {
        let results =
            futures::future::join_all(self.checks.iter().map(|c| async move { (c.name.clone(), c.run().await) })).await;
        let ready = results.iter().all(|(_, r)| r.is_ok());
        let detail = results.into_iter().map(|(name, r)| (name, r.err().unwrap_or_else(|| "up".to_owned()))).collect();
        (ready, detail)
    }
}

/// The `/healthz`, `/readyz` and `/metrics` routes, to merge into a service's router.
pub fn router(readiness: Readiness) -> Router {
    routes().with_state(Arc::new(readiness)).into()
}

/// The same routes, documented ([`crate::openapi`] merges them into every service's document).
pub fn routes() -> OpenApiRouter<Arc<Readiness>> {
    OpenApiRouter::default().routes(routes!(healthz)).routes(routes!(readyz)).routes(routes!(metrics))
}

/// `/healthz`'s answer: the process serves. Never anything else.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Alive {
    pub status: AliveStatus,
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub enum AliveStatus {
    #[serde(rename = "ok")]
    Ok,
}

/// `/readyz`'s answer, ready or not: each check's state (`up` or why not) and the notes.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadyReport {
    pub status: ReadyStatus,
    /// The checks that are not up; only when not ready.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub down: Vec<String>,
    /// Every dependency check by name (`postgres`, `kafka`, `postgres:na-1`, …): `up`, or why not.
    pub checks: BTreeMap<String, String>,
    /// State an operator should see that does not fail readiness (a pending placement plan).
    pub notes: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub enum ReadyStatus {
    #[serde(rename = "ready")]
    Ready,
    #[serde(rename = "not ready")]
    NotReady,
}

/// Liveness: the process is up and serving. Touches no dependency.
#[utoipa::path(get, path = "/healthz", tag = "ops", operation_id = "healthz",
    responses((status = 200, description = "The process serves", body = Alive)))]
async fn healthz() -> axum::Json<Alive> {
    axum::Json(Alive { status: AliveStatus::Ok })
}

/// Readiness: every dependency answered within its deadline.
#[utoipa::path(get, path = "/readyz", tag = "ops", operation_id = "readyz", responses(
    (status = 200, description = "Every dependency is up", body = ReadyReport),
    (status = 503, description = "A dependency is down; `down` names it", body = ReadyReport),
))]
async fn readyz(State(readiness): State<Arc<Readiness>>) -> Response {
    let (ready, checks) = readiness.evaluate().await;
    let notes = readiness.notes();
    if ready {
        let body = ReadyReport { status: ReadyStatus::Ready, down: Vec::new(), checks, notes };
        (StatusCode::OK, axum::Json(body)).into_response()
    } else {
        let down: Vec<String> = checks.iter().filter(|(_, v)| v.as_str() != "up").map(|(k, _)| k.clone()).collect();
        tracing::warn!(?down, "not ready");
        let body = ReadyReport { status: ReadyStatus::NotReady, down, checks, notes };
        (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response()
    }
}

/// The process's metrics in the Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops", operation_id = "metrics", responses(
    (status = 200, description = "Prometheus text exposition, version 0.0.4", body = String,
     content_type = "text/plain; version=0.0.4"),
))]
async fn metrics() -> Response {
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], crate::metrics::render()).into_response()
}
