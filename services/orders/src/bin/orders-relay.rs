use orders::relay;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init(relay::SERVICE);
    let settings: relay::Settings = platform::settings::load(relay::SERVICE, None)?;
    let shards = shard_router::ShardMap::load(&settings.shards_file)?;
    let relay = relay::Relay::build(settings, shards).await?;
    relay.run_until_stopped(platform::shutdown::on_signal()).await
}
