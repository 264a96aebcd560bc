//! The Redis pool every service shares its shape of.

use std::time::Duration;

use bb8_redis::RedisConnectionManager;

pub type RedisPool = bb8::Pool<RedisConnectionManager>;

/// A pool that connects on first use: a service starts (and `/readyz` says why it is not ready)
/// while Redis is down. `connection_timeout` bounds every checkout, so a Redis outage costs a
/// caller that long at most.
pub fn pool_lazy(url: &str, max_size: u32, connection_timeout: Duration) -> Result<RedisPool, redis::RedisError> {
    let manager = RedisConnectionManager::new(url)?;
    Ok(bb8::Pool::builder().max_size(max_size).connection_timeout(connection_timeout).build_unchecked(manager))
}

pub async fn ping(pool: &RedisPool) -> Result<(), String> {
    let mut conn = pool.get().await.map_err(|e| e.to_string())?;
    let pong: String = redis::cmd("PING").query_async(&mut *conn).await.map_err(|e| e.to_string())?;
    if pong == "PONG" { Ok(()) } else { Err(format!("unexpected answer to PING: {pong}")) }
}
