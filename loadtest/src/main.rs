//! `loadtest`: drives the running stack through the GraphQL gateway. See the crate docs.

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = loadtest::cli::Args::parse();
    loadtest::run(args).await
}
