-- Where the consumer is in each partition, kept in its own database and written in the same
-- transaction as the effects of the records it covers (platform::consumer). The broker's
-- consumer group is not used at all: Tansu 0.6.0's group coordinator can stay stuck in
-- `Forming` under a departed leader, or keep a ghost member holding partitions, and neither
-- can happen to a row here. A checkpoint can never run ahead of an effect, since both commit
-- together or not at all.
--
-- Any consumer database of the project carries this same table (the runtime's statements are
-- in platform/src/consumer/checkpoint.rs).
create table consumer_checkpoint (
    -- The consumer's versioned name (e.g. `notifications.v1`): a consumer with new semantics
    -- starts from scratch under a new name while the old rows stay.
    consumer text not null,
    topic text not null,
    kafka_partition integer not null check (kafka_partition >= 0),
    -- The first offset not yet applied: the consumer seeks here on start.
    next_offset bigint not null check (next_offset >= 0),
    updated_at timestamptz not null default now(),
    primary key (consumer, topic, kafka_partition)
);
