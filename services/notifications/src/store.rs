//! The inbox and the notifications, in the `notifications` database.
//!
//! [`apply_batch`] is the whole effect of a batch of records, inside the consumer runtime's
//! transaction (which also moves the checkpoints): claim the inbox rows for the records'
//! `(source, outbox id)` keys, and write a notification only for the claims that are new. A
//! redelivered record finds its row and changes nothing, so a batch read again after a crash
//! or an outage never yields a second notification.
//!
//! Set-based on purpose (one statement per step for the whole batch, not per record): this is
//! what lets the consumer drain thousands of records per second. It keeps the meaning of
//! applying the records one by one in offset order, the OrderPaid recipient included.

use std::collections::{HashMap, HashSet};

use chrono::{DateTime, Utc};
use platform::consumer::{Applied, Valid};
use platform::events::CancelReason;
use serde::Serialize;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use crate::event::{Cancelled, Envelope, Event, Paid};

/// A valid record and the correlation id it carried (or a fresh one).
#[derive(Debug, Clone)]
pub struct Incoming {
    pub env: Envelope,
    pub correlation_id: String,
}

/// A notification stored by a batch, reported once the batch is committed.
#[derive(Debug, Clone)]
pub struct Sent {
    pub notification_id: i64,
    pub recipient: Option<Uuid>,
    pub order_id: Uuid,
    pub event_name: &'static str,
    pub source: String,
    pub outbox_id: String,
    pub correlation_id: String,
    pub text: String,
}

/// Applies a batch of valid records (in offset order per partition): inbox claims, then one
/// notification per new claim. Errors are returned as they are: the runtime cannot tell a
/// database that is down from one that refuses, and must not skip the batch in either case.
#[tracing::instrument(skip_all, fields(records = batch.len()))]
pub async fn apply_batch(
    conn: &mut PgConnection,
    topic: &str,
    batch: &[Valid<Incoming>],
) -> Result<Applied<Vec<Sent>>, sqlx::Error> {
    // A key twice in one batch (a relay that published a row again right away): the first
    // occurrence is the one applied, as one by one.
    let mut seen = HashSet::new();
    let firsts: Vec<&Valid<Incoming>> =
        batch.iter().filter(|v| seen.insert((v.value.env.source.as_str(), v.value.env.outbox_id.as_str()))).collect();

    let claimed: HashSet<(String, String)> = sqlx::query_as::<_, (String, String)>(
        "insert into inbox (source, outbox_id, event_name, order_id, topic, kafka_partition, kafka_offset, correlation_id)
         select s, o, e, d, $5, p, f, c
         from unnest($1::text[], $2::text[], $3::text[], $4::uuid[], $6::int[], $7::bigint[], $8::text[])
           as t(s, o, e, d, p, f, c)
         on conflict (source, outbox_id) do nothing
         returning source, outbox_id",
    )
    .bind(firsts.iter().map(|v| v.value.env.source.as_str()).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.value.env.outbox_id.as_str()).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.value.env.event.name()).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.value.env.event.order_id()).collect::<Vec<_>>())
    .bind(topic)
    .bind(firsts.iter().map(|v| v.partition).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.offset).collect::<Vec<_>>())
    .bind(firsts.iter().map(|v| v.value.correlation_id.as_str()).collect::<Vec<_>>())
    .fetch_all(&mut *conn)
    .await?
    .into_iter()
    .collect();
    let new: Vec<&Incoming> = firsts
        .iter()
        .map(|v| &v.value)
        .filter(|i| claimed.contains(&(i.env.source.as_str().to_owned(), i.env.outbox_id.as_str().to_owned())))
        .collect();

    // OrderPaid and OrderCancelled carry no customer id. One order's events share a key, hence a partition, so
    // its OrderCreated was applied before (in an earlier batch or earlier in this one) unless
    // it was dead-lettered or predates this service: take the recipient from there, else
    // store NULL rather than guess.
    let paid_orders: Vec<Uuid> =
        new.iter().filter(|i| !matches!(i.env.event, Event::Created(_))).map(|i| i.env.event.order_id()).collect();
    let mut recipients: HashMap<Uuid, Option<Uuid>> = if paid_orders.is_empty() {
        HashMap::new()
    } else {
        sqlx::query_as::<_, (Uuid, Option<Uuid>)>(
            "select distinct on (order_id) order_id, recipient_customer_id from notifications
             where order_id = any($1) and event_name = 'OrderCreated' order by order_id, id",
        )
        .bind(&paid_orders)
        .fetch_all(&mut *conn)
        .await?
        .into_iter()
        .collect()
    };
    let mut sent: Vec<Sent> = Vec::with_capacity(new.len());
    for i in &new {
        let recipient = match &i.env.event {
            Event::Created(e) => {
                recipients.entry(e.order_id).or_insert(Some(e.customer_id));
                Some(e.customer_id)
            }
            Event::Paid(Paid { order_id, .. }) | Event::Cancelled(Cancelled { order_id, .. }) => {
                recipients.get(order_id).copied().flatten()
            }
        };
        sent.push(Sent {
            notification_id: 0,
            recipient,
            order_id: i.env.event.order_id(),
            event_name: i.env.event.name(),
            source: i.env.source.as_str().to_owned(),
            outbox_id: i.env.outbox_id.as_str().to_owned(),
            correlation_id: i.correlation_id.clone(),
            text: render(&i.env.event),
        });
    }
    if !sent.is_empty() {
        // In batch order, so ids follow the order the records were applied in.
        let ids: Vec<i64> = sqlx::query_scalar(
            "insert into notifications
               (source, outbox_id, order_id, event_name, recipient_customer_id, channel, rendered_text, region, correlation_id)
             select s, o, d, e, r, 'log', x, g, c
             from unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::uuid[], $6::text[], $7::text[], $8::text[])
               with ordinality as t(s, o, d, e, r, x, g, c, n)
             order by n
             returning id",
        )
        .bind(sent.iter().map(|n| n.source.as_str()).collect::<Vec<_>>())
        .bind(sent.iter().map(|n| n.outbox_id.as_str()).collect::<Vec<_>>())
        .bind(sent.iter().map(|n| n.order_id).collect::<Vec<_>>())
        .bind(sent.iter().map(|n| n.event_name).collect::<Vec<_>>())
        .bind(sent.iter().map(|n| n.recipient).collect::<Vec<_>>())
        .bind(sent.iter().map(|n| n.text.as_str()).collect::<Vec<_>>())
        .bind(new.iter().map(|i| i.env.event.region().as_str()).collect::<Vec<_>>())
        .bind(sent.iter().map(|n| n.correlation_id.as_str()).collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        let mut ids = ids;
        // `returning` gives the rows in insertion order, which `order by n` fixed; sorting
        // the identity values makes that independent of how the rows are returned.
        ids.sort_unstable();
        for (n, id) in sent.iter_mut().zip(ids) {
            n.notification_id = id;
        }
    }
    let applied = u64::try_from(sent.len()).unwrap_or(u64::MAX);
    let duplicates = u64::try_from(batch.len() - sent.len()).unwrap_or(u64::MAX);
    Ok(Applied { applied, duplicates, detail: sent })
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
        Event::Cancelled(e) => format!(
            "Your order {} was cancelled ({}) and its tickets released.",
            e.order_id,
            match e.reason {
                CancelReason::Customer => "at your request",
                CancelReason::Expired => "it was not paid in time",
            }
        ),
    }
}

/// A stored notification, as `GET /api/v1/notifications` shows it.
#[derive(Debug, Clone, Serialize, sqlx::FromRow, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct Notification {
    pub id: i64,
    pub order_id: Uuid,
    /// The event it is about (the table's check constraint holds the same list).
    #[schema(pattern = "^(OrderCreated|OrderPaid|OrderCancelled)$")]
    pub event_name: String,
    /// The customer notified; null when not known yet (an `OrderPaid` seen before its order's
    /// `OrderCreated`).
    #[schema(required = true)]
    pub recipient_customer_id: Option<Uuid>,
    /// Only `log` today.
    #[schema(example = "log")]
    pub channel: String,
    #[serde(rename = "text")]
    pub rendered_text: String,
    pub region: String,
    /// The shard whose outbox the event came from.
    pub source: String,
    /// The event's id in that outbox.
    pub outbox_id: String,
    #[schema(required = true)]
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
