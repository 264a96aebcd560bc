//! Turning outbox rows into records on `orders.events`, and failures into decisions.

use platform::events::{OrderEvent, headers};
use platform::trace_context::{self, Context};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord};

use super::outbox::OutboxRow;

/// Broker and topic settings of a relay's producer.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    pub bootstrap: String,
    pub topic: String,
    pub dlq_topic: String,
    pub linger: std::time::Duration,
    /// How long librdkafka keeps trying one record before reporting it failed.
    pub message_timeout: std::time::Duration,
}

/// Why a row was not published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Failure {
    /// Says nothing about the row (broker unreachable, timed out, queue full): retried without
    /// using up the row's attempts' meaning, never dead-lettered.
    Transient(String),
    /// About this row (breaks the event contract, too large, refused by the broker): retried
    /// with backoff up to the attempt limit, then dead-lettered.
    Permanent(String),
}

impl Failure {
    pub fn message(&self) -> &str {
        match self {
            Self::Transient(m) | Self::Permanent(m) => m,
        }
    }
}

/// Sorts a producer error: only errors about the record itself are permanent. Anything else
/// is transient, so an outage never dead-letters rows (the DLQ lives on the same broker).
pub fn classify(e: &KafkaError) -> Failure {
    let code = match e {
        KafkaError::MessageProduction(code) => Some(*code),
        _ => None,
    };
    match code {
        Some(
            RDKafkaErrorCode::MessageSizeTooLarge
            | RDKafkaErrorCode::InvalidMessage
            | RDKafkaErrorCode::InvalidMessageSize
            | RDKafkaErrorCode::InvalidRecord
            | RDKafkaErrorCode::BadMessage
            | RDKafkaErrorCode::TopicAuthorizationFailed,
        ) => Failure::Permanent(format!("broker refused the record: {e}")),
        _ => Failure::Transient(format!("broker: {e}")),
    }
}

/// One shard's producer. Idempotent with `acks=all`, so a retried send never duplicates a
/// record and a record counts as sent only once every in-sync replica has it.
#[derive(Clone)]
pub struct Publisher {
    producer: FutureProducer,
    settings: ProducerSettings,
    shard: String,
    region: String,
}

impl Publisher {
    pub fn new(settings: ProducerSettings, shard: String, region: String) -> Result<Self, KafkaError> {
        let producer = platform::kafka::client_config(&settings.bootstrap)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", settings.linger.as_millis().to_string())
            .set("message.timeout.ms", settings.message_timeout.as_millis().to_string())
            .set("client.id", format!("orders-relay-{shard}"))
            .create()?;
        Ok(Self { producer, settings, shard, region })
    }

    /// Checks `row` against the event contract and hands it to the producer, with `trace` (the
    /// row's publish span) as its `traceparent` header. The returned future resolves when the
    /// broker acknowledged (or refused) it.
    pub fn enqueue(&self, row: &OutboxRow, trace: &Context) -> Result<DeliveryFuture, Failure> {
        check_contract(row)?;
        let key = row.aggregate_id.to_string();
        let record = FutureRecord::to(&self.settings.topic)
            .key(&key)
            .payload(&row.payload)
            .headers(self.headers(row, trace))
            .timestamp(row.created_at.timestamp_millis());
        self.producer.send_result(record).map_err(|(e, _)| classify(&e))
    }

    fn headers(&self, row: &OutboxRow, trace: &Context) -> OwnedHeaders {
        let outbox_id = row.id.to_string();
        let mut h = OwnedHeaders::new_with_capacity(7)
            .insert(Header { key: headers::TYPE, value: Some(row.event_type.as_str()) })
            .insert(Header { key: headers::OUTBOX_ID, value: Some(outbox_id.as_str()) })
            .insert(Header { key: headers::REGION, value: Some(self.region.as_str()) })
            .insert(Header { key: headers::SHARD, value: Some(self.shard.as_str()) });
        if let Some(id) = &row.correlation_id {
            h = h.insert(Header { key: headers::CORRELATION_ID, value: Some(id.as_str()) });
        }
        trace_context::kafka::inject(trace, h)
    }

    /// Publishes `row` to the DLQ topic with its original key, payload and headers, plus why
    /// and after how many attempts; resolves once the broker acknowledged it.
    pub async fn dead_letter(&self, row: &OutboxRow, reason: &str) -> Result<(), Failure> {
        let key = row.aggregate_id.to_string();
        let attempts = row.attempts.to_string();
        let headers = self
            .headers(row, &trace_context::from_traceparent(row.traceparent.as_deref()))
            .insert(Header { key: headers::DLQ_REASON, value: Some(reason) })
            .insert(Header { key: "dlq-attempts", value: Some(attempts.as_str()) })
            .insert(Header { key: headers::DLQ_SOURCE, value: Some(headers::DLQ_SOURCE_RELAY) });
        let record = FutureRecord::to(&self.settings.dlq_topic)
            .key(&key)
            .payload(&row.payload)
            .headers(headers)
            .timestamp(row.created_at.timestamp_millis());
        let delivery = self.producer.send_result(record).map_err(|(e, _)| classify(&e))?;
        match delivery.await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err((e, _))) => Err(Failure::Transient(format!("dead-lettering: {e}"))),
            Err(_) => Err(Failure::Transient("dead-lettering: producer dropped".into())),
        }
    }

    /// A fatal producer error (e.g. the idempotent producer lost its sequence after timeouts):
    /// this producer will refuse every record from now on and must be replaced.
    pub fn fatal_error(&self) -> Option<String> {
        use rdkafka::producer::Producer;
        self.producer.client().fatal_error().map(|(code, msg)| format!("{code}: {msg}"))
    }
}

/// The relay publishes only what consumers can read: the payload must parse as the event its
/// `event_type` names, about the row's aggregate. A row written by a newer orders version that
/// this relay does not know yet fails here and is retried (a newer relay may be rolling out)
/// before it is dead-lettered.
fn check_contract(row: &OutboxRow) -> Result<(), Failure> {
    let event: OrderEvent = serde_json::from_str(&row.payload).map_err(|e| {
        Failure::Permanent(format!("payload of {} breaks the orders.events contract: {e}", row.event_type))
    })?;
    if event.name() != row.event_type {
        return Err(Failure::Permanent(format!(
            "event_type {} disagrees with the payload's eventName {}",
            row.event_type,
            event.name()
        )));
    }
    if event.order_id() != row.aggregate_id {
        return Err(Failure::Permanent(format!(
            "aggregate_id {} disagrees with the payload's orderId {}",
            row.aggregate_id,
            event.order_id()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use uuid::Uuid;

    fn row(event_type: &str, payload: serde_json::Value, aggregate: Uuid) -> OutboxRow {
        OutboxRow {
            id: 1,
            aggregate_id: aggregate,
            event_type: event_type.into(),
            payload: payload.to_string(),
            correlation_id: None,
            traceparent: None,
            attempts: 1,
            created_at: chrono::Utc::now(),
            was_in_flight: false,
        }
    }

    #[test]
    fn contract_accepts_a_valid_event_and_refuses_mismatches() {
        let id = Uuid::now_v7();
        let paid = serde_json::json!({"eventName": "OrderPaid", "orderId": id, "paidAt": "2026-01-20T21:00:00Z", "region": "NA", "version": 2});
        assert_eq!(check_contract(&row("OrderPaid", paid.clone(), id)), Ok(()));
        assert!(matches!(check_contract(&row("OrderCreated", paid.clone(), id)), Err(Failure::Permanent(_))));
        assert!(matches!(check_contract(&row("OrderPaid", paid, Uuid::now_v7())), Err(Failure::Permanent(_))));
        let unknown = serde_json::json!({"eventName": "OrderRefunded", "orderId": id});
        let err = check_contract(&row("OrderRefunded", unknown, id)).unwrap_err();
        assert!(err.message().contains("contract"), "{err:?}");
    }

    #[test]
    fn only_record_errors_are_permanent() {
        let too_big = KafkaError::MessageProduction(RDKafkaErrorCode::MessageSizeTooLarge);
        assert!(matches!(classify(&too_big), Failure::Permanent(_)));
        for code in [RDKafkaErrorCode::MessageTimedOut, RDKafkaErrorCode::QueueFull, RDKafkaErrorCode::AllBrokersDown] {
            assert!(matches!(classify(&KafkaError::MessageProduction(code)), Failure::Transient(_)));
        }
        assert!(matches!(classify(&KafkaError::Canceled), Failure::Transient(_)));
    }
}
