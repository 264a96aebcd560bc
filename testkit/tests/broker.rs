//! Tansu on its Postgres engine, proven with the project's own client (rdkafka): what the
//! relays and consumers rely on. Each test has its own topics; restarts use a private broker.

#![allow(clippy::unwrap_used, clippy::expect_used, reason = "tests: a failed expectation is a failed test")]

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use futures::StreamExt;
use rdkafka::consumer::{CommitMode, Consumer, StreamConsumer};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use testkit::{PrivateBroker, TestKafka};

fn producer(bootstrap: &str) -> FutureProducer {
    platform::kafka::client_config(bootstrap)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("message.timeout.ms", "30000")
        .create()
        .expect("producer")
}

fn consumer(bootstrap: &str, group: &str, topic: &str) -> StreamConsumer {
    let c: StreamConsumer = platform::kafka::client_config(bootstrap)
        .set("group.id", group)
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("session.timeout.ms", "10000")
        .create()
        .expect("consumer");
    c.subscribe(&[topic]).expect("subscribe");
    c
}

/// Produces `n` records keyed `key-{i % keys}` with a sequence number header, all acknowledged.
async fn produce(p: &FutureProducer, topic: &str, range: std::ops::Range<usize>, keys: usize) {
    let mut pending = futures::stream::FuturesUnordered::new();
    for i in range {
        let key = format!("key-{}", i % keys);
        let payload = format!("{{\"seq\":{i}}}");
        let headers = OwnedHeaders::new()
            .insert(Header { key: "type", value: Some("OrderCreated") })
            .insert(Header { key: "seq", value: Some(i.to_string().as_str()) });
        let record = FutureRecord::to(topic).key(&key).payload(&payload).headers(headers);
        // `send_result` copies the record into librdkafka's queue, so the future owns nothing.
        pending.push(p.send_result(record).map_err(|(e, _)| e).expect("enqueued"));
        // Bound what is in flight so the local queue never overflows.
        if pending.len() >= 5_000 {
            let delivered = pending.next().await.expect("in flight").expect("not cancelled");
            delivered.map_err(|(e, _)| e).expect("acknowledged");
        }
    }
    while let Some(delivered) = pending.next().await {
        delivered.expect("not cancelled").map_err(|(e, _)| e).expect("acknowledged");
    }
}

/// A received record: partition, offset, key, sequence header.
#[derive(Debug, Clone)]
struct Got {
    partition: i32,
    offset: i64,
    key: String,
    seq: usize,
}

async fn receive(c: &StreamConsumer, n: usize) -> Vec<Got> {
    let got = testkit::kafka::receive(c, n).await;
    got.into_iter()
        .map(|r| {
            assert_eq!(r.headers.get("type").map(String::as_str), Some("OrderCreated"), "type header survives");
            Got {
                partition: r.partition,
                offset: r.offset,
                key: r.key.expect("keyed"),
                seq: r.headers.get("seq").and_then(|s| s.parse().ok()).expect("seq header"),
            }
        })
        .collect()
}

#[tokio::test]
async fn topics_are_created_with_their_partition_count() {
    let kafka = TestKafka::new(6).await.unwrap();
    assert_eq!(platform::kafka::partition_count(&kafka.bootstrap, &kafka.topic).await.unwrap(), Some(6));
    // Creating again is not an error: services ensure their topics at every start.
    platform::kafka::ensure_topics(&kafka.bootstrap, &[(&kafka.topic, 6)]).await.unwrap();
    assert_eq!(platform::kafka::partition_count(&kafka.bootstrap, "t.no-such-topic").await.unwrap(), None);
}

#[tokio::test]
async fn keyed_idempotent_producer_keeps_each_key_on_one_partition_in_order() {
    let kafka = TestKafka::new(3).await.unwrap();
    let p = producer(&kafka.bootstrap);
    produce(&p, &kafka.topic, 0..600, 20).await;
    let c = consumer(&kafka.bootstrap, &kafka.group, &kafka.topic);
    let got = receive(&c, 600).await;

    let mut partitions_of_key: BTreeMap<String, BTreeSet<i32>> = BTreeMap::new();
    let mut last_seq_of_key: BTreeMap<String, usize> = BTreeMap::new();
    for g in &got {
        partitions_of_key.entry(g.key.clone()).or_default().insert(g.partition);
        if let Some(prev) = last_seq_of_key.insert(g.key.clone(), g.seq) {
            assert!(prev < g.seq, "key {} out of order: {prev} then {}", g.key, g.seq);
        }
    }
    assert!(partitions_of_key.values().all(|p| p.len() == 1), "a key spread over partitions: {partitions_of_key:?}");
    let used: BTreeSet<i32> = got.iter().map(|g| g.partition).collect();
    assert!(used.len() > 1, "20 keys all hashed to one partition: {used:?}");
    let seqs: BTreeSet<usize> = got.iter().map(|g| g.seq).collect();
    assert_eq!(seqs.len(), 600, "each record once");
}

#[tokio::test]
async fn consumer_group_resumes_at_the_committed_offset_after_a_20k_backlog() {
    const TOTAL: usize = 24_000;
    const FIRST: usize = 9_000;
    let kafka = TestKafka::new(3).await.unwrap();
    produce(&producer(&kafka.bootstrap), &kafka.topic, 0..TOTAL, 1_000).await;

    let first = consumer(&kafka.bootstrap, &kafka.group, &kafka.topic);
    let before = receive(&first, FIRST).await;
    first.commit_consumer_state(CommitMode::Sync).expect("commit");
    let committed: BTreeMap<i32, i64> = first
        .committed(Duration::from_secs(10))
        .expect("committed offsets")
        .elements()
        .iter()
        // A partition the first consumer never read has no committed offset (`Invalid`): the
        // group starts it from the earliest record, offset 0.
        .filter_map(|e| match e.offset() {
            rdkafka::Offset::Offset(o) => Some((e.partition(), o)),
            _ => None,
        })
        .collect();
    drop(first);

    let second = consumer(&kafka.bootstrap, &kafka.group, &kafka.topic);
    let after = receive(&second, TOTAL - FIRST).await;
    let mut first_offset: BTreeMap<i32, i64> = BTreeMap::new();
    for g in &after {
        first_offset.entry(g.partition).or_insert(g.offset);
    }
    for (partition, offset) in &first_offset {
        let expected = committed.get(partition).copied().unwrap_or(0);
        assert_eq!(*offset, expected, "partition {partition} resumed at {offset}, committed {expected}");
    }
    let seen: BTreeSet<usize> = before.iter().chain(after.iter()).map(|g| g.seq).collect();
    assert_eq!(seen.len(), TOTAL, "no record lost or repeated across the resume");
    assert_eq!(before.len() + after.len(), TOTAL);
}

#[tokio::test]
async fn records_and_offsets_survive_a_broker_restart() {
    let mut broker = PrivateBroker::start().await.unwrap();
    let kafka = TestKafka::on(&broker.bootstrap, 2).await.unwrap();
    produce(&producer(&broker.bootstrap), &kafka.topic, 0..1_000, 50).await;
    let c = consumer(&broker.bootstrap, &kafka.group, &kafka.topic);
    let before = receive(&c, 400).await;
    c.commit_consumer_state(CommitMode::Sync).unwrap();
    drop(c);

    broker.stop().await.unwrap();
    broker.resume().await.unwrap();

    // Writes after the restart land beside the old ones; the group resumes where it was.
    produce(&producer(&broker.bootstrap), &kafka.topic, 1_000..1_200, 50).await;
    let c = consumer(&broker.bootstrap, &kafka.group, &kafka.topic);
    let after = receive(&c, 800).await;
    let seen: BTreeSet<usize> = before.iter().chain(after.iter()).map(|g| g.seq).collect();
    assert_eq!(seen.len(), 1_200, "broker log:\n{}", broker.log());
    assert!(!broker.log().contains("panicked"), "broker log:\n{}", broker.log());
}

/// Tansu's own delete statement matches every topic of the cluster; the guard in
/// `migrations/kafka/0002_guard_topic_delete.sql` keeps the delete to the named topic.
#[tokio::test]
async fn deleting_one_topic_leaves_the_others_intact() {
    let kept = TestKafka::new(2).await.unwrap();
    let doomed = TestKafka::new(1).await.unwrap();
    produce(&producer(&kept.bootstrap), &kept.topic, 0..100, 10).await;

    platform::kafka::delete_topics(&doomed.bootstrap, &[&doomed.topic]).await.unwrap();
    assert_eq!(platform::kafka::partition_count(&doomed.bootstrap, &doomed.topic).await.unwrap(), None);

    assert_eq!(platform::kafka::partition_count(&kept.bootstrap, &kept.topic).await.unwrap(), Some(2));
    let got = receive(&consumer(&kept.bootstrap, &kept.group, &kept.topic), 100).await;
    assert_eq!(got.iter().map(|g| g.seq).collect::<BTreeSet<_>>().len(), 100);
}
