//! `trace-viewer`: receives OTLP traces and shows them in a browser (see `tools::traces` and
//! docs/observability.md). `./dev up` starts it before the services.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: tools::traces::Settings = platform::cli::serve_settings(tools::traces::SERVICE)?;
    // Logs and metrics only in practice: ./dev starts it with OTEL_SDK_DISABLED=true, since a
    // viewer exporting its own receiving spans to itself would feed on every batch it takes.
    let _telemetry = platform::telemetry::init(tools::traces::SERVICE);
    let app = tools::traces::Application::build(settings).await?;
    tracing::info!(http_port = app.port(), otlp_port = app.otlp_port(), "trace viewer started");
    app.run_until_stopped(platform::shutdown::on_signal()).await
}
