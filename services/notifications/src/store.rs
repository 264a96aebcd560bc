//! The inbox and the notifications, in the `notifications` database.
//!
//! [`apply`] is the whole effect of one message in one transaction: claim the inbox row for
//! `(source, outbox id)`, and only when the claim is new, write the notification. A redelivered
//! message finds its row and changes nothing, so the Kafka offset may be committed after the
//! database commit and still never yield a second notification.

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::PgPool;
use uuid::Uuid;

use crate::event::{Envelope, Event};

/// Where a message was read and the correlation id it carried: stored for tracing.
#[derive(Debug, Clone)]
pub struct Origin<'a> {
    pub topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub correlation_id: &'a str,
}

/// What applying a message did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// First time: the notification was stored.
    Sent { notification_id: i64, recipient: Option<Uuid> },
    /// Seen before: nothing changed.
    Duplicate,
}

/// Applies one valid message: inbox claim plus notification, committed together.
///
/// Every error is returned as is: the caller cannot tell a database that is down from one that
/// refuses, and must not skip the message in either case.
#[tracing::instrument(skip_all, fields(source = env.source.as_str(), outbox_id = env.outbox_id.as_str()))]
pub async fn apply(pool: &PgPool, env: &Envelope, origin: &Origin<'_>) -> Result<Outcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let claimed = sqlx::query_scalar::<_, i32>(
        "insert into inbox (source, outbox_id, event_name, order_id, topic, kafka_partition, kafka_offset, correlation_id)
         values ($1, $2, $3, $4, $5, $6, $7, $8)
         on conflict (source, outbox_id) do nothing
         returning 1",
    )
    .bind(env.source.as_str())
    .bind(env.outbox_id.as_str())
    .bind(env.event.name())
    .bind(env.event.order_id())
    .bind(origin.topic)
    .bind(origin.partition)
    .bind(origin.offset)
    .bind(origin.correlation_id)
    .fetch_optional(&mut *tx)
    .await?;
    if claimed.is_none() {
        tx.rollback().await?;
        return Ok(Outcome::Duplicate);
    }

    let recipient = match &env.event {
        Event::Created(e) => Some(e.customer_id),
        // OrderPaid carries no customer id. One order's events share a key, hence a partition,
        // so its OrderCreated was applied before (unless it was dead-lettered or predates this
        // service): take the recipient from there, else store NULL rather than guess.
        Event::Paid(e) => sqlx::query_scalar::<_, Option<Uuid>>(
            "select recipient_customer_id from notifications
             where order_id = $1 and event_name = 'OrderCreated' order by id limit 1",
        )
        .bind(e.order_id)
        .fetch_optional(&mut *tx)
        .await?
        .flatten(),
    };
    let id: i64 = sqlx::query_scalar(
        "insert into notifications
           (source, outbox_id, order_id, event_name, recipient_customer_id, channel, rendered_text, region, correlation_id)
         values ($1, $2, $3, $4, $5, 'log', $6, $7, $8)
         returning id",
    )
    .bind(env.source.as_str())
    .bind(env.outbox_id.as_str())
    .bind(env.event.order_id())
    .bind(env.event.name())
    .bind(recipient)
    .bind(render(&env.event))
    .bind(env.event.region().as_str())
    .bind(origin.correlation_id)
    .fetch_one(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Outcome::Sent { notification_id: id, recipient })
}

/// The text the customer receives.
pub fn render(event: &Event) -> String {
    match event {
        Event::Created(e) => format!(
            "Your order {} for {} ticket{} is confirmed: {} total, awaiting payment.",
            e.order_id,
            e.quantity.get(),
            if e.quantity.get() == 1 { "" } else { "s" },
            e.total,
        ),
        Event::Paid(e) => format!(
            "Payment received for order {} at {}. Enjoy the event!",
            e.order_id,
            e.paid_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
        ),
    }
}

/// A stored notification, as `GET /api/v1/notifications` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: i64,
    pub order_id: Uuid,
    pub event_name: String,
    pub recipient_customer_id: Option<Uuid>,
    pub channel: String,
    #[serde(rename = "text")]
    pub rendered_text: String,
    pub region: String,
    pub source: String,
    pub outbox_id: String,
    pub correlation_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Every notification about one order, oldest first.
#[tracing::instrument(skip(pool))]
pub async fn for_order(pool: &PgPool, order_id: Uuid) -> Result<Vec<Notification>, sqlx::Error> {
    sqlx::query_as(
        "select id, order_id, event_name, recipient_customer_id, channel, rendered_text, region, source, outbox_id,
                correlation_id, created_at
         from notifications where order_id = $1 order by id",
    )
    .bind(order_id)
    .fetch_all(pool)
    .await
}
