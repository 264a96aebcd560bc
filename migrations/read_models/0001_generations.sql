-- The projector's read models (CQRS query side of orders.events), kept in generations.
--
-- Each generation N owns a schema `rm_g<N>` whose tables are created by `rm_create_generation`
-- (the first generation and every rebuild get identical tables from that one function) and is
-- filled by its own consumer `projector.g<N>`, from offset 0 of orders.events. Readers never
-- name a generation: they read the views `public.event_sales`, `public.customer_orders` and
-- `public.order_timeline`, which point at the LIVE generation. A switch replaces the three
-- views and flips the states in one transaction, so a reader sees one generation or the other,
-- never a mix.

-- Where each consumer is in each partition, committed with the effects it covers
-- (platform::consumer). Identical to migrations/notifications/0002_consumer_checkpoints.sql:
-- the runtime's statements (platform/src/consumer/checkpoint.rs) expect exactly this table.
create table consumer_checkpoint (
    -- The consumer's versioned name (here `projector.g<N>`, one per generation).
    consumer text not null,
    topic text not null,
    kafka_partition integer not null check (kafka_partition >= 0),
    -- The first offset not yet applied: the consumer seeks here on start.
    next_offset bigint not null check (next_offset >= 0),
    updated_at timestamptz not null default now(),
    primary key (consumer, topic, kafka_partition)
);

-- One row per generation, ever. BUILDING: filling from offset 0 beside the LIVE one;
-- LIVE: what the views show (exactly one); RETIRED: replaced, its schema dropped when the
-- next rebuild starts.
create table projection_generation (
    generation integer primary key check (generation > 0),
    -- The consumer filling it: key of its checkpoints and of its lease.
    consumer_name text not null unique check (consumer_name = 'projector.g' || generation),
    state text not null check (state in ('BUILDING', 'LIVE', 'RETIRED')),
    -- A BUILDING generation with this set is not switched to automatically once caught up
    -- (`projector rebuild --hold-switch`): an operator compares, then runs `projector switch`.
    hold_switch boolean not null default false,
    created_at timestamptz not null default now(),
    -- When it became LIVE.
    switched_at timestamptz,
    -- When it stopped being LIVE.
    retired_at timestamptz,
    -- When its schema was dropped (a RETIRED generation, at the next rebuild's start).
    dropped_at timestamptz,
    -- The newest `occurredAt` among the events applied: the `asOf` of reads.
    last_event_at timestamptz,
    -- When a batch last applied something new.
    last_applied_at timestamptz,
    -- Events applied (inbox claims), and records that were seen before.
    applied bigint not null default 0,
    duplicates bigint not null default 0
);

-- At most one LIVE and one BUILDING generation.
create unique index projection_generation_one_live on projection_generation ((true)) where state = 'LIVE';
create unique index projection_generation_one_building on projection_generation ((true)) where state = 'BUILDING';

-- The tables of generation `g`, in schema rm_g<g>. The only place they are defined.
create function rm_create_generation(g integer) returns void language plpgsql as $fn$
declare
    s text := 'rm_g' || g;
begin
    execute format('create schema %I', s);

    -- One row per order. Facts (customer … created_at) come from OrderCreated and are null
    -- until it is seen (an OrderPaid can arrive first: the topic never promises order across
    -- partitions); status and version come from the highest version seen.
    execute format($t$
        create table %I.customer_orders (
            order_id uuid primary key,
            customer_id uuid,
            event_id uuid,
            ticket_type_id uuid,
            quantity integer check (quantity > 0),
            total_price_in_cents bigint check (total_price_in_cents >= 0),
            status text not null check (status in ('PENDING', 'PAID', 'CANCELLED')),
            region text not null,
            created_at timestamptz,
            paid_at timestamptz,
            cancelled_at timestamptz,
            cancel_reason text check (cancel_reason in ('CUSTOMER', 'EXPIRED')),
            version integer not null check (version > 0),
            updated_at timestamptz not null default now()
        )$t$, s);
    execute format('create index on %I.customer_orders (customer_id, created_at desc, order_id desc)', s);
    execute format('create index on %I.customer_orders (event_id, ticket_type_id)', s);

    -- Every event of every order. Doubles as the inbox: a record delivered again finds its
    -- (source, outbox_id) row, or its (order_id, version), and has no effect.
    execute format($t$
        create table %I.order_timeline (
            order_id uuid not null,
            version integer not null check (version > 0),
            event_name text not null check (event_name in ('OrderCreated', 'OrderPaid', 'OrderCancelled')),
            occurred_at timestamptz not null,
            source text not null,
            outbox_id text not null,
            correlation_id text,
            kafka_partition integer not null,
            kafka_offset bigint not null,
            applied_at timestamptz not null default now(),
            -- The inbox: an order's version happens once, whoever published it how often.
            -- Not (source, outbox_id): outbox ids are a shard's identity column, and a shard
            -- restored from a snapshot or made anew under its name hands them out again.
            primary key (order_id, version)
        )$t$, s);
    execute format('create index on %I.order_timeline (source, outbox_id)', s);

    -- Per (event, ticket type): recomputed from customer_orders for the pairs a batch touched,
    -- so it is right under any delivery order and idempotent.
    execute format($t$
        create table %I.event_sales (
            event_id uuid not null,
            ticket_type_id uuid not null,
            region text not null,
            orders bigint not null,
            orders_paid bigint not null,
            orders_cancelled bigint not null,
            tickets_sold bigint not null,
            tickets_paid bigint not null,
            tickets_cancelled bigint not null,
            revenue_in_cents bigint not null,
            updated_at timestamptz not null default now(),
            primary key (event_id, ticket_type_id)
        )$t$, s);
end
$fn$;

-- Points the reader views at generation `g` (inside the switch's transaction).
create function rm_point_views(g integer) returns void language plpgsql as $fn$
declare
    s text := 'rm_g' || g;
    v text;
begin
    foreach v in array array['event_sales', 'customer_orders', 'order_timeline'] loop
        execute format('create or replace view public.%I as select * from %I.%I', v, s, v);
    end loop;
end
$fn$;

-- Generation 1, LIVE, unless a generation exists (also called by the service at start).
create function rm_bootstrap() returns void language plpgsql as $fn$
begin
    perform pg_advisory_xact_lock(hashtext('projector.bootstrap'));
    if not exists (select 1 from projection_generation) then
        perform rm_create_generation(1);
        insert into projection_generation (generation, consumer_name, state, switched_at)
        values (1, 'projector.g1', 'LIVE', now());
        perform rm_point_views(1);
    end if;
end
$fn$;

select rm_bootstrap();
