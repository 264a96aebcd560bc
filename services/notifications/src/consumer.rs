//! What notifications adds to the project's consumer runtime ([`platform::consumer`]): how a
//! record of `orders.events` is validated ([`crate::event`]) and how a batch of valid ones
//! becomes notifications ([`crate::store::apply_batch`]). Lease, checkpoints, batching, the
//! DLQ, outage pauses and the watchdog are the runtime's.

use platform::consumer::{Applied, Handler, Rejection, Valid};
use platform::correlation::CorrelationId;
use platform::events::headers;
use rdkafka::Message;
use rdkafka::message::{Headers, OwnedMessage};
use sqlx::PgConnection;

use crate::event::{self, KnownRegions, RecordHeaders};
use crate::store::{self, Incoming, Sent};

/// The notifications handler.
pub struct Notifier {
    /// The regions an event may name.
    regions: KnownRegions,
    /// The topic consumed, stored with each inbox row for tracing.
    topic: String,
    /// Test hook (`crash_after_store`): abort right after the first batch commit.
    crash_after_store: bool,
}

impl Notifier {
    pub fn new(regions: KnownRegions, topic: String, crash_after_store: bool) -> Self {
        Self { regions, topic, crash_after_store }
    }
}

impl Handler for Notifier {
    type Valid = Incoming;
    type Detail = Vec<Sent>;

    fn validate(&self, msg: &OwnedMessage) -> Result<Incoming, Rejection> {
        let mut h = RecordHeaders::default();
        let mut correlation = None;
        if let Some(hs) = msg.headers() {
            for header in hs.iter() {
                match header.key {
                    headers::TYPE => h.event_type = header.value,
                    headers::OUTBOX_ID => h.outbox_id = header.value,
                    headers::SHARD => h.source = header.value,
                    headers::CORRELATION_ID => {
                        correlation =
                            header.value.and_then(|v| std::str::from_utf8(v).ok()).and_then(CorrelationId::parse);
                    }
                    _ => {}
                }
            }
        }
        let env = event::parse(h, msg.payload(), &self.regions)
            .map_err(|invalid| Rejection { code: invalid.code(), reason: invalid.reason() })?;
        let correlation_id = correlation.unwrap_or_else(CorrelationId::generate).as_str().to_owned();
        Ok(Incoming { env, correlation_id })
    }

    async fn apply_batch(
        &self,
        tx: &mut PgConnection,
        batch: &[Valid<Incoming>],
    ) -> Result<Applied<Vec<Sent>>, sqlx::Error> {
        store::apply_batch(tx, &self.topic, batch).await
    }

    fn committed(&self, sent: Vec<Sent>) {
        for n in &sent {
            metrics::counter!("notifications_sent_total", "event" => n.event_name, "channel" => "log").increment(1);
            // The `log` channel: this line is the delivery.
            tracing::info!(
                channel = "log",
                notification_id = n.notification_id,
                recipient = n.recipient.map_or_else(|| "unknown".to_owned(), |r| r.to_string()),
                order_id = %n.order_id,
                event = n.event_name,
                source = n.source,
                outbox_id = n.outbox_id,
                correlation_id = n.correlation_id,
                text = n.text,
                "notification sent"
            );
        }
        if self.crash_after_store {
            // Test hook: die the worst possible way right after a commit, to prove the
            // checkpoint was committed with the effects (nothing comes again after a restart).
            tracing::error!("crash_after_store is set: aborting right after the first batch commit");
            std::process::abort();
        }
    }
}
