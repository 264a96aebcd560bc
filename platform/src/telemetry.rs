//! Structured JSON logs through `tracing`.

use tracing_subscriber::EnvFilter;

/// Installs the JSON subscriber for `service`; `RUST_LOG` filters (default `info`). Safe to call
/// twice (tests start several services in one process): later calls keep the first subscriber.
pub fn init(service: &'static str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let installed = tracing_subscriber::fmt()
        .json()
        .with_env_filter(filter)
        .with_current_span(true)
        .with_span_list(false)
        .flatten_event(true)
        .try_init()
        .is_ok();
    if installed {
        tracing::info!(service, version = env!("CARGO_PKG_VERSION"), "telemetry started");
    }
    // The metrics recorder from the first line of main: a metric recorded while a service
    // builds (before its HTTP app exists) would otherwise go nowhere.
    crate::metrics::handle();
}
