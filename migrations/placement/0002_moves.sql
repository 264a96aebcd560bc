-- The journal of partition moves (`orders-rebalance apply`), and what each running orders
-- process believes the live map is.
--
-- A move is one batch of partitions of one region going from one shard to another. Its row is
-- written before anything else happens and advanced at each phase boundary, so a crashed
-- `apply` is resumed (or cleaned by `abort`) from here: replication objects are named after the
-- move's id (`th_move_<id>`), and every step is idempotent.
--
-- Phases:
--   COPYING      publication + slot on the source, subscription on the destination; the
--                initial copy of the partitions' rows is running.
--   CATCHING_UP  copied; the destination follows the source's changes. The freeze waits for
--                the lag to be small.
--   SWITCHED     frozen, verified, ownership moved, the map published. The source's rows and
--                replication objects are still there.
--   DONE         cleaned: source rows deleted, publication and slot dropped.
--   ABORTED      rolled back before the switch; nothing of it is left.
create table partition_move (
    id bigint generated always as identity primary key,
    region text not null,
    source text not null,
    dest text not null,
    partitions smallint[] not null check (cardinality(partitions) > 0),
    phase text not null check (phase in ('COPYING', 'CATCHING_UP', 'SWITCHED', 'DONE', 'ABORTED')),
    -- Rows of the partitions on the destination when the copy finished.
    rows_copied bigint,
    -- The write pause of the switch: freeze start to the map's publication.
    freeze_ms double precision,
    -- Bytes of WAL the destination was behind at the last look.
    lag_bytes bigint,
    -- The epoch the switch published.
    switched_epoch bigint,
    -- Rows and checksums per table of the frozen partitions, as verified before the switch.
    verified jsonb,
    -- The last thing that went wrong (a failed freeze, a crash seen on resume), for `status`.
    note text,
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now(),
    switched_at timestamptz,
    finished_at timestamptz
);

-- One unfinished move at a time: `apply` resumes it before starting another.
create unique index partition_move_one_active on partition_move ((true)) where phase not in ('DONE', 'ABORTED');

-- Each orders process says, every poll, which epoch it routes by; `status` lists the ones seen
-- lately, so a process that has not caught up with a switch is visible.
create table placement_process (
    process text primary key,
    service text not null,
    epoch bigint not null,
    started_at timestamptz not null,
    seen_at timestamptz not null default now()
);
