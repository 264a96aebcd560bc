-- The notifications service's own state: which messages it has applied (inbox) and what it
-- sent (notifications). A message's inbox row and its notification commit in one transaction,
-- so a message redelivered by Kafka (rewound offsets, a crash before the offset commit, a relay
-- that published twice) finds its inbox row and has no second effect.

-- One row per applied message. Outbox ids are numbered per shard (each shard's outbox has its
-- own identity column), so the idempotency key is the pair (source, outbox id), where source
-- is the record's `shard` header: an opaque name to this service, never routed on.
create table inbox (
    source text not null,
    outbox_id text not null,
    event_name text not null,
    order_id uuid not null,
    -- Where the message was read, for tracing a notification back to its record.
    topic text not null,
    kafka_partition integer not null,
    kafka_offset bigint not null,
    correlation_id text,
    received_at timestamptz not null default now(),
    primary key (source, outbox_id)
);

-- The effect: one notification per applied message.
create table notifications (
    id bigint generated always as identity primary key,
    source text not null,
    outbox_id text not null,
    order_id uuid not null,
    event_name text not null check (event_name in ('OrderCreated', 'OrderPaid')),
    -- The customer notified. NULL when not known: OrderPaid carries no customer id, and it is
    -- taken from the order's OrderCreated notification when that one was seen first.
    recipient_customer_id uuid,
    -- Only `log` today (the notification is written to the service log); a real channel
    -- (email, push) becomes a new value here.
    channel text not null default 'log' check (channel in ('log')),
    rendered_text text not null,
    region text not null,
    correlation_id text,
    created_at timestamptz not null default now(),
    -- Belt and braces: even a bug that skipped the inbox check cannot store a second effect.
    unique (source, outbox_id),
    foreign key (source, outbox_id) references inbox (source, outbox_id)
);

-- `GET /api/v1/notifications?orderId=` and the OrderPaid recipient lookup.
create index notifications_order_idx on notifications (order_id, id);
