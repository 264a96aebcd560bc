//! Kafka for tests: per-test topics on the running broker, and private brokers.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use futures::StreamExt;
use platform::db::Schema;
use rdkafka::consumer::{Consumer, StreamConsumer};
use tokio::process::{Child, Command};

use platform::events::headers;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord};
use serde_json::Value;

use crate::{TestDb, stack};

/// The headers the relay puts on a record, as `(name, value)` pairs.
pub fn relay_headers(
    event_type: &str,
    region: &str,
    shard: &str,
    outbox_id: &str,
    correlation: &str,
) -> Vec<(String, String)> {
    vec![
        (headers::TYPE.into(), event_type.into()),
        (headers::OUTBOX_ID.into(), outbox_id.into()),
        (headers::REGION.into(), region.into()),
        (headers::SHARD.into(), shard.into()),
        (headers::CORRELATION_ID.into(), correlation.into()),
    ]
}

/// An idempotent, `acks=all` producer speaking the relay's record contract, for consumer
/// tests that feed a topic without running orders and the relay.
pub struct RelayProducer {
    inner: FutureProducer,
    topic: String,
}

impl RelayProducer {
    pub fn new(kafka: &TestKafka) -> Self {
        #[allow(clippy::expect_used, reason = "test support: no producer, no test")]
        let inner = platform::kafka::client_config(&kafka.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "30000")
            .create()
            .expect("producer");
        Self { inner, topic: kafka.topic.clone() }
    }

    /// Sends one record (to `partition` when given) and waits for the broker's
    /// acknowledgement; `(partition, offset)`.
    pub async fn send_raw_to(
        &self,
        key: &str,
        payload: &[u8],
        hs: &[(String, String)],
        partition: Option<i32>,
    ) -> (i32, i64) {
        let mut owned = OwnedHeaders::new();
        for (k, v) in hs {
            owned = owned.insert(Header { key: k.as_str(), value: Some(v.as_str()) });
        }
        let mut record = FutureRecord::to(&self.topic).key(key).payload(payload).headers(owned);
        if let Some(p) = partition {
            record = record.partition(p);
        }
        #[allow(clippy::expect_used, reason = "test support: an unacknowledged record fails the test")]
        let d = self.inner.send(record, Duration::from_secs(30)).await.map_err(|(e, _)| e).expect("acknowledged");
        (d.partition, d.offset)
    }

    /// [`RelayProducer::send_raw_to`] on the partition the key hashes to.
    pub async fn send_raw(&self, key: &str, payload: &[u8], hs: &[(String, String)]) -> (i32, i64) {
        self.send_raw_to(key, payload, hs, None).await
    }

    /// Sends an event as the relay of `shard` would (keyed by its order id, its outbox row id
    /// and a correlation id in the headers), to `partition` when given, to put one order's
    /// events on different partitions; `(partition, offset)`.
    pub async fn send(&self, event: &Value, shard: &str, outbox_id: &str, partition: Option<i32>) -> (i32, i64) {
        let name = event["eventName"].as_str().unwrap_or_default();
        let key = event["orderId"].as_str().unwrap_or_default().to_owned();
        let corr = format!("corr-{shard}-{outbox_id}");
        // The relay's region header is its shard's region, which is the event's own.
        let region = event["region"].as_str().unwrap_or_default();
        let hs = relay_headers(name, region, shard, outbox_id, &corr);
        self.send_raw_to(&key, event.to_string().as_bytes(), &hs, partition).await
    }

    /// [`RelayProducer::send`] on the partition the order id hashes to.
    pub async fn send_event(&self, event: &Value, shard: &str, outbox_id: &str) -> (i32, i64) {
        self.send(event, shard, outbox_id, None).await
    }
}

/// A fresh topic (and its DLQ topic) and consumer group on the running broker; the topics are
/// deleted when this value is dropped.
#[derive(Debug)]
pub struct TestKafka {
    pub bootstrap: String,
    pub topic: String,
    pub dlq_topic: String,
    pub group: String,
}

impl TestKafka {
    pub async fn new(partitions: i32) -> anyhow::Result<Self> {
        Self::on(&stack::kafka_bootstrap(), partitions).await
    }

    /// The same on another broker (e.g. a [`PrivateBroker`]).
    pub async fn on(bootstrap: &str, partitions: i32) -> anyhow::Result<Self> {
        let id = crate::unique_id();
        let this = Self {
            bootstrap: bootstrap.to_owned(),
            topic: format!("t.{id}.orders.events"),
            dlq_topic: format!("t.{id}.orders.events.dlq"),
            group: format!("t.{id}.group"),
        };
        platform::kafka::ensure_topics(bootstrap, &[(&this.topic, partitions), (&this.dlq_topic, 1)]).await?;
        Ok(this)
    }

    /// A consumer service's `[consumer]` settings on these topics, timed for tests: short
    /// retries and lease attempts, lag measured every 200 ms and a stall after 2 s, so an
    /// outage or a takeover is seen in a second or two. The other values are the defaults'.
    pub fn consumer_config(&self) -> platform::consumer::Config {
        platform::consumer::Config {
            kafka_bootstrap: self.bootstrap.clone(),
            topic: self.topic.clone(),
            dlq_topic: self.dlq_topic.clone(),
            topic_partitions: 6,
            batch_max_records: 500,
            retry_initial: Duration::from_millis(50),
            retry_max: Duration::from_millis(500),
            lease_retry: Duration::from_millis(200),
            statement_timeout: Duration::from_millis(5000),
            lag_interval: Duration::from_millis(200),
            stall_after: Duration::from_millis(2000),
        }
    }
}

impl Drop for TestKafka {
    fn drop(&mut self) {
        let (bootstrap, topics) = (self.bootstrap.clone(), [self.topic.clone(), self.dlq_topic.clone()]);
        crate::block_on_cleanup(async move {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            let _ =
                tokio::time::timeout(Duration::from_secs(10), platform::kafka::delete_topics(&bootstrap, &names)).await;
        });
    }
}

/// A Tansu broker of the test's own, on a free port with its own storage database, so a test
/// can stop and restart it without disturbing other tests.
#[derive(Debug)]
pub struct PrivateBroker {
    pub bootstrap: String,
    addr: SocketAddr,
    storage: TestDb,
    log: PathBuf,
    child: Option<Child>,
}

impl PrivateBroker {
    pub async fn start() -> anyhow::Result<Self> {
        let storage = TestDb::global(Schema::Kafka).await?;
        let addr = TcpListener::bind("127.0.0.1:0")?.local_addr()?;
        let log = std::env::temp_dir().join(format!("tansu-{}.log", storage.name));
        let mut this = Self { bootstrap: addr.to_string(), addr, storage, log, child: None };
        this.resume().await?;
        Ok(this)
    }

    /// Stops the broker with SIGTERM and waits for the process to end.
    pub async fn stop(&mut self) -> anyhow::Result<()> {
        if let Some(mut child) = self.child.take() {
            if let Some(pid) = child.id() {
                let _ = Command::new("kill").arg("-TERM").arg(pid.to_string()).status().await;
            }
            if tokio::time::timeout(Duration::from_secs(10), child.wait()).await.is_err() {
                child.kill().await?;
            }
        }
        Ok(())
    }

    /// Freezes the broker with SIGSTOP: its port stays open and its connections established,
    /// but nothing answers, as a broker stuck in a long GC pause or an overloaded machine.
    /// Longer than a client's session timeout, this is what leaves Tansu 0.6.0's consumer
    /// groups with a ghost member (see docs/tansu.md).
    pub async fn pause(&self) -> anyhow::Result<()> {
        self.signal("-STOP").await
    }

    /// Lets a [`pause`](Self::pause)d broker run again (SIGCONT).
    pub async fn unpause(&self) -> anyhow::Result<()> {
        self.signal("-CONT").await
    }

    async fn signal(&self, sig: &str) -> anyhow::Result<()> {
        let pid =
            self.child.as_ref().and_then(Child::id).ok_or_else(|| anyhow::anyhow!("the broker is not running"))?;
        let ok = Command::new("kill").arg(sig).arg(pid.to_string()).status().await?.success();
        anyhow::ensure!(ok, "kill {sig} {pid} failed");
        Ok(())
    }

    /// Starts the broker (again) on the same port and storage, once the port is free (after a
    /// stop, Tansu's port takes a few seconds to free).
    pub async fn resume(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpListener::bind(self.addr).is_err() {
            anyhow::ensure!(Instant::now() < deadline, "port {} did not free within 30 s", self.addr);
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log)?;
        let url = format!("tcp://{}", self.addr);
        let child = Command::new(stack::tansu_bin())
            .arg("broker")
            .args(["--storage-engine", &self.storage.url])
            .args(["--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .env_remove("CLUSTER_ID")
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| anyhow::anyhow!("starting {}: {e}", stack::tansu_bin().display()))?;
        self.child = Some(child);
        while TcpStream::connect_timeout(&self.addr, Duration::from_millis(200)).is_err() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "broker did not listen within 30 s; log: {}",
                self.log.display()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        Ok(())
    }

    /// The broker's log, for assertions and failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for PrivateBroker {
    fn drop(&mut self) {
        if let Some(child) = self.child.as_mut() {
            let _ = child.start_kill();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

/// How long the readers below wait for the next record before failing the test.
pub const READ_WAIT: Duration = Duration::from_secs(90);

pub use platform::kafka::Record;

fn reader(bootstrap: &str, extra: &[(&str, &str)]) -> StreamConsumer {
    let mut cfg = platform::kafka::consumer_config(bootstrap, &format!("t.{}.reader", crate::unique_id()));
    for (k, v) in extra {
        cfg.set(*k, *v);
    }
    cfg.create().expect("reader consumer")
}

/// The first `n` records of `topic`, read by a group of their own (fails after [`READ_WAIT`]
/// without a record).
pub async fn read(bootstrap: &str, topic: &str, n: usize) -> Vec<Record> {
    let c = reader(bootstrap, &[]);
    c.subscribe(&[topic]).expect("subscribe");
    receive(&c, n).await
}

/// The next `n` records of `c`, a consumer already subscribed or assigned (fails after
/// [`READ_WAIT`] without a record).
pub async fn receive(c: &StreamConsumer, n: usize) -> Vec<Record> {
    let mut records = Vec::with_capacity(n);
    let mut stream = c.stream();
    while records.len() < n {
        let msg = tokio::time::timeout(READ_WAIT, stream.next())
            .await
            .unwrap_or_else(|_| panic!("only {} of {n} records within {READ_WAIT:?}", records.len()))
            .expect("stream open")
            .expect("record");
        records.push(Record::from_message(&msg));
    }
    records
}

/// Every record of `topic` (see [`platform::kafka::read_topic`]).
pub async fn read_all(bootstrap: &str, topic: &str) -> Vec<Record> {
    platform::kafka::read_topic(bootstrap, topic, READ_WAIT).await.unwrap_or_else(|e| panic!("{e}"))
}
