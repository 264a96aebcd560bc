use std::process::ExitCode;

use clap::Parser;
use orders::rebalance;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    rebalance::run(rebalance::Args::parse()).await
}
