//! Login throttling per email, in Redis so it holds across instances.
//!
//! Each failed login increments `{prefix}login-fail:{email}`, which expires a window after the
//! first failure; at `max_failures` further attempts get 429 until it expires. A success clears
//! it. If Redis is down the check lets logins through (logged and counted): throttling slows
//! attackers, it must not lock every user out.

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

    /// 429 with the seconds left when the email is locked out.
    pub async fn check(&self, email_normalized: &str) -> Result<(), ApiError> {
        let key = self.key(email_normalized);
        let result: Result<(Option<u32>, i64), String> = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            redis::pipe().get(&key).ttl(&key).query_async(&mut *conn).await.map_err(|e| e.to_string())
        }
        .await;
        match result {
            Ok((Some(n), ttl)) if n >= self.settings.max_failures => {
                metrics::counter!("accounts_login_throttled_total").increment(1);
                let retry_after_secs = u64::try_from(ttl).unwrap_or(self.settings.window_secs).max(1);
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

    pub async fn failed(&self, email_normalized: &str) {
        let key = self.key(email_normalized);
        let window = i64::try_from(self.settings.window_secs).unwrap_or(i64::MAX);
        let result: Result<(), String> = async {
            let mut conn = self.pool.get().await.map_err(|e| e.to_string())?;
            // NX: the window starts at the first failure and is not pushed back by later ones.
            redis::pipe()
                .incr(&key, 1)
                .ignore()
                .cmd("EXPIRE")
                .arg(&key)
                .arg(window)
                .arg("NX")
                .ignore()
                .query_async(&mut *conn)
                .await
                .map_err(|e| e.to_string())
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(error = %e, "recording a failed login");
        }
    }

    pub async fn succeeded(&self, email_normalized: &str) {
        let key = self.key(email_normalized);
        if let Ok(mut conn) = self.pool.get().await {
            let _: Result<(), _> = redis::cmd("DEL").arg(&key).query_async(&mut *conn).await;
        }
    }
}
