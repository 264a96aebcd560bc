//! The Redis lock per ticket type: SET NX PX with a random token, released by a Lua
//! compare-and-delete so a holder whose lease expired never frees someone else's lock.
//!
//! The lock only spaces out contention on a hot ticket type; correctness comes from the
//! conditional stock update inside the order transaction. So a lock not won within the bounded
//! wait, or a Redis outage, means "go on without it" (slower under contention, never oversold),
//! not a 409 telling the buyer to try again.

use std::time::{Duration, Instant};

use platform::redis::RedisPool;
use uuid::Uuid;

const RELEASE: &str =
    r#"if redis.call("GET", KEYS[1]) == ARGV[1] then return redis.call("DEL", KEYS[1]) else return 0 end"#;

/// [`RELEASE`], hashed once per process (every order releases a lock).
static RELEASE_SCRIPT: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| redis::Script::new(RELEASE));

#[derive(Debug, Clone)]
pub struct StockLock {
    pub pool: RedisPool,
    pub prefix: String,
    /// Lease length: longer than one order transaction, short enough that a crashed holder
    /// blocks others only briefly.
    pub ttl: Duration,
    /// How long a request waits for the lock before going on without it.
    pub wait: Duration,
}

/// A held lock; release it when the transaction is done.
#[derive(Debug)]
pub struct Held {
    key: String,
    token: String,
}

impl StockLock {
    /// Tries for up to `wait`, with jittered back-off; `None` when not won (or Redis is down).
    /// Its span, `stock lock wait`, is the wait an order spent on a hot ticket type.
    #[tracing::instrument(name = "stock lock wait", skip_all, fields(acquired = tracing::field::Empty))]
    pub async fn acquire(&self, ticket_type: Uuid) -> Option<Held> {
        let key = format!("{}lock:ticket-type:{ticket_type}", self.prefix);
        let token = Uuid::new_v4().to_string();
        let started = Instant::now();
        let mut backoff_ms = 2u64;
        loop {
            let won: Result<Option<String>, String> = async {
                let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
                redis::cmd("SET")
                    .arg(&key)
                    .arg(&token)
                    .arg("NX")
                    .arg("PX")
                    .arg(u64::try_from(self.ttl.as_millis()).unwrap_or(u64::MAX))
                    .query_async(&mut *conn)
                    .await
                    .map_err(|e| e.to_string())
            }
            .await;
            match won {
                Ok(Some(_)) => {
                    tracing::Span::current().record("acquired", true);
                    metrics::histogram!("orders_lock_wait_seconds").record(started.elapsed().as_secs_f64());
                    return Some(Held { key, token });
                }
                Ok(None) if started.elapsed() < self.wait => {
                    // Jitter keeps waiting buyers from retrying in lock-step.
                    let jitter = Uuid::new_v4().as_u64_pair().1 % (backoff_ms + 1);
                    tokio::time::sleep(Duration::from_millis(backoff_ms + jitter)).await;
                    backoff_ms = (backoff_ms * 2).min(25);
                }
                Ok(None) => {
                    tracing::Span::current().record("acquired", false);
                    metrics::counter!("orders_lock_failures_total", "reason" => "timeout").increment(1);
                    return None;
                }
                Err(e) => {
                    tracing::Span::current().record("acquired", false);
                    metrics::counter!("orders_lock_failures_total", "reason" => "redis").increment(1);
                    tracing::warn!(error = %e, "stock lock unavailable; relying on the database guard");
                    return None;
                }
            }
        }
    }

    pub async fn release(&self, held: Held) {
        if let Ok(mut conn) = self.pool.get().await {
            let _: Result<i64, _> = RELEASE_SCRIPT.key(&held.key).arg(&held.token).invoke_async(&mut *conn).await;
        }
    }
}
