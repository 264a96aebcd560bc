-- The schema of every shard. Everything one order touches lives on the event's shard, so
-- creating or paying an order is one local transaction. `partition` is the logical partition
-- the row's id carries (shard-router::ids): what a rebalance copies between shards.

create table events (
    id uuid primary key,
    region text not null,
    partition smallint not null,
    organizer_id uuid not null,
    title text not null,
    description text,
    venue text not null,
    starts_at timestamptz not null,
    ends_at timestamptz not null,
    created_at timestamptz not null default now(),
    constraint events_window check (starts_at < ends_at)
);

-- Listing a region by start time, and an organizer's events, both with keyset paging.
create index events_by_start on events (region, starts_at, id);
create index events_by_organizer on events (organizer_id, starts_at, id);
create index events_by_partition on events (partition);

create table ticket_types (
    id uuid primary key,
    event_id uuid not null references events (id) on delete cascade,
    partition smallint not null,
    name text not null,
    price_in_cents bigint not null check (price_in_cents > 0),
    total_quantity integer not null check (total_quantity > 0),
    -- The stock guard: an order's conditional update can never take it below zero, whatever
    -- the Redis lock did.
    remaining_quantity integer not null,
    constraint stock_in_bounds check (remaining_quantity between 0 and total_quantity)
);

create index ticket_types_by_event on ticket_types (event_id);

create table orders (
    id uuid primary key,
    partition smallint not null,
    region text not null,
    customer_id uuid not null,
    event_id uuid not null references events (id),
    ticket_type_id uuid not null references ticket_types (id),
    quantity integer not null check (quantity > 0),
    total_price_in_cents bigint not null check (total_price_in_cents >= 0),
    status text not null default 'PENDING' check (status in ('PENDING', 'PAID', 'CANCELLED')),
    created_at timestamptz not null default now(),
    paid_at timestamptz
);

create index orders_by_customer on orders (customer_id, created_at desc, id desc);
create index orders_by_partition on orders (partition);

-- A replayed request returns the stored answer; the same key with another body is refused.
-- Keys are scoped to the caller and the operation.
create table idempotency_keys (
    owner_id uuid not null,
    operation text not null,
    key text not null,
    request_hash bytea not null,
    status_code smallint not null,
    response jsonb not null,
    created_at timestamptz not null default now(),
    primary key (owner_id, operation, key)
);

-- The transactional outbox: written in the same transaction as the change it announces, drained
-- by this shard's relay. `txid` lets the relay claim only rows whose transaction committed before
-- every transaction still running, so it publishes in commit order.
create table outbox (
    id bigint generated always as identity primary key,
    aggregate_id uuid not null,
    partition smallint not null,
    event_type text not null,
    payload jsonb not null,
    correlation_id text,
    status text not null default 'PENDING' check (status in ('PENDING', 'SENT', 'FAILED')),
    attempts integer not null default 0,
    last_error text,
    next_attempt_at timestamptz not null default now(),
    txid xid8 not null default pg_current_xact_id(),
    created_at timestamptz not null default now(),
    sent_at timestamptz
);

create index outbox_pending on outbox (id) where status = 'PENDING';

-- Wakes the relay on commit (LISTEN outbox); it polls as well, so a missed notice only delays.
create function outbox_notify() returns trigger
language plpgsql as $$
begin
    perform pg_notify('outbox', '');
    return null;
end;
$$;

create trigger outbox_notify after insert on outbox
for each statement execute function outbox_notify();
