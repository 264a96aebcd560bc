-- What the per-shard outbox relay needs beyond the outbox table itself.

-- Set when a relay claims a row for publishing and cleared when it learns the outcome. A row
-- claimed while this is still true was handed to the broker by a relay that died before it
-- could record the answer: it may already be on the topic, so its next publish is counted as a
-- redelivery (consumers deduplicate on the `outbox-id` header).
alter table outbox add column in_flight boolean not null default false;

-- A row waits while an earlier row of the same aggregate is still pending (e.g. in backoff
-- after a failure), so OrderPaid never overtakes OrderCreated. This index answers that check.
create index outbox_pending_by_aggregate on outbox (aggregate_id, id) where status = 'PENDING';

-- `orders-relay status` and `reprocess --all-failed`.
create index outbox_failed on outbox (id) where status = 'FAILED';
