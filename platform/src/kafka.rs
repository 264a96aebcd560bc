//! The broker: client settings, topic administration and the readiness check.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, StreamConsumer};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::Headers;
use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};

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

/// Topic configuration set at creation: keep every record for ever. The projector rebuilds
/// its read models by replaying `orders.events` from offset 0, and the consumers' checkpoints
/// assume nothing below them vanishes, so the log is the system of record and must not expire.
///
/// What Tansu 0.6.0 (Postgres storage) does with these, read in its source
/// (`tansu-storage-0.6.0/src/sql/policy_delete.sql`, run by the broker's maintenance tick) and
/// checked against its `topic_configuration` table:
/// - both values are stored with the topic (`topic_configuration`) and returned by
///   DescribeConfigs, so on Apache Kafka (whose default is 7 days) they mean "infinite";
/// - Tansu deletes records only of topics that carry an explicit `cleanup.policy` containing
///   `delete`; a topic without that key is never trimmed, whatever its `retention.ms`. We
///   therefore never set `cleanup.policy`: Tansu computes `retention.ms / 1000` as an integer,
///   so `-1` would become 0 s there and delete every record at the next maintenance tick;
/// - `retention.bytes` is not looked at by Tansu at all.
pub const KEEP_FOREVER: [(&str, &str); 2] = [("retention.ms", "-1"), ("retention.bytes", "-1")];

/// Creates each `(topic, partitions)` that does not exist yet, with [`KEEP_FOREVER`]; existing
/// topics are left as they are.
pub async fn ensure_topics(bootstrap: &str, topics: &[(&str, i32)]) -> anyhow::Result<()> {
    let admin = admin(bootstrap)?;
    let new: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(name, partitions)| {
            KEEP_FOREVER
                .iter()
                .fold(NewTopic::new(name, *partitions, TopicReplication::Fixed(1)), |t, (k, v)| t.set(k, v))
        })
        .collect();
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

/// A record read back from a topic: its key and headers as text, its payload as bytes.
#[derive(Debug, Clone)]
pub struct Record {
    pub partition: i32,
    pub offset: i64,
    pub key: Option<String>,
    pub payload: Vec<u8>,
    pub headers: BTreeMap<String, String>,
}

impl Record {
    pub fn from_message(msg: &impl Message) -> Self {
        let headers = msg
            .headers()
            .map(|hs| {
                hs.iter()
                    .map(|h| (h.key.to_owned(), String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned()))
                    .collect()
            })
            .unwrap_or_default();
        Self {
            partition: msg.partition(),
            offset: msg.offset(),
            key: msg.key().map(|k| String::from_utf8_lossy(k).into_owned()),
            payload: msg.payload().unwrap_or_default().to_vec(),
            headers,
        }
    }

    /// A header's value; empty when absent.
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map_or("", String::as_str)
    }

    /// The payload as JSON.
    pub fn json(&self) -> serde_json::Result<serde_json::Value> {
        serde_json::from_slice(&self.payload)
    }
}

/// Every record of `topic` up to its end at the time of the call; empty when the topic does
/// not exist. Partitions are assigned by hand, so no consumer group is joined (nothing of the
/// group protocol can stall the read, see [`assigned_consumer_config`]), and each is read
/// until the fetch reports its end. Fails when no record or end arrives within `wait`.
pub async fn read_topic(bootstrap: &str, topic: &str, wait: Duration) -> anyhow::Result<Vec<Record>> {
    let Some(partitions) = partition_count(bootstrap, topic).await? else {
        return Ok(Vec::new());
    };
    let mut cfg = assigned_consumer_config(bootstrap, &format!("reader.{topic}"));
    cfg.set("enable.partition.eof", "true");
    let consumer: StreamConsumer = cfg.create()?;
    let mut assignment = TopicPartitionList::new();
    for p in 0..i32::try_from(partitions)? {
        assignment.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&assignment)?;
    let (mut records, mut at_end) = (Vec::new(), BTreeSet::new());
    let mut stream = consumer.stream();
    while at_end.len() < partitions {
        let next = tokio::time::timeout(wait, stream.next())
            .await
            .map_err(|_| anyhow::anyhow!("reading {topic}: no record or partition end within {wait:?}"))?;
        match next {
            Some(Ok(msg)) => {
                at_end.remove(&msg.partition());
                records.push(Record::from_message(&msg));
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                at_end.insert(p);
            }
            Some(Err(e)) => anyhow::bail!("reading {topic}: {e}"),
            None => anyhow::bail!("reading {topic}: the consumer closed"),
        }
    }
    Ok(records)
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
