-- Seeds the pgbench reference database (`loadtest_pgbench` on a shard's own Postgres server,
-- with the schema of migrations/shard/ applied): one event with 1000 ticket types of a million
-- tickets each, ids 00000000-0000-4000-8000-<n, 12 digits>. Re-running it empties the order
-- tables and restores the stock, so every reference run starts from the same state.
-- `loadtest` runs it before each pgbench run; by hand: psql -d <bench db> -f setup.sql.

truncate orders, outbox, idempotency_keys;

-- The shard owns the bench partition, so order.sql's fence answers as it does for the service.
insert into partition_owner (region, partition, state, epoch) values ('BENCH', 0, 'OWNED', 1)
on conflict (region, partition) do nothing;

insert into events (id, region, partition, organizer_id, title, venue, starts_at, ends_at)
values ('00000000-0000-4000-8000-000000000000', 'BENCH', 0, '00000000-0000-4000-8000-0000000000ff',
        'pgbench reference', 'pgbench', now() + interval '30 days', now() + interval '30 days 3 hours')
on conflict (id) do nothing;

insert into ticket_types (id, event_id, partition, name, price_in_cents, total_quantity, remaining_quantity)
select ('00000000-0000-4000-8000-' || lpad(n::text, 12, '0'))::uuid, '00000000-0000-4000-8000-000000000000',
       0, 'Tier ' || n, 5000, 1000000, 1000000
from generate_series(1, 1000) as n
on conflict (id) do update set remaining_quantity = excluded.total_quantity;
