//! Structured JSON logs through `tracing`, and OpenTelemetry traces over OTLP when a collector is
//! configured.
//!
//! Traces are configured by the standard `OTEL_*` variables only (every OpenTelemetry tool reads
//! the same ones, so a collector is pointed at the same way for every service):
//! - `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT` (gRPC, e.g.
//!   `http://127.0.0.1:4317`): export on. Neither set: no export, and no OpenTelemetry layer at
//!   all, so a service without a collector pays nothing for tracing.
//! - `OTEL_SDK_DISABLED=true`: off even when an endpoint is set.
//! - `OTEL_SERVICE_NAME`: the `service.name` of the spans (default: the service's own name);
//!   `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_BSP_*` and `OTEL_EXPORTER_OTLP_TIMEOUT` as the SDK reads
//!   them.
//!
//! Spans leave through the SDK's batch processor: a bounded queue (`OTEL_BSP_MAX_QUEUE_SIZE`,
//! 2048) that drops spans when full, exported from a thread of its own with a short timeout. A
//! slow, down or unreachable collector therefore never slows or fails a request; it only loses
//! spans. `RUST_LOG` filters the logs; spans are exported from `info` up whatever `RUST_LOG`
//! says (`OTEL_TRACES_FILTER`, same syntax, to narrow or widen them).

use std::time::Duration;

use opentelemetry::trace::TracerProvider as _;
use opentelemetry_otlp::WithExportConfig as _;
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::Layer as _;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;

/// How long one export may take before its spans are given up: short, so a collector that
/// stopped answering holds the export thread (never a request) only briefly.
const EXPORT_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a stopping service waits for its last spans to leave.
const SHUTDOWN_TIMEOUT: Duration = Duration::from_secs(3);
/// The target of the spans of `/healthz`, `/readyz` and `/metrics` requests, which the default
/// trace filter leaves out (`OTEL_TRACES_FILTER=info,platform::ops=info` puts them back).
pub const OPS_TARGET: &str = "platform::ops";
/// Spans of the crates below ours (HTTP/2 frames, connection pools) say nothing about an order,
/// nor do the probes and scrapes of [`OPS_TARGET`].
const DEFAULT_TRACES_FILTER: &str =
    "info,h2=off,hyper=off,hyper_util=off,tower=off,tonic=off,rdkafka=off,sqlx=warn,platform::ops=off";

/// What [`init`] started. Dropping it flushes and shuts the tracer provider down, so the spans of
/// a service's last requests reach the collector: hold it for the whole of `main`.
#[must_use = "dropping the guard shuts tracing down: bind it with `let _telemetry = ...`"]
#[derive(Debug)]
pub struct Telemetry {
    /// The provider exporting this process's spans; `None` when not exporting, or when an
    /// earlier `init` of the same process installed the subscriber (it owns the provider).
    provider: Option<SdkTracerProvider>,
}

impl Telemetry {
    /// Whether this guard's process exports spans (the first `init` with an endpoint).
    pub fn exporting(&self) -> bool {
        self.provider.is_some()
    }
}

impl Drop for Telemetry {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(SHUTDOWN_TIMEOUT)
        {
            tracing::warn!(error = %e, "trace export did not shut down cleanly; the last spans may be lost");
        }
    }
}

/// Whether the `OTEL_*` variables ask for export.
fn export_configured() -> bool {
    let set = |name: &str| std::env::var(name).is_ok_and(|v| !v.trim().is_empty());
    let disabled = std::env::var("OTEL_SDK_DISABLED").is_ok_and(|v| v.trim().eq_ignore_ascii_case("true"));
    !disabled && (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT"))
}

/// The tracer provider exporting over OTLP/gRPC; `Err` for an endpoint that cannot be used
/// (e.g. not a URI): the service then runs without export rather than not at all.
fn provider(service: &'static str) -> Result<SdkTracerProvider, opentelemetry_otlp::ExporterBuildError> {
    // `connect_lazy`: building never waits for the collector, so a service starts whether it
    // is up or not. The builder reads the endpoint from the OTEL_* variables.
    let exporter = opentelemetry_otlp::SpanExporter::builder().with_tonic().with_timeout(EXPORT_TIMEOUT).build()?;
    let mut resource =
        Resource::builder().with_attribute(opentelemetry::KeyValue::new("service.version", env!("CARGO_PKG_VERSION")));
    // The detectors already read OTEL_SERVICE_NAME; ours is only the default.
    if std::env::var("OTEL_SERVICE_NAME").is_err() {
        resource = resource.with_service_name(service);
    }
    Ok(SdkTracerProvider::builder().with_resource(resource.build()).with_batch_exporter(exporter).build())
}

/// Installs the JSON subscriber for `service`, with span export when configured (see the module
/// docs); `RUST_LOG` filters the logs (default `info`). Safe to call twice (tests start several
/// services in one process): later calls keep the first subscriber and return an idle guard.
///
/// Call it inside the Tokio runtime (the first lines of an async `main`): the OTLP exporter's
/// connection is driven by it.
pub fn init(service: &'static str) -> Telemetry {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let fmt = tracing_subscriber::fmt::layer()
        .json()
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .with_filter(filter);
    // The exporter's connection is a task on the runtime; outside one there is nothing to
    // drive it (a synchronous test helper, say), so no export there.
    let mut filter_error = None;
    let (otel, provider, export_error) = if export_configured() && tokio::runtime::Handle::try_current().is_ok() {
        match provider(service) {
            Ok(provider) => {
                let traces = match std::env::var("OTEL_TRACES_FILTER") {
                    Ok(f) => EnvFilter::try_new(&f).unwrap_or_else(|e| {
                        filter_error = Some(format!("OTEL_TRACES_FILTER {f:?}: {e}"));
                        EnvFilter::new(DEFAULT_TRACES_FILTER)
                    }),
                    Err(_) => EnvFilter::new(DEFAULT_TRACES_FILTER),
                };
                let layer = tracing_opentelemetry::layer()
                    .with_tracer(provider.tracer(service))
                    .with_tracked_inactivity(false)
                    .with_filter(traces);
                (Some(layer), Some(provider), None)
            }
            Err(e) => (None, None, Some(e)),
        }
    } else {
        (None, None, None)
    };
    let installed = tracing_subscriber::registry().with(fmt).with(otel).try_init().is_ok();
    if installed {
        let exporting = provider.is_some();
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), exporting, "telemetry started");
        if let Some(e) = export_error {
            tracing::warn!(error = %e, "OTLP trace export is configured but cannot start; running without it");
        }
        if let Some(e) = filter_error {
            tracing::warn!(error = %e, "not a filter; exporting with the default one: {DEFAULT_TRACES_FILTER}");
        }
    }
    // The metrics recorder from the first line of main: a metric recorded while a service
    // builds (before its HTTP app exists) would otherwise go nowhere.
    crate::metrics::handle();
    // A provider whose layer was not installed (an earlier init won) would only drop spans.
    Telemetry { provider: if installed { provider } else { None } }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_second_init_in_one_process_is_harmless() {
        let first = init("test-a");
        let second = init("test-b");
        assert!(!second.exporting(), "only the first init owns a provider");
        drop(second);
        drop(first);
        tracing::info!("still logging after both guards are gone");
    }
}
