use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    platform::telemetry::init(accounts::SERVICE);
    accounts::cli::run(accounts::cli::Cli::parse()).await
}
