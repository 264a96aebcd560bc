#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: gateway::Settings = platform::cli::serve_settings(gateway::SERVICE)?;
    let _telemetry = platform::telemetry::init(gateway::SERVICE);
    let shards = shard_router::ShardMap::load(&settings.shards_file)?;
    let app = gateway::Application::build(settings, shards).await?;
    app.run_until_stopped(platform::shutdown::on_signal()).await
}
