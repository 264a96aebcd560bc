//! `read-ceiling`: the bare cached-read endpoint the load tool measures the gateway against
//! (see `loadtest::ceiling`).

use std::net::SocketAddr;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Answers each POST with the gateway's bytes for the same body, from one Redis GET")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:0")]
    addr: SocketAddr,
    #[arg(long, default_value = "redis://127.0.0.1:6379")]
    redis: String,
    #[arg(long, default_value = "loadtest:ceiling:")]
    prefix: String,
    /// The gateway, asked once per body never seen.
    #[arg(long, default_value = "http://127.0.0.1:4000/graphql")]
    upstream: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    loadtest::ceiling::serve(args.addr, &args.redis, &args.prefix, &args.upstream).await
}
