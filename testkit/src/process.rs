//! Service binaries run as real processes: JSON logs, serving, and a clean stop on SIGTERM.

use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

/// Starts the binary at `bin` with `env` (which must make it listen on port 0), reads its JSON
/// log until the line saying where it listens, checks `/healthz`, sends SIGTERM and asserts a
/// clean exit within ten seconds.
pub async fn assert_binary_serves_and_stops(bin: &str, env: &[(&str, &str)]) {
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
                return port;
            }
        }
        panic!("{bin} ended before saying where it listens");
    })
    .await
    .unwrap_or_else(|_| panic!("{bin} did not log its port within 20 s"));

    let res = reqwest::get(format!("http://127.0.0.1:{port}/healthz")).await.expect("GET /healthz");
    assert_eq!(res.status(), 200);
    // Keep draining the log so the child never blocks on a full pipe.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });

    let pid = child.id().expect("running child has a pid");
    let killed = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await.expect("kill");
    assert!(killed.success());
    let status = tokio::time::timeout(Duration::from_secs(10), child.wait())
        .await
        .unwrap_or_else(|_| panic!("{bin} did not stop within 10 s of SIGTERM"))
        .expect("wait");
    assert!(status.success(), "{bin} exited with {status} after SIGTERM");
}
