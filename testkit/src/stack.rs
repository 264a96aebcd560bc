//! Where the local stack's parts are. Defaults are the ports `./dev` uses; each can be
//! overridden so the same tests run against another stack.

use std::path::PathBuf;

fn env_or(var: &str, default: &str) -> String {
    std::env::var(var).unwrap_or_else(|_| default.to_owned())
}

/// The repository root (where `shards.toml` and `migrations/` are).
pub fn repo_root() -> PathBuf {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().map_or(manifest.clone(), PathBuf::from)
}

pub fn migrations_dir() -> PathBuf {
    repo_root().join("migrations")
}

pub fn shards_file() -> PathBuf {
    repo_root().join("shards.toml")
}

/// The global Postgres server, without a database: `TICKET_HUB_TEST_GLOBAL_PG`.
pub fn global_pg() -> String {
    env_or("TICKET_HUB_TEST_GLOBAL_PG", "postgres://postgres@127.0.0.1:5440")
}

/// `TICKET_HUB_TEST_REDIS_URL`.
pub fn redis_url() -> String {
    env_or("TICKET_HUB_TEST_REDIS_URL", "redis://127.0.0.1:6379")
}

/// The running broker: `TICKET_HUB_TEST_KAFKA`.
pub fn kafka_bootstrap() -> String {
    env_or("TICKET_HUB_TEST_KAFKA", "127.0.0.1:9092")
}

/// The `tansu` binary for private brokers: `TICKET_HUB_TANSU_BIN`, else `tansu` on `PATH`, else
/// cargo's install folder.
pub fn tansu_bin() -> PathBuf {
    if let Ok(p) = std::env::var("TICKET_HUB_TANSU_BIN") {
        return PathBuf::from(p);
    }
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            let candidate = dir.join("tansu");
            if candidate.is_file() {
                return candidate;
            }
        }
    }
    let home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cargo")))
        .unwrap_or_default();
    home.join("bin").join("tansu")
}
