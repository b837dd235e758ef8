-- Organizer dashboard counters (ticketing/dashboard_counters.py, bus group "dashboard").
--
-- sales_counters: per event, per bucket, what happened in that bucket: orders confirmed,
-- their tickets and revenue (minor units), refunds (orders, tickets, amount; counted when the
-- refund happens), failed payments, expired holds and check-ins. One row per grain: 'minute',
-- 'hour' and 'day' buckets (UTC), and one 'total' row (bucket = epoch) per event, so the sales
-- endpoint reads one row plus at most `buckets` rows and never scans orders or tickets.
-- Each bus delivery is counted once: bus_applied ('dashboard', event id) is inserted by the
-- same statement as the counter upsert.
-- sales_counters_backfill: one row once the existing outbox has been counted (the backfill runs
-- once per database, at the first start of a worker with this group; until then the sales
-- endpoint reports the counters as not ready).
CREATE TABLE sales_counters (
    event_id         bigint NOT NULL,
    grain            text NOT NULL CHECK (grain IN ('minute', 'hour', 'day', 'total')),
    bucket           timestamptz NOT NULL,
    orders           integer NOT NULL DEFAULT 0,
    tickets          integer NOT NULL DEFAULT 0,
    revenue          bigint NOT NULL DEFAULT 0,
    refunds          integer NOT NULL DEFAULT 0,
    refunded_tickets integer NOT NULL DEFAULT 0,
    refunded_amount  bigint NOT NULL DEFAULT 0,
    payment_failures integer NOT NULL DEFAULT 0,
    holds_expired    integer NOT NULL DEFAULT 0,
    checkins         integer NOT NULL DEFAULT 0,
    last_event_at    timestamptz NOT NULL,  -- the newest counted event's commit time
    PRIMARY KEY (event_id, grain, bucket)
);

CREATE TABLE sales_counters_backfill (
    singleton    boolean PRIMARY KEY DEFAULT true CHECK (singleton),
    counted      bigint NOT NULL,
    completed_at timestamptz NOT NULL DEFAULT now()
);
