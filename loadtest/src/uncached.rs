//! `browse --uncached`: a second gateway beside the stack's, alike in all but its cache, whose
//! Redis address has nothing listening, so every read goes to orders. The same reads through
//! it, in the same run, are the uncached reference the cache's gain is a ratio to.

use std::time::{Duration, Instant};

/// The second gateway as a child process; killed when dropped.
pub struct Gateway {
    /// Held so the process dies with it (`kill_on_drop`).
    _child: tokio::process::Child,
    pub url: String,
}

impl Gateway {
    /// Starts the `gateway` binary next to this one on a free port, in the current directory
    /// (where the stack's `shards.toml` is), and waits until it answers `/healthz`.
    pub async fn start() -> anyhow::Result<Self> {
        let exe = std::env::current_exe()?.with_file_name("gateway");
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        // Port 1 refuses at once; the retry window keeps every read off Redis after that.
        let child = tokio::process::Command::new(&exe)
            .env("TICKET_HUB_GATEWAY__HTTP_ADDR", format!("127.0.0.1:{port}"))
            .env("TICKET_HUB_GATEWAY__REDIS_URL", "redis://127.0.0.1:1")
            .env("TICKET_HUB_GATEWAY__REDIS_RETRY_MS", "3600000")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", exe.display()))?;
        let http = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(15);
        let health = format!("http://127.0.0.1:{port}/healthz");
        while !http.get(&health).send().await.is_ok_and(|r| r.status().is_success()) {
            anyhow::ensure!(Instant::now() < deadline, "the uncached gateway did not answer {health} within 15 s");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(Self { _child: child, url: format!("http://127.0.0.1:{port}/graphql") })
    }
}
