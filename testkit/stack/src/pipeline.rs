//! The asynchronous half of the stack for one test: the outbox relay on the stack's shards,
//! and both consumers (notifications, the projector) on a fresh topic and fresh databases.

use std::time::Duration;

use platform::db::Schema;
use testkit::{TestApp, TestDb, TestKafka};

use crate::Stack;

/// The relay, notifications and the projector, each on port 0. Stop it with
/// [`Pipeline::stop`] before it drops (the topics go last, see there).
pub struct Pipeline {
    pub relay: TestApp,
    pub notifications: TestApp,
    pub projector: TestApp,
    /// The projector's database.
    pub read_models: TestDb,
    /// The notifications service's database.
    pub notifications_db: TestDb,
    /// The topic and DLQ the relay publishes to and the consumers read.
    pub kafka: TestKafka,
}

impl Pipeline {
    /// Starts the three on `stack`'s shards, accounts and orders.
    pub async fn start(stack: &Stack) -> Self {
        let kafka = TestKafka::new(3).await.expect("topics");
        let relay = orders::relay::Relay::build(
            orders::relay::Settings { topic_partitions: 3, ..crate::services::relay_settings(&kafka) },
            stack.shards.map.clone(),
        )
        .await
        .expect("build the relay");
        let relay = TestApp::spawn(relay.port(), move |stop| relay.run_until_stopped(stop));

        let notifications_db = TestDb::global(Schema::Notifications).await.expect("notifications database");
        let app = notifications::Application::build(notifications::Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: notifications_db.url.clone(),
            consumer_name: kafka.group.clone(),
            consumer: kafka.consumer_config(),
            shards_file: testkit::stack::shards_file(),
            ..notifications::Settings::default()
        })
        .await
        .expect("build notifications");
        let notifications = TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop));

        let read_models = TestDb::global(Schema::ReadModels).await.expect("read-models database");
        let app = projector::Application::build(projector::Settings {
            http_addr: "127.0.0.1:0".parse().unwrap(),
            database_url: read_models.url.clone(),
            consumer: kafka.consumer_config(),
            supervise_interval: Duration::from_millis(200),
            orders_url: stack.orders.base_url.clone(),
            accounts_jwks_url: stack.accounts.url("/.well-known/jwks.json"),
            ..projector::Settings::default()
        })
        .await
        .expect("build the projector");
        let projector = TestApp::spawn(app.port(), move |stop| app.run_until_stopped(stop));
        Self { relay, notifications, projector, read_models, notifications_db, kafka }
    }

    /// Stops the consumers and the relay, so the topics can be deleted: librdkafka (2.x)
    /// crashes the whole process with SIGSEGV when a fetch of its finds the topic gone on
    /// Tansu 0.6.0, which answers "unknown topic" with a leader hint but no topic name.
    pub async fn stop(self) {
        self.projector.stop().await.unwrap();
        self.notifications.stop().await.unwrap();
        self.relay.stop().await.unwrap();
    }
}
