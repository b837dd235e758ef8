-- Event bus read models (stagedoor/bus.py consumers in ticketing/read_model.py).
--
-- event_tier_availability: per event and tier, capacity and tickets sold, maintained from
-- EventCreated/EventUpdated (capacity) and OrderConfirmed/OrderRefunded (sold) deliveries.
-- events.tickets_left / available_min_price / available_max_price are its per-event summary,
-- written in the same transaction, so the event search filters on availability without
-- touching the hot Redis inventory keys (NULL: not built yet; the search then trusts status).
-- bus_applied makes each delivery's effect exactly-once per consumer group (rows older than
-- the retention are purged by the consumer).
CREATE TABLE event_tier_availability (
    event_id bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    tier     text NOT NULL,
    price    bigint NOT NULL,
    capacity integer NOT NULL,
    sold     integer NOT NULL DEFAULT 0,
    PRIMARY KEY (event_id, tier)
);

ALTER TABLE events ADD COLUMN tickets_left integer;
ALTER TABLE events ADD COLUMN available_min_price bigint;
ALTER TABLE events ADD COLUMN available_max_price bigint;

CREATE TABLE bus_applied (
    consumer_group text NOT NULL,
    event_id       uuid NOT NULL,
    applied_at     timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (consumer_group, event_id)
);
CREATE INDEX bus_applied_age ON bus_applied (applied_at);

-- Backfill from the truth as of this migration; deliveries of orders already in the outbox
-- are marked applied so they are not counted twice.
INSERT INTO event_tier_availability (event_id, tier, price, capacity, sold)
SELECT t.event_id, t.code, t.price,
       coalesce(t.quantity, (SELECT count(*) FROM seats s WHERE s.event_id = t.event_id AND s.tier_code = t.code)),
       (SELECT count(*) FROM tickets k JOIN orders o ON o.id = k.order_id
        WHERE k.event_id = t.event_id AND k.tier = t.code AND o.status = 'confirmed')
FROM price_tiers t;

UPDATE events e SET tickets_left = a.left_, available_min_price = a.min_p, available_max_price = a.max_p
FROM (SELECT event_id, sum(greatest(capacity - sold, 0)) AS left_,
             min(price) FILTER (WHERE sold < capacity) AS min_p, max(price) FILTER (WHERE sold < capacity) AS max_p
      FROM event_tier_availability GROUP BY event_id) a
WHERE a.event_id = e.id;

INSERT INTO bus_applied (consumer_group, event_id)
SELECT 'read_model', event_id FROM outbox WHERE event_type IN ('OrderConfirmed', 'OrderRefunded');
