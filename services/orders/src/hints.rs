//! Redis hints that an idempotency key was used, so a keyed write looks for the key on the
//! other shards ([`crate::idempotency::Guard::seen_elsewhere`]) only when it may be there,
//! instead of querying every other shard on every keyed write.
//!
//! # The protocol
//! Before its transaction, every keyed write runs one script (one round trip, atomic, dated by
//! the Redis server's clock so processes' clocks do not matter) that
//! 1. creates the marker `<prefix>idem:hints-since` with the server's time if it is absent
//!    (Redis lost its data, or it never had it), or sets it to now when this process owes a
//!    reset (below);
//! 2. reports whether the hint `<prefix>idem:seen:{owner}:{operation}:{key}` exists, and how
//!    old the marker is;
//! 3. writes that hint, expiring `idempotency_hint_window_secs` (W) from now.
//!
//! The marker says "since then, every keyed write wrote its hint here". A hint is therefore
//! missing for a key used within the last W only if that use came before the marker. So the
//! absence of a hint is trusted (the look-up skipped) only when the marker is at least W old;
//! a present hint, a younger marker, or Redis not answering means the full look-up as before.
//!
//! When the script fails (Redis down, a timeout, an error), this process cannot know whether
//! its hint was written, so it owes a reset: its next script that runs sets the marker to now,
//! and until one has, this process trusts no absence. Other processes keep trusting theirs in
//! between; that gap (one process cannot reach Redis while another can, and a client reuses
//! the key with another body on another shard meanwhile) is of the same kind as the one
//! [`crate::idempotency::Guard::seen_elsewhere`] already leaves open for a shard that does not
//! answer.
//!
//! # The window
//! W is how long after a key's last use a reuse of it *with a different body landing on
//! another shard* is still refused (422 `IDEMPOTENCY_KEY_REUSED`): hints expire after W, and
//! W is also how long after a Redis data loss or a failed hint write every keyed write does
//! the full look-up again. It cannot be shorter than the guarantee it gives, so it is a
//! choice, not a derived value: 24 h by default (what clients' retries need, and what payment
//! APIs keep keys for). A reuse on the key's own shard is refused forever, as before (the
//! record's primary key). W = 0 turns the hints off: every keyed write looks everywhere.
//!
//! Redis must not evict the hints while keeping the marker: run it with `maxmemory-policy
//! noeviction` (or enough memory), or set W to 0.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use platform::redis::RedisPool;

use crate::store::idempotency::KeyOf;

/// KEYS[1] the key's hint, KEYS[2] the marker; ARGV[1] the window in seconds, ARGV[2] "1" to
/// reset the marker. Returns {1 if the hint existed else 0, the marker's age in seconds}.
const NOTE: &str = r#"
local now = tonumber(redis.call("TIME")[1])
if ARGV[2] == "1" then
  redis.call("SET", KEYS[2], now)
else
  redis.call("SET", KEYS[2], now, "NX")
end
local since = tonumber(redis.call("GET", KEYS[2]))
local seen = redis.call("EXISTS", KEYS[1])
redis.call("SET", KEYS[1], "1", "EX", ARGV[1])
return {seen, now - since}
"#;

/// [`NOTE`], hashed once per process (every keyed write runs it).
static NOTE_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| redis::Script::new(NOTE));

/// Whether a keyed write must look for its key on the other shards, and why (the label of
/// `orders_idempotency_lookups_total`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lookup {
    /// No hint, and the marker says the hints are complete: the key is not elsewhere.
    Skip,
    /// Look everywhere, because of the reason given.
    Needed(&'static str),
}

impl Lookup {
    /// What a note's answer means: the hint existed, or the marker is younger than `window`.
    pub fn decide(seen: bool, marker_age_secs: i64, window: Duration) -> Self {
        let window = i64::try_from(window.as_secs()).unwrap_or(i64::MAX);
        if seen {
            Self::Needed("hinted")
        } else if marker_age_secs < window {
            Self::Needed("marker_young")
        } else {
            Self::Skip
        }
    }
}

/// The hints of one orders process (see the module docs).
#[derive(Debug, Clone)]
pub struct Hints {
    /// The Redis the stock lock uses too.
    pub pool: RedisPool,
    /// The service's Redis key prefix.
    pub prefix: String,
    /// W: how long a hint lives and how old the marker must be for a missing hint to be
    /// trusted; zero turns the hints off.
    pub window: Duration,
    /// Notes that failed since this process started, and how many of them the last successful
    /// reset of the marker covers: while they differ, this process owes (and tries) a reset.
    pub failures: Arc<(AtomicU64, AtomicU64)>,
}

impl Hints {
    pub fn new(pool: RedisPool, prefix: String, window: Duration) -> Self {
        Self { pool, prefix, window, failures: Arc::default() }
    }

    /// Writes the hint for `at` and tells whether the write must look for it elsewhere.
    pub async fn note(&self, at: KeyOf<'_>) -> Lookup {
        if self.window.is_zero() {
            return Lookup::Needed("hints_off");
        }
        let (failed, covered) = &*self.failures;
        let failed_so_far = failed.load(Ordering::SeqCst);
        let reset = failed_so_far != covered.load(Ordering::SeqCst);
        let hint = format!("{}idem:seen:{}:{}:{}", self.prefix, at.owner, at.operation, at.key.as_str());
        let answer: Result<(i64, i64), String> = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            NOTE_SCRIPT
                .key(&hint)
                .key(format!("{}idem:hints-since", self.prefix))
                .arg(self.window.as_secs())
                .arg(if reset { "1" } else { "0" })
                .invoke_async(&mut *conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match answer {
            Ok((seen, age)) => {
                if reset {
                    covered.fetch_max(failed_so_far, Ordering::SeqCst);
                    tracing::info!("idempotency hints: marker reset after a failed hint write");
                }
                Lookup::decide(seen == 1, age, self.window)
            }
            Err(e) => {
                failed.fetch_add(1, Ordering::SeqCst);
                tracing::warn!(error = %e, "idempotency hint not written; looking on every shard");
                Lookup::Needed("redis_unavailable")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absence_is_trusted_only_once_the_marker_is_as_old_as_the_window() {
        let w = Duration::from_secs(60);
        assert_eq!(Lookup::decide(true, 3600, w), Lookup::Needed("hinted"));
        assert_eq!(Lookup::decide(false, 0, w), Lookup::Needed("marker_young"));
        assert_eq!(Lookup::decide(false, 59, w), Lookup::Needed("marker_young"));
        assert_eq!(Lookup::decide(false, 60, w), Lookup::Skip);
    }
}
