#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    match projector::cli::run(projector::cli::Args::parse_as("projector", projector::cli::ABOUT)).await {
        // `projector status | head`: the reader has what it wanted.
        Err(e) if e.downcast_ref::<std::io::Error>().is_some_and(|io| io.kind() == std::io::ErrorKind::BrokenPipe) => {
            Ok(std::process::ExitCode::SUCCESS)
        }
        other => other,
    }
}
