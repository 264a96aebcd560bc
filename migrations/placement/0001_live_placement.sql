-- The live placement map: which shard owns each logical partition right now.
--
-- `shards.toml` is the desired placement; this is the live one, and services route by it. It is
-- seeded from `shards.toml` once per region (the first start that finds the region missing) and
-- changed afterwards only by a move, which bumps the epoch and notifies `placement`.

-- One row: the map's epoch, raised by every change.
create table placement_epoch (
    singleton boolean primary key default true check (singleton),
    epoch bigint not null
);
insert into placement_epoch (epoch) values (0);

-- The regions seeded so far, with the partition count they were seeded with (fixed once ids
-- exist: they carry the partition).
create table placement_region (
    region text primary key,
    partitions smallint not null check (partitions > 0),
    seeded_at timestamptz not null default now()
);

create table partition_placement (
    region text not null references placement_region (region),
    partition smallint not null,
    shard text not null,
    -- The epoch at which this partition last moved (its seed epoch until then).
    epoch bigint not null,
    primary key (region, partition)
);

create index partition_placement_by_shard on partition_placement (shard);

create function placement_notify() returns trigger
language plpgsql as $$
begin
    perform pg_notify('placement', new.epoch::text);
    return null;
end;
$$;

create trigger placement_notify after update on placement_epoch
for each row execute function placement_notify();
