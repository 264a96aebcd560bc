//! `trace-viewer`: receives OTLP traces and shows them in a browser (see `tools::traces` and
//! docs/observability.md). `./dev up` starts it before the services.

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: tools::traces::Settings = platform::cli::serve_settings(tools::traces::SERVICE)?;
    platform::telemetry::init(tools::traces::SERVICE);
    let app = tools::traces::Application::build(settings).await?;
    tracing::info!(http_port = app.port(), otlp_port = app.otlp_port(), "trace viewer started");
    app.run_until_stopped(platform::shutdown::on_signal()).await
}
