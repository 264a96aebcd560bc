#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init(accounts::SERVICE);
    let settings: accounts::Settings = platform::settings::load(accounts::SERVICE, None)?;
    let app = accounts::Application::build(settings).await?;
    app.run_until_stopped(platform::shutdown::on_signal()).await
}
