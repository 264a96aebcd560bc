//! A Redis pool and a key prefix per test.

use std::time::Duration;

use platform::redis::RedisPool;

/// Keys a test writes start with `prefix`; they are deleted when this value is dropped.
#[derive(Debug)]
pub struct TestRedis {
    pub url: String,
    pub prefix: String,
    pub pool: RedisPool,
}

impl TestRedis {
    pub fn new() -> anyhow::Result<Self> {
        let url = crate::stack::redis_url();
        let pool = platform::redis::pool_lazy(&url, 8, Duration::from_secs(2))?;
        Ok(Self { url, prefix: format!("t:{}:", crate::unique_id()), pool })
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let (url, pattern) = (self.url.clone(), format!("{}*", self.prefix));
        crate::block_on_cleanup(async move {
            let Ok(client) = redis::Client::open(url) else {
                return;
            };
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return;
            };
            let keys: Vec<String> = redis::cmd("KEYS").arg(&pattern).query_async(&mut conn).await.unwrap_or_default();
            if !keys.is_empty() {
                let _: Result<(), _> = redis::cmd("DEL").arg(keys).query_async(&mut conn).await;
            }
        });
    }
}
