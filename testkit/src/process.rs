//! Service binaries run as real processes: JSON logs, serving, a clean stop on SIGTERM, and
//! SIGKILL for tests that must see a process die mid-work.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

/// A service binary running as a process of its own, serving on the port it logged.
#[derive(Debug)]
pub struct Process {
    pub port: u16,
    pub base_url: String,
    child: Child,
}

impl Process {
    /// Starts `bin` with `env` (which must make it listen on port 0) and waits until it logs
    /// its port; its log is drained (and dropped) from then on.
    pub async fn spawn(bin: &str, env: &[(&str, &str)]) -> Self {
        let mut cmd = Command::new(bin);
        cmd.current_dir(crate::stack::repo_root()).stdout(Stdio::piped()).stderr(Stdio::inherit()).kill_on_drop(true);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawning {bin}: {e}"));
        let mut lines = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        let port = tokio::time::timeout(Duration::from_secs(20), async {
            while let Some(line) = lines.next_line().await.expect("reading stdout") {
                let v: serde_json::Value =
                    serde_json::from_str(&line).unwrap_or_else(|e| panic!("log line is not JSON ({e}): {line}"));
                assert!(v["level"].is_string() && v["timestamp"].is_string(), "log line lacks level/timestamp: {line}");
                if let Some(port) = v["port"].as_u64() {
                    return u16::try_from(port).expect("a port");
                }
            }
            panic!("{bin} ended before saying where it listens");
        })
        .await
        .unwrap_or_else(|_| panic!("{bin} did not log its port within 20 s"));
        // Keep draining the log so the child never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self { port, base_url: format!("http://127.0.0.1:{port}"), child }
    }

    pub fn pid(&self) -> u32 {
        self.child.id().expect("running child has a pid")
    }

    /// GET `path` on the process.
    pub async fn get(&self, path: &str) -> reqwest::Response {
        reqwest::get(format!("{}{path}", self.base_url)).await.unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// [`crate::app::metric_value`] of the process's `/metrics`.
    pub async fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        crate::app::metric_value(&self.get("/metrics").await.text().await.expect("metrics text"), name, labels)
    }

    /// SIGKILL: no clean-up of any kind runs; waits until the process is gone.
    pub async fn kill(mut self) {
        self.child.kill().await.expect("SIGKILL");
    }

    /// SIGTERM, and asserts a clean exit within ten seconds.
    pub async fn terminate(mut self) {
        let pid = self.pid();
        let killed = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await.expect("kill");
        assert!(killed.success());
        let status = tokio::time::timeout(Duration::from_secs(10), self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("pid {pid} did not stop within 10 s of SIGTERM"))
            .expect("wait");
        assert!(status.success(), "pid {pid} exited with {status} after SIGTERM");
    }
}

/// Starts the binary at `bin` with `env` (which must make it listen on port 0), reads its JSON
/// log until the line saying where it listens, checks `/healthz`, sends SIGTERM and asserts a
/// clean exit within ten seconds.
pub async fn assert_binary_serves_and_stops(bin: &str, env: &[(&str, &str)]) {
    let process = Process::spawn(bin, env).await;
    assert_eq!(process.get("/healthz").await.status(), 200);
    process.terminate().await;
}
