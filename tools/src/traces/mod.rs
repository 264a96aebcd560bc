//! The local trace viewer: an in-memory OTLP receiver with a browser UI, so a developer sees
//! one order's trace on a laptop with no internet and no Docker (`./dev up` starts it; the
//! compose stack has Jaeger instead).
//!
//! It listens where a collector would (OTLP/gRPC on 4317, the standard port, so the services'
//! default `OTEL_EXPORTER_OTLP_ENDPOINT` finds it) and serves its pages where Jaeger would
//! (16686). Nothing is written to disk: a restart forgets every trace, which is what a local
//! debugging tool wants, and the memory is bounded by `max_traces` and `max_spans`.
//!
//! # Layout
//! - [`Settings`] / [`Application`]: figment settings like every service's
//!   (`TICKET_HUB_TRACE_VIEWER__*`), both listeners bound at build so tests use port 0.
//! - [`store`]: ids, spans, the bounded store and its queries, the waterfall order.
//! - [`receiver`]: OTLP/gRPC `TraceService` and OTLP/HTTP `POST /v1/traces` into the store.
//! - [`ui`]: the HTML pages (`/`, `/trace/{id}`), server-rendered, no script, no external asset.
//! - [`api`]: the same as JSON (`/api/traces`, `/api/traces/{id}`) for scripts.

pub mod api;
pub mod receiver;
pub mod store;
pub mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::post;
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::TraceServiceServer;
use platform::http::Server;
use platform::ops::Readiness;
use serde::{Deserialize, Serialize};
use tokio::net::TcpListener;
use tokio_stream::wrappers::TcpListenerStream;
use tokio_util::sync::CancellationToken;

use self::store::{Inserted, Limits, Store};

pub const SERVICE: &str = "trace-viewer";

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// OTLP/gRPC listen address (default `127.0.0.1:4317`, the protocol's standard port).
    pub otlp_addr: SocketAddr,
    /// The pages, the JSON API, OTLP/HTTP (`POST /v1/traces`) and the ops endpoints (default
    /// `127.0.0.1:16686`, Jaeger's UI port, so bookmarks work with either).
    pub http_addr: SocketAddr,
    /// Traces kept (default 2000); past it the least recently updated trace goes.
    pub max_traces: usize,
    /// Spans kept across all traces (default 100000), and the most one trace may hold.
    pub max_spans: usize,
}

platform::defaults_from!(Settings, "defaults/trace-viewer.toml");

impl Settings {
    /// Fails at start naming the key: a viewer that keeps nothing would look broken.
    pub fn validate(&self) -> anyhow::Result<()> {
        anyhow::ensure!(self.max_traces >= 1, "max_traces: must be at least 1");
        anyhow::ensure!(self.max_spans >= 1, "max_spans: must be at least 1");
        Ok(())
    }
}

/// Publishes the store's counters after an export; `refused` are the spans the door refused.
pub(crate) fn record_metrics(store: &Store, inserted: Inserted, refused: i64) {
    let stats = store.stats();
    metrics::counter!("trace_viewer_spans_received_total").absolute(stats.spans_received);
    metrics::counter!("trace_viewer_spans_refused_total").increment(u64::try_from(refused).unwrap_or(0));
    metrics::counter!("trace_viewer_spans_dropped_total").absolute(stats.spans_dropped);
    metrics::counter!("trace_viewer_traces_evicted_total").absolute(stats.traces_evicted);
    metrics::counter!("trace_viewer_spans_evicted_total").absolute(stats.spans_evicted);
    metrics::gauge!("trace_viewer_traces_kept").set(stats.traces_kept as f64);
    metrics::gauge!("trace_viewer_spans_kept").set(stats.spans_kept as f64);
    tracing::debug!(accepted = inserted.accepted, dropped = inserted.dropped, refused, "export stored");
}

/// The routes of the HTTP listener, on a given store (tests build one without listeners).
pub fn router(store: Arc<Store>) -> Router {
    let readiness = {
        let store = store.clone();
        Readiness::new(Vec::new()).with_note("traces", move || {
            let s = store.stats();
            format!("{} traces, {} spans kept", s.traces_kept, s.spans_kept)
        })
    };
    let otlp_http = Router::new()
        .route("/v1/traces", post(receiver::http_export))
        // Export batches are larger than the 64 KiB every API takes.
        .layer(DefaultBodyLimit::max(receiver::MAX_HTTP_BODY));
    let routes = ui::routes().merge(api::routes()).merge(otlp_http).with_state(store);
    platform::http::app(routes, readiness)
}

pub struct Application {
    /// Pages, JSON, OTLP/HTTP and ops, bound at build so tests learn the port.
    http: Server,
    /// OTLP/gRPC, bound at build for the same reason.
    otlp: TcpListener,
    otlp_port: u16,
    /// Shared by both listeners: the receiver writes, the pages read.
    store: Arc<Store>,
}

impl Application {
    /// Binds both listeners; a port taken fails here, naming the address.
    pub async fn build(settings: Settings) -> anyhow::Result<Self> {
        settings.validate()?;
        let store = Arc::new(Store::new(Limits { max_traces: settings.max_traces, max_spans: settings.max_spans }));
        let otlp = TcpListener::bind(settings.otlp_addr)
            .await
            .map_err(|e| anyhow::anyhow!("otlp_addr {}: {e}", settings.otlp_addr))?;
        let otlp_port = otlp.local_addr()?.port();
        let http = Server::bind(settings.http_addr, router(store.clone()))
            .await
            .map_err(|e| anyhow::anyhow!("http_addr {}: {e}", settings.http_addr))?;
        Ok(Self { http, otlp, otlp_port, store })
    }

    /// The HTTP port (pages, JSON, `/v1/traces`, ops).
    pub fn port(&self) -> u16 {
        self.http.port()
    }

    /// The OTLP/gRPC port.
    pub fn otlp_port(&self) -> u16 {
        self.otlp_port
    }

    /// Serves both listeners until `shutdown`; either failing stops the other.
    pub async fn run_until_stopped(self, shutdown: CancellationToken) -> anyhow::Result<()> {
        tracing::info!(otlp_port = self.otlp_port, "OTLP/gRPC listening");
        let grpc = tonic::transport::Server::builder()
            .add_service(
                TraceServiceServer::new(receiver::Receiver { store: self.store })
                    .max_decoding_message_size(receiver::MAX_HTTP_BODY),
            )
            .serve_with_incoming_shutdown(TcpListenerStream::new(self.otlp), shutdown.clone().cancelled_owned());
        let http = self.http.run(shutdown.clone());
        let result = tokio::try_join!(async { http.await.map_err(anyhow::Error::from) }, async {
            grpc.await.map_err(anyhow::Error::from)
        });
        shutdown.cancel();
        result.map(drop)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_defaults_are_valid_and_on_the_ports_dev_expects() {
        let s = Settings::default();
        s.validate().unwrap();
        assert_eq!((s.otlp_addr.port(), s.http_addr.port()), (4317, 16686));
        assert_eq!(platform::settings::env_prefix(SERVICE), "TICKET_HUB_TRACE_VIEWER__");
        let none = Settings { max_traces: 0, ..Settings::default() };
        assert_eq!(none.validate().unwrap_err().to_string(), "max_traces: must be at least 1");
    }
}
