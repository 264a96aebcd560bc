#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init(notifications::SERVICE);
    let settings: notifications::Settings = platform::settings::load(notifications::SERVICE, None)?;
    let app = notifications::Application::build(settings).await?;
    app.run_until_stopped(platform::shutdown::on_signal()).await
}
