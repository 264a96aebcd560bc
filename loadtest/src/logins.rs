//! `--logins N`: a burst of logins after the scenario, inside its memory window. Each login
//! costs accounts one argon2id verification (12 MiB of memory each at the default cost), so this is what the
//! accounts memory target is measured under: what a crowd signing in at once costs.

use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use serde_json::json;

use crate::client::{Gql, ops};
use crate::setup;
use crate::stats::{self, Percentiles};

/// What the burst did.
#[derive(Debug, Clone, Serialize)]
pub struct Burst {
    pub logins: usize,
    pub concurrency: usize,
    pub ok: usize,
    pub failed: usize,
    /// Successful logins per second, from the first send to the last answer.
    pub per_s: f64,
    #[serde(flatten)]
    pub latency: Percentiles,
}

/// `n` logins of the run's customers (`customers` of them, signed up by the setup, in turn) at
/// `concurrency`.
pub async fn burst(gql: &Gql, tag: &str, customers: usize, n: usize, concurrency: usize) -> Burst {
    let started = Instant::now();
    let answers: Vec<(bool, Duration)> = futures::stream::iter(0..n)
        .map(|i| async move {
            let login = json!({"input": {"email": setup::email(tag, "CUSTOMER", i % customers.max(1)), "password": setup::PASSWORD}});
            let sent = Instant::now();
            let ok = gql.send(ops::LOGIN, login, None, None).await.is_ok();
            (ok, sent.elapsed())
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;
    let elapsed = started.elapsed().as_secs_f64().max(f64::MIN_POSITIVE);
    let mut histogram = stats::histogram(3);
    for (_, latency) in &answers {
        let _ = histogram.record(stats::micros(*latency));
    }
    let ok = answers.iter().filter(|(ok, _)| *ok).count();
    Burst {
        logins: n,
        concurrency,
        ok,
        failed: n - ok,
        per_s: ok as f64 / elapsed,
        latency: Percentiles::of(&histogram),
    }
}
