-- The order lifecycle: a PENDING order is paid, cancelled by its customer, or cancelled when
-- its reservation expires; a cancelled order's tickets are back in stock.
--
-- `version` counts the order's changes (1 at creation, one more per change) and is written
-- into every event about the order, so consumers can apply an order's events in order and
-- idempotently whatever the topic delivers.
alter table orders add column version integer not null default 1 check (version >= 1);
-- Before this migration an order changed at most once (PENDING → PAID): its version is 2.
update orders set version = 2 where status <> 'PENDING';
alter table orders add column cancelled_at timestamptz;
alter table orders add column cancel_reason text check (cancel_reason in ('CUSTOMER', 'EXPIRED'));
alter table orders add constraint cancelled_has_reason
    check ((status = 'CANCELLED') = (cancel_reason is not null and cancelled_at is not null));
alter table orders add constraint paid_has_time check ((status = 'PAID') = (paid_at is not null));

-- The expiry sweeper's scan: pending orders by age, per partition (so each batch is one
-- partition's, fenced on its own).
create index orders_pending_by_age on orders (created_at, partition) where status = 'PENDING';
