#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let settings: orders::Settings = platform::cli::serve_settings(orders::SERVICE)?;
    let _telemetry = platform::telemetry::init(orders::SERVICE);
    let shards = shard_router::ShardMap::load(&settings.shards_file)?;
    let app = orders::Application::build(settings, shards).await?;
    app.run_until_stopped(platform::shutdown::on_signal()).await
}
