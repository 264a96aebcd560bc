#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init(gateway::SERVICE);
    let settings: gateway::Settings = platform::settings::load(gateway::SERVICE, None)?;
    let shards = shard_router::ShardMap::load(&settings.shards_file)?;
    let app = gateway::Application::build(settings, shards).await?;
    app.run_until_stopped(platform::shutdown::on_signal()).await
}
