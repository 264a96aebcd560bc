#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = accounts::cli::Cli::parse_as("accounts", accounts::cli::ABOUT);
    let _telemetry = platform::telemetry::init(accounts::SERVICE);
    accounts::cli::run(cli).await
}
