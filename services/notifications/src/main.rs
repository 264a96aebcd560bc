#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: notifications::Settings = platform::cli::serve_settings(notifications::SERVICE)?;
    let _telemetry = platform::telemetry::init(notifications::SERVICE);
    let app = notifications::Application::build(settings).await?;
    app.run_until_stopped(platform::shutdown::on_signal()).await
}
