use clap::Parser as _;

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    projector::cli::run(projector::cli::Args::parse()).await
}
