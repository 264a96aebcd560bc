//! Calls to the accounts, orders and projector HTTP APIs: one pooled client, a timeout per call, and
//! the caller's `Authorization`, idempotency key and correlation id on every request.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use axum::http::{HeaderMap, HeaderValue, header};
use platform::correlation::{self, CorrelationId};
use platform::trace_context;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tracing::Instrument as _;

use crate::error::GatewayError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Service {
    Accounts,
    Orders,
    /// The read models (CQRS): eventually consistent, never on a mutation's path.
    Projector,
}

impl Service {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accounts => "accounts",
            Self::Orders => "orders",
            Self::Projector => "projector",
        }
    }
}

impl fmt::Display for Service {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What one GraphQL request did downstream, returned to the client in
/// `extensions.downstreamCalls` and `extensions.cache`: what an operation costs is visible
/// without reading the gateway's metrics (and tests assert batching and caching with it).
#[derive(Debug, Default)]
pub struct Tally {
    accounts: AtomicU32,
    orders: AtomicU32,
    projector: AtomicU32,
    pub cache_hits: AtomicU32,
    pub cache_misses: AtomicU32,
    /// The cache generations this request's reads were built on.
    cache_deps: std::sync::Mutex<crate::cache::Deps>,
}

impl Tally {
    fn called(&self, service: Service) {
        match service {
            Service::Accounts => self.accounts.fetch_add(1, Ordering::Relaxed),
            Service::Orders => self.orders.fetch_add(1, Ordering::Relaxed),
            Service::Projector => self.projector.fetch_add(1, Ordering::Relaxed),
        };
    }

    /// The generations read so far (held only while one is added; never across an await).
    pub fn deps(&self) -> std::sync::MutexGuard<'_, crate::cache::Deps> {
        self.cache_deps.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    pub fn calls(&self, service: Service) -> u32 {
        match service {
            Service::Accounts => self.accounts.load(Ordering::Relaxed),
            Service::Orders => self.orders.load(Ordering::Relaxed),
            Service::Projector => self.projector.load(Ordering::Relaxed),
        }
    }
}

/// The client request's headers that every downstream call carries on, taken once at the door.
/// Held by value (not in the correlation task-local) because DataLoader batches run on tasks of
/// their own.
#[derive(Clone)]
pub struct Caller {
    authorization: Option<HeaderValue>,
    idempotency_key: Option<HeaderValue>,
    pub correlation_id: CorrelationId,
    pub tally: Arc<Tally>,
    /// The trace context of the GraphQL operation, for downstream calls made where its span is
    /// not the current one (DataLoader batches run on tasks of their own).
    trace: trace_context::Context,
}

/// Written by hand so the token can never reach a log.
impl fmt::Debug for Caller {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Caller")
            .field("authorization", &self.authorization.as_ref().map(|_| "<redacted>"))
            .field("idempotency_key", &self.idempotency_key)
            .field("correlation_id", &self.correlation_id)
            .finish_non_exhaustive()
    }
}

impl Caller {
    /// `Authorization`, and `Idempotency-Key` or else `x-idempotency-key`, as the client sent
    /// them (the services validate them and answer in their own words).
    pub fn from_headers(headers: &HeaderMap, correlation_id: CorrelationId) -> Self {
        Self {
            authorization: headers.get(header::AUTHORIZATION).cloned(),
            idempotency_key: headers.get("idempotency-key").or_else(|| headers.get("x-idempotency-key")).cloned(),
            correlation_id,
            tally: Arc::default(),
            trace: trace_context::context_of(&tracing::Span::current()),
        }
    }

    pub fn is_authenticated(&self) -> bool {
        self.authorization.is_some()
    }
}

/// Whether a call carries the client's idempotency key: only the keyed creations do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyed {
    Yes,
    No,
}

/// The downstream APIs behind one pooled HTTP client.
#[derive(Clone)]
pub struct Downstream {
    client: reqwest::Client,
    accounts: String,
    orders: String,
    projector: String,
    timeout_ms: u64,
}

impl Downstream {
    /// One client for both services: keep-alive pools per host, `timeout` on every call.
    pub fn new(urls: [&str; 3], timeout: Duration, max_idle: usize) -> anyhow::Result<Self> {
        let [accounts_url, orders_url, projector_url] = urls;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout)
            .pool_max_idle_per_host(max_idle)
            .build()?;
        Ok(Self {
            client,
            accounts: accounts_url.trim_end_matches('/').to_owned(),
            orders: orders_url.trim_end_matches('/').to_owned(),
            projector: projector_url.trim_end_matches('/').to_owned(),
            timeout_ms: u64::try_from(timeout.as_millis()).unwrap_or(u64::MAX),
        })
    }

    /// The shared client, for readiness probes.
    pub fn client(&self) -> reqwest::Client {
        self.client.clone()
    }

    pub fn base(&self, service: Service) -> &str {
        match service {
            Service::Accounts => &self.accounts,
            Service::Orders => &self.orders,
            Service::Projector => &self.projector,
        }
    }

    /// `GET path`; `route` is the path's template, the metrics label.
    pub async fn get<T: DeserializeOwned>(
        &self,
        service: Service,
        route: &'static str,
        path: &str,
        caller: &Caller,
    ) -> Result<T, GatewayError> {
        let req = self.client.get(format!("{}{path}", self.base(service)));
        self.send(service, route, req, caller, Keyed::No).await
    }

    /// `POST path` with a JSON body.
    pub async fn post<T: DeserializeOwned>(
        &self,
        service: Service,
        route: &'static str,
        path: &str,
        caller: &Caller,
        body: &Value,
        keyed: Keyed,
    ) -> Result<T, GatewayError> {
        let req = self.client.post(format!("{}{path}", self.base(service))).json(body);
        self.send(service, route, req, caller, keyed).await
    }

    async fn send<T: DeserializeOwned>(
        &self,
        service: Service,
        route: &'static str,
        mut req: reqwest::RequestBuilder,
        caller: &Caller,
        keyed: Keyed,
    ) -> Result<T, GatewayError> {
        if let Ok(v) = HeaderValue::from_str(caller.correlation_id.as_str()) {
            req = req.header(correlation::HEADER, v);
        }
        if let Some(auth) = &caller.authorization {
            req = req.header(header::AUTHORIZATION, auth.clone());
        }
        if keyed == Keyed::Yes
            && let Some(key) = &caller.idempotency_key
        {
            req = req.header("idempotency-key", key.clone());
        }
        caller.tally.called(service);
        // One client span per call, the child of the operation's span wherever it runs (a
        // DataLoader batch runs on a task of its own, outside it); its context is the
        // `traceparent` the service continues.
        let span = tracing::info_span!(
            "downstream",
            otel.name = %format_args!("{service} {route}"),
            otel.kind = "client",
            service = service.as_str(),
            route,
            http.response.status_code = tracing::field::Empty,
        );
        trace_context::set_parent(&span, caller.trace.clone());
        let req = trace_context::http::inject_reqwest(&span, req);
        let started = Instant::now();
        let result = async {
            let res = req.send().await?;
            let status = res.status().as_u16();
            let retry_after = res
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| v.parse::<u64>().ok());
            let body = res.bytes().await?;
            Ok::<_, reqwest::Error>((status, retry_after, body))
        }
        .instrument(span.clone())
        .await;
        let labels = [("service", service.as_str()), ("route", route)];
        metrics::histogram!("gateway_downstream_request_duration_seconds", &labels)
            .record(started.elapsed().as_secs_f64());
        let (status, retry_after, body) = match result {
            Ok(r) => r,
            Err(e) => {
                let outcome = if e.is_timeout() { "timeout" } else { "error" };
                metrics::counter!("gateway_downstream_requests_total", "service" => service.as_str(), "route" => route, "status" => outcome).increment(1);
                return Err(GatewayError::transport(service, self.timeout_ms, &e));
            }
        };
        span.record("http.response.status_code", status);
        metrics::counter!("gateway_downstream_requests_total", "service" => service.as_str(), "route" => route, "status" => status.to_string()).increment(1);
        if (200..300).contains(&status) {
            serde_json::from_slice(&body)
                .map_err(|e| GatewayError::internal(&format!("{service} {route}: unexpected answer body"), e))
        } else {
            let json: Option<Value> = serde_json::from_slice(&body).ok();
            Err(GatewayError::from_downstream(service, status, json.as_ref(), retry_after))
        }
    }
}
