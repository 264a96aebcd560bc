-- Which logical partitions this shard holds, and the fence every write passes through.
--
-- The live partition → shard map lives on the global instance (the `placement` database); this
-- table is each shard's own word on it, checked inside every writing transaction, so a process
-- routing by a stale map can never write here once a partition has moved away.
--
-- States:
--   OWNED     the shard serves the partition: reads and writes.
--   FROZEN    a move is switching it: reads only, until `frozen_until` (the freeze's lease, so a
--             dead orchestrator cannot leave a partition unwritable).
--   INCOMING  a move is copying it here: neither reads nor writes yet.
--   MOVED     it lives on `moved_to` since `epoch`: neither.
create table partition_owner (
    region text not null,
    partition smallint not null,
    state text not null check (state in ('OWNED', 'FROZEN', 'INCOMING', 'MOVED')),
    -- The live map's epoch at which this row last changed.
    epoch bigint not null,
    moved_to text,
    frozen_until timestamptz,
    updated_at timestamptz not null default now(),
    primary key (region, partition),
    constraint moved_names_owner check ((state = 'MOVED') = (moved_to is not null)),
    constraint frozen_has_lease check ((state = 'FROZEN') = (frozen_until is not null))
);

-- The advisory-lock key of one partition. Writers hold it shared for their transaction; a
-- freeze takes it exclusively, so it waits for the writers in flight, and every writer after it
-- sees the new state. Two partitions sharing a key only wait for each other.
create function partition_lock_key(p_region text, p_partition smallint) returns integer
language sql immutable parallel safe as $$
    select (hashtext(p_region) # (p_partition::integer << 16)) # p_partition::integer
$$;

-- The write fence: called first in every writing transaction. Returns the epoch of the
-- ownership when the shard owns the partition; otherwise raises
--   TH001 (moved: the hint names the owner, the detail the epoch; refresh the map, retry there)
--   TH002 (frozen: a move is switching it; retry shortly)
--   TH003 (not owned here: this shard has no word on the partition; refresh the map)
create function fence_write(p_region text, p_partition smallint) returns bigint
language plpgsql volatile as $$
declare
    r partition_owner%rowtype;
begin
    perform pg_advisory_xact_lock_shared(1952997377, partition_lock_key(p_region, p_partition));
    -- A statement of its own, so its snapshot is taken after the lock: a freeze that committed
    -- while this writer waited is seen.
    select * into r from partition_owner where region = p_region and partition = p_partition;
    if not found then
        raise exception using errcode = 'TH003',
            message = format('partition %s/%s is not owned by this shard', p_region, p_partition);
    end if;
    if r.state = 'OWNED' or (r.state = 'FROZEN' and r.frozen_until < now()) then
        return r.epoch;
    end if;
    if r.state = 'FROZEN' then
        raise exception using errcode = 'TH002',
            message = format('partition %s/%s is being switched to another shard', p_region, p_partition);
    end if;
    if r.state = 'MOVED' then
        raise exception using errcode = 'TH001',
            message = format('partition %s/%s moved to %s', p_region, p_partition, r.moved_to),
            hint = r.moved_to, detail = r.epoch::text;
    end if;
    raise exception using errcode = 'TH003',
        message = format('partition %s/%s is not served by this shard yet', p_region, p_partition);
end;
$$;

-- Whether rows of the partition may be read here: OWNED or FROZEN (the source stays the
-- truth until the switch). Reads check it so a stale process never serves rows a move left
-- behind.
create function partition_readable(p_region text, p_partition smallint) returns boolean
language sql stable as $$
    select coalesce((select state in ('OWNED', 'FROZEN') from partition_owner
                     where region = p_region and partition = p_partition), false)
$$;

-- Idempotency records move with the data they guard, so they carry its partition. Rows from
-- before this migration take it from the id in their stored answer (the id's bits 52-63 hold
-- the partition, see shard-router::ids).
alter table idempotency_keys add column partition smallint;
update idempotency_keys
   set partition = ('x' || substr(replace(coalesce(response->>'orderId', response->>'eventId'), '-', ''), 14, 3))::bit(12)::integer
 where coalesce(response->>'orderId', response->>'eventId') is not null;
delete from idempotency_keys where partition is null;
alter table idempotency_keys alter column partition set not null;
create index idempotency_keys_by_partition on idempotency_keys (partition);

-- A move copies a partition by logical replication with a row filter on `partition`; Postgres
-- then refuses every UPDATE on a published table whose replica identity lacks that column, for
-- every row. So the identity is (id, partition) from the start, before any publication exists.
create unique index events_identity on events (id, partition);
alter table events replica identity using index events_identity;
create unique index ticket_types_identity on ticket_types (id, partition);
alter table ticket_types replica identity using index ticket_types_identity;
create unique index orders_identity on orders (id, partition);
alter table orders replica identity using index orders_identity;
create unique index idempotency_keys_identity on idempotency_keys (owner_id, operation, key, partition);
alter table idempotency_keys replica identity using index idempotency_keys_identity;
