//! The fixtures themselves: each gives a test real, isolated resources and cleans up.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

use std::time::Duration;

use platform::db::Schema;
use testkit::{TestDb, TestRedis, TestShards};

async fn database_exists(server: &str, name: &str) -> bool {
    let pool = sqlx::PgPool::connect(&format!("{server}/postgres")).await.unwrap();
    sqlx::query_scalar("select exists(select 1 from pg_database where datname = $1)")
        .bind(name)
        .fetch_one(&pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn test_db_is_fresh_migrated_and_dropped() {
    let db = TestDb::global(Schema::Kafka).await.unwrap();
    let tables: i64 = sqlx::query_scalar(
        "select count(*) from information_schema.tables where table_schema = 'public' and table_name = 'record'",
    )
    .fetch_one(&db.pool)
    .await
    .unwrap();
    assert_eq!(tables, 1, "migrations applied");
    let name = db.name.clone();
    let server = testkit::stack::global_pg();
    assert!(database_exists(&server, &name).await);
    drop(db);
    assert!(!database_exists(&server, &name).await, "dropped with the fixture");
}

#[tokio::test]
async fn test_shards_live_on_each_shard_instance() {
    let shards = TestShards::create().await.unwrap();
    for shard in shards.map.shards() {
        let pool = shards.pool(shard.name.as_str()).unwrap();
        let port: String = sqlx::query_scalar("select current_setting('port')").fetch_one(pool).await.unwrap();
        let configured = url_port(testkit::stack::shards_file(), shard.name.as_str());
        assert_eq!(port, configured, "shard {} lives on its own instance", shard.name);
        assert!(shard.url.database().starts_with("t_shard_"));
    }
}

fn url_port(file: std::path::PathBuf, shard: &str) -> String {
    let map = shard_router::ShardMap::parse(&std::fs::read_to_string(file).unwrap(), "shards.toml").unwrap();
    let url = map.shard_named(shard).unwrap().url.expose().to_owned();
    url.rsplit_once(':').unwrap().1.split('/').next().unwrap().to_owned()
}

#[tokio::test]
async fn test_redis_keys_carry_the_prefix_and_are_removed() {
    let redis = TestRedis::new().unwrap();
    let key = format!("{}probe", redis.prefix);
    {
        let mut conn = redis.pool.get().await.unwrap();
        let _: () = redis::cmd("SET").arg(&key).arg("1").arg("EX").arg(60).query_async(&mut *conn).await.unwrap();
    }
    let url = redis.url.clone();
    drop(redis);
    let client = redis::Client::open(url).unwrap();
    let mut conn =
        tokio::time::timeout(Duration::from_secs(5), client.get_multiplexed_async_connection()).await.unwrap().unwrap();
    let exists: bool = redis::cmd("EXISTS").arg(&key).query_async(&mut conn).await.unwrap();
    assert!(!exists);
}

/// Marks one outbox row of na-1 FAILED, as a relay does when it gives up on it.
async fn dead_letter_one(shards: &TestShards) {
    sqlx::query(
        "insert into outbox (aggregate_id, partition, event_type, payload, status, attempts, last_error)
         values (gen_random_uuid(), 0, 'OrderCreated', '{}', 'FAILED', 3, 'test')",
    )
    .execute(shards.pool("na-1").unwrap())
    .await
    .unwrap();
}

#[tokio::test]
#[should_panic(expected = "teardown: FAILED outbox rows {\"na-1\": 1}")]
async fn test_shards_teardown_fails_a_test_that_left_failed_outbox_rows() {
    let shards = TestShards::create().await.unwrap();
    dead_letter_one(&shards).await;
    drop(shards);
}

#[tokio::test]
async fn test_shards_teardown_accepts_failed_rows_the_test_expects() {
    let shards = TestShards::create().await.unwrap();
    assert!(shards.failed_outbox().await.unwrap().is_empty());
    dead_letter_one(&shards).await;
    assert_eq!(shards.failed_outbox().await.unwrap(), [("na-1".to_owned(), 1)].into());
    shards.expect_failed_outbox();
    drop(shards);
}
