use std::process::ExitCode;

use clap::Parser;
use orders::rebalance;

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    // The tool prints for people, so no JSON log subscriber; the metrics recorder is installed
    // for `apply --metrics-addr`.
    platform::metrics::handle();
    rebalance::run(rebalance::Args::parse()).await
}
