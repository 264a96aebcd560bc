//! The broker: client settings, topic administration and the readiness check.

use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use crate::ops::Check;

/// Base client configuration for `bootstrap` (e.g. `127.0.0.1:9092`).
pub fn client_config(bootstrap: &str) -> ClientConfig {
    let mut cfg = ClientConfig::new();
    cfg.set("bootstrap.servers", bootstrap)
        // Fail fast and say so, rather than rdkafka's silent internal retries for minutes.
        .set("socket.connection.setup.timeout.ms", "5000")
        .set("log_level", "4");
    cfg
}

/// Configuration of a consumer in `group` that commits by hand and starts a new group at the
/// earliest record: what every consumer here wants.
///
/// `read_uncommitted`, because our producers are idempotent, not transactional (both levels
/// read the same records), and Tansu 0.6.0 on Postgres fails the `read_committed` "latest
/// offset" query (a FROM subquery without alias) and drops the connection, which watermark
/// and lag queries would trigger.
pub fn consumer_config(bootstrap: &str, group: &str) -> ClientConfig {
    let mut cfg = client_config(bootstrap);
    cfg.set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_uncommitted");
    cfg
}

/// Configuration of a consumer that is assigned its partitions by hand and positioned at
/// offsets its owner keeps (see [`crate::consumer`]). It never subscribes, so it never joins
/// a group: nothing of the group protocol (sessions, rebalances, a leader) can stall it.
/// librdkafka refuses `assign()` without a `group.id` (`Unknown group`), hence `name`, which
/// is only a label here: no offsets are fetched from or committed to it. Same
/// `read_uncommitted` reason as [`consumer_config`].
pub fn assigned_consumer_config(bootstrap: &str, name: &str) -> ClientConfig {
    let mut cfg = client_config(bootstrap);
    cfg.set("group.id", format!("{name}.assigned"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // Only where a position is unknown or gone from the log (retention): the records that
        // remain are applied, and an effect seen before is absorbed by the consumer's inbox.
        .set("auto.offset.reset", "earliest")
        .set("isolation.level", "read_uncommitted");
    cfg
}

fn admin(bootstrap: &str) -> anyhow::Result<AdminClient<DefaultClientContext>> {
    Ok(client_config(bootstrap).create()?)
}

/// Creates each `(topic, partitions)` that does not exist yet; existing topics are left as
/// they are.
pub async fn ensure_topics(bootstrap: &str, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let new: Vec<NewTopic<'_>> =
        topics.iter().map(|(name, partitions)| NewTopic::new(name, *partitions, TopicReplication::Fixed(1))).collect();
    let opts = AdminOptions::new()
        .operation_timeout(Some(Duration::from_secs(10)))
        .request_timeout(Some(Duration::from_secs(10)));
    for result in admin.create_topics(&new, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => anyhow::bail!("creating topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Deletes topics; unknown ones are not an error.
pub async fn delete_topics(bootstrap: &str, topics: &[&str]) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    for result in admin.delete_topics(topics, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => anyhow::bail!("deleting topic {topic}: {code}"),
        }
    }
    Ok(())
}

/// Number of partitions of `topic`, or `None` when it does not exist.
pub async fn partition_count(bootstrap: &str, topic: &str) -> anyhow::Result<Option<usize>> {
    let (bootstrap, topic) = (bootstrap.to_owned(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = client_config(&bootstrap).create()?;
        let md = consumer.fetch_metadata(Some(&topic), Duration::from_secs(5))?;
        Ok(md.topics().iter().find(|t| t.name() == topic && t.error().is_none()).map(|t| t.partitions().len()))
    })
    .await?
}

/// Readiness: the broker answers a metadata request.
pub fn check(name: impl Into<String>, bootstrap: &str) -> Check {
    let bootstrap = bootstrap.to_owned();
    Check::new(name, move || {
        let bootstrap = bootstrap.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let consumer: BaseConsumer = client_config(&bootstrap).create().map_err(|e| e.to_string())?;
                consumer.fetch_metadata(None, Duration::from_millis(1500)).map(drop).map_err(|e| e.to_string())
            })
            .await
            .map_err(|e| e.to_string())?
        }
    })
}
