use std::process::ExitCode;

use clap::Parser;
use orders::relay::cli;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    cli::run(cli::Args::parse()).await
}
