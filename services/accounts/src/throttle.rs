//! Login throttling per email, in Redis so it holds across instances.
//!
//! Every login attempt for an email first increments `{prefix}login-fail:{email}` (one atomic
//! `MULTI`: `INCR`, `EXPIRE … NX`, `TTL`); the key expires a window after the first attempt
//! that created it, and later attempts do not push that back. An attempt whose count exceeds
//! `max_failures` gets 429 with the seconds left; a successful login deletes the key. So after
//! `max_failures` failures within the window, further attempts are refused until it ends.
//!
//! Counting before the password is checked (rather than after it failed) is what makes the
//! limit hold under concurrency: a burst of parallel guesses cannot all pass a check that none
//! of them has been counted in yet. The cost is that an attempt cut short by an outage (503)
//! also counts, which errs on the safe side.
//!
//! If Redis is down the attempt goes through (logged and counted): throttling slows attackers,
//! it must not lock every user out.

use platform::error::ApiError;
use platform::redis::RedisPool;

use crate::settings::ThrottleSettings;

#[derive(Debug, Clone)]
pub struct Throttle {
    pool: RedisPool,
    prefix: String,
    settings: ThrottleSettings,
}

impl Throttle {
    pub fn new(pool: RedisPool, prefix: String, settings: ThrottleSettings) -> Self {
        Self { pool, prefix, settings }
    }

    fn key(&self, email_normalized: &str) -> String {
        format!("{}login-fail:{email_normalized}", self.prefix)
    }

    /// Counts an attempt for `email_normalized`: `Ok` when it may go on, 429 with the seconds
    /// left when the email has used up its attempts for the window.
    pub async fn admit(&self, email_normalized: &str) -> Result<(), ApiError> {
        let key = self.key(email_normalized);
        let window_secs = i64::try_from(self.settings.window.as_secs()).unwrap_or(i64::MAX);
        let result: Result<(u64, i64), String> = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            redis::pipe()
                .atomic()
                .incr(&key, 1)
                .cmd("EXPIRE")
                .arg(&key)
                .arg(window_secs)
                .arg("NX")
                .ignore()
                .ttl(&key)
                .query_async(&mut *conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok((attempt, ttl_secs)) if attempt > u64::from(self.settings.max_failures) => {
                metrics::counter!("accounts_login_throttled_total").increment(1);
                let retry_after_secs = u64::try_from(ttl_secs).unwrap_or(self.settings.window.as_secs()).max(1);
                Err(ApiError::TooManyRequests {
                    message: format!("too many failed logins; try again in {retry_after_secs} s"),
                    retry_after_secs,
                })
            }
            Ok(_) => Ok(()),
            Err(e) => {
                metrics::counter!("accounts_throttle_unavailable_total").increment(1);
                tracing::warn!(error = %e, "login throttle unavailable; letting the attempt through");
                Ok(())
            }
        }
    }

    /// Clears the count after a successful login: failures before it no longer count.
    pub async fn succeeded(&self, email_normalized: &str) {
        let key = self.key(email_normalized);
        let result: Result<(), String> = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            redis::cmd("DEL").arg(&key).query_async(&mut *conn).await.map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "clearing the failed-login count");
        }
    }
}
