#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init(gateway::SERVICE);
    let settings: gateway::Settings = platform::settings::load(gateway::SERVICE, None)?;
    let app = gateway::Application::build(settings).await?;
    app.run_until_stopped(platform::shutdown::on_signal()).await
}
