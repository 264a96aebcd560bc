#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init(orders::SERVICE);
    let settings: orders::Settings = platform::settings::load(orders::SERVICE, None)?;
    let shards = shard_router::ShardMap::load(&settings.shards_file)?;
    let app = orders::Application::build(settings, shards).await?;
    app.run_until_stopped(platform::shutdown::on_signal()).await
}
