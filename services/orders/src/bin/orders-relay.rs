use std::process::ExitCode;

use orders::relay::cli;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    cli::run(cli::Args::parse_as("orders-relay", cli::ABOUT)).await
}
