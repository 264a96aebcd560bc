-- The outbox hand-off of a partition move.
--
-- A moved partition's outbox rows are never copied: the source's relay publishes what was
-- written there before the freeze, and this shard's relay holds the partition's new rows until
-- it has. Otherwise an order's `OrderPaid`, written here after the switch, could reach the topic
-- before its `OrderCreated` still waiting in the source's outbox.
--
-- The switch writes one row per partition (in the transaction that makes this shard the owner);
-- this shard's relay skips the partition's rows with `id > after_id` while the row exists, and
-- deletes it once the source has no PENDING row of the partition with `id <= source_upto`
-- (everything the source wrote before it let go). Both bounds matter when a partition moves
-- back before its first hand-off finished: rows up to `after_id` were written here during an
-- earlier stay and are never held, and rows the source writes after taking it back (held there
-- in turn) do not count, so two shards can never wait for each other.
create table outbox_hold (
    region text not null,
    partition smallint not null,
    source text not null,
    -- This shard's outbox watermark at the switch: later rows of the partition are held.
    after_id bigint not null,
    -- The source's outbox watermark once it had marked the partition MOVED: its rows up to
    -- here must be published first.
    source_upto bigint not null,
    move_id bigint not null,
    created_at timestamptz not null default now(),
    primary key (region, partition)
);

-- The relay's claim excludes held rows by partition.
create index outbox_pending_by_partition on outbox (partition, id) where status = 'PENDING';
