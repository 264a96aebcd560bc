//! A Postgres instance of the test's own, so a test can really stop a shard and start it again
//! without disturbing the tests that share the stack's instances.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

/// A fresh `initdb`'d instance on a free port (trust auth, TCP only), removed on drop. As root
/// it runs as the `postgres` user, since Postgres refuses to run as root.
#[derive(Debug)]
pub struct PrivatePostgres {
    dir: PathBuf,
    pub port: u16,
    bin: PathBuf,
}

fn pg_bin() -> anyhow::Result<PathBuf> {
    if let Some(path) = std::env::var_os("PATH") {
        for dir in std::env::split_paths(&path) {
            if dir.join("pg_ctl").is_file() && dir.join("initdb").is_file() {
                return Ok(std::fs::canonicalize(dir.join("pg_ctl"))?.parent().map(Path::to_path_buf).unwrap_or(dir));
            }
        }
    }
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")?
        .filter_map(Result::ok)
        .map(|e| e.path().join("bin"))
        .filter(|p| p.join("initdb").is_file())
        .collect();
    found.sort();
    found.pop().ok_or_else(|| anyhow::anyhow!("no initdb found"))
}

fn is_root() -> bool {
    std::process::Command::new("id").arg("-u").output().map(|o| o.stdout.starts_with(b"0")).unwrap_or(false)
}

impl PrivatePostgres {
    pub async fn start() -> anyhow::Result<Self> {
        let bin = pg_bin()?;
        let dir = std::env::temp_dir().join(format!("th-pg-{}", crate::unique_id()));
        std::fs::create_dir_all(&dir)?;
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let this = Self { dir, port, bin };
        if is_root() {
            let ok = Command::new("chown").arg("postgres:").arg(&this.dir).status().await?.success();
            anyhow::ensure!(ok, "chown of {} failed", this.dir.display());
        }
        let out = this
            .as_pg(&this.bin.join("initdb"))
            .arg("-D")
            .arg(&this.dir)
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--no-locale"])
            .output()
            .await?;
        anyhow::ensure!(out.status.success(), "initdb: {}", String::from_utf8_lossy(&out.stderr));
        let conf = format!(
            "\nport = {port}\nlisten_addresses = '127.0.0.1'\nunix_socket_directories = ''\nfsync = off\nmax_connections = 50\nwal_level = logical\nmax_replication_slots = 16\nmax_wal_senders = 16\nwal_retrieve_retry_interval = 200ms\n"
        );
        let mut text = std::fs::read_to_string(this.dir.join("postgresql.conf"))?;
        text.push_str(&conf);
        std::fs::write(this.dir.join("postgresql.conf"), text)?;
        this.resume().await?;
        Ok(this)
    }

    fn as_pg(&self, program: &Path) -> Command {
        if is_root() {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        }
    }

    /// The server's URL without a database.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}", self.port)
    }

    /// Stops the instance (fast shutdown: sessions are cut, as when a shard dies).
    pub async fn stop(&self) -> anyhow::Result<()> {
        let out = self
            .as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.dir)
            .args(["-m", "fast", "-w", "stop"])
            .output()
            .await?;
        anyhow::ensure!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
        Ok(())
    }

    /// Starts the instance (again) and waits until it accepts connections.
    pub async fn resume(&self) -> anyhow::Result<()> {
        let log = self.dir.join("server.log");
        let out = self
            .as_pg(&self.bin.join("pg_ctl"))
            .arg("-D")
            .arg(&self.dir)
            .arg("-l")
            .arg(&log)
            .args(["-w", "-t", "30", "start"])
            .output()
            .await?;
        anyhow::ensure!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_millis(50)).await;
        Ok(())
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let mut cmd = if is_root() {
            let mut c = std::process::Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(self.bin.join("pg_ctl"));
            c
        } else {
            std::process::Command::new(self.bin.join("pg_ctl"))
        };
        let _ = cmd.arg("-D").arg(&self.dir).args(["-m", "immediate", "-w", "stop"]).output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
