//! Memory and throughput of a login burst on the password hasher alone, no stack needed.
//!
//! `cargo run --release --example hash_burst` (from the workspace root; `-- --help` for the
//! knobs). It builds a [`Hasher`] at the service's default argon2 settings on a tokio runtime
//! built like the service's, then runs bursts of `--calls` verifies (what a login does) or
//! hashes (a signup), `--concurrency` in flight at once, and prints the process's resident
//! memory: `VmRSS` (now) and `VmHWM` (the peak since start) from `/proc/self/status`, before and
//! after each burst, with the burst's hashes per second. Several bursts show whether memory
//! settles or keeps growing.
//!
//! This is a benchmark to read, not a test: it asserts nothing.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "a measurement binary")]

use std::time::Instant;

use accounts::domain::Password;
use accounts::password::Hasher;
use accounts::settings::{Argon2Settings, Settings};
use clap::{Parser, ValueEnum};
use futures::StreamExt;

#[derive(Debug, Parser)]
struct Args {
    /// Calls per burst.
    #[arg(long, default_value_t = 600)]
    calls: usize,
    /// Calls in flight at once.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Bursts, one after another.
    #[arg(long, default_value_t = 3)]
    bursts: usize,
    /// What each call does.
    #[arg(long, value_enum, default_value_t = Op::Verify)]
    op: Op,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum Op {
    /// `Hasher::verify` against a stored hash, as a login does.
    Verify,
    /// `Hasher::hash` with a fresh salt, as a signup does.
    Hash,
}

/// A number field of `/proc/self/status` (`VmRSS`, `VmHWM` in KiB, `Threads`).
fn status(key: &str) -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with(key) && l[key.len()..].starts_with(':')).unwrap();
    line[key.len() + 1..].trim().trim_end_matches("kB").trim().parse().unwrap()
}

fn report(when: &str) {
    let mb = |key| status(key) * 1024.0 / 1e6;
    let (rss, hwm, threads) = (mb("VmRSS"), mb("VmHWM"), status("Threads"));
    println!("{when:<26} VmRSS {rss:6.1} MB   VmHWM {hwm:6.1} MB   threads {threads}");
}

fn main() {
    let args = Args::parse();
    // The machine is shared: hashes/s means little without how busy it was.
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    println!("load average before: {}", load.split_whitespace().take(3).collect::<Vec<_>>().join(" "));
    report("start");
    // As `#[tokio::main]` in the service's main.rs builds it.
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    runtime.block_on(burst(&args));
}

async fn burst(args: &Args) {
    let settings: Argon2Settings = Settings::default().argon2;
    println!(
        "argon2id m={} KiB t={} p={}; {} calls ({:?}) at concurrency {}, {} bursts",
        settings.memory_kib,
        settings.iterations,
        settings.parallelism,
        args.calls,
        args.op,
        args.concurrency,
        args.bursts
    );
    let hasher = Hasher::new(&settings).await.unwrap();
    let password = || Password::parse("correct horse battery").unwrap();
    let stored = hasher.hash(password()).await.unwrap();
    report("hasher ready");
    for round in 1..=args.bursts {
        let started = Instant::now();
        let results: Vec<bool> = futures::stream::iter(0..args.calls)
            .map(|_| {
                let (hasher, stored) = (&hasher, &stored);
                async move {
                    match args.op {
                        Op::Verify => hasher.verify(password(), Some(stored.clone())).await.unwrap(),
                        Op::Hash => hasher.hash(password()).await.unwrap().starts_with("$argon2id$"),
                    }
                }
            })
            .buffer_unordered(args.concurrency)
            .collect()
            .await;
        let elapsed = started.elapsed();
        assert!(results.iter().all(|ok| *ok), "every call succeeds");
        let rate = args.calls as f64 / elapsed.as_secs_f64();
        report(&format!("after burst {round}: {rate:5.1}/s"));
    }
}
