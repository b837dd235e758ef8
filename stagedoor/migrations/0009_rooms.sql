-- Waiting rooms, durable (rooms/record_store.py): PostgreSQL is the record, Redis a copy rebuilt
-- from it (at start, when Redis's run_id changes or its restore marker is missing, and on a miss).
--
-- rooms: every configuration field, times in epoch ms as the Redis hash keeps them (closes_at_ms
-- 0 = never); sold_out as the admin set it (a sold-out event, events.status, also counts on a
-- rebuild). version grows with every write; Redis keeps the version it holds, so a late copy of
-- an older write never replaces a newer one.
-- room_events: the event -> room link. event_id is the primary key (an event is gated by at most
-- one room) and room_id is unique (a room gates at most one event). event_id is text, as the
-- admin API names events (digits), and not a foreign key: a room may gate an event created later.
-- room_evictions: evicted visitors; their queue tokens stay refused after a Redis loss.
-- room_redis_pending: a room whose Redis copy may be behind PostgreSQL (written in the same
-- transaction as the change, deleted once Redis has it); old_event_id is an event the room gated
-- before the change, whose Redis link must go if it still names the room. The rebuild loop
-- applies rows older than a moment, so a Redis failure after the commit is repaired.
CREATE TABLE rooms (
    room_id         text PRIMARY KEY CHECK (room_id ~ '^[a-z0-9][a-z0-9-]{0,62}$'),
    mode            text NOT NULL CHECK (mode IN ('fifo', 'lottery', 'passthrough', 'closed')),
    opens_at_ms     bigint NOT NULL,
    starts_at_ms    bigint NOT NULL CHECK (starts_at_ms >= opens_at_ms),
    closes_at_ms    bigint NOT NULL DEFAULT 0 CHECK (closes_at_ms = 0 OR closes_at_ms > starts_at_ms),
    rate_per_s      double precision NOT NULL CHECK (rate_per_s > 0 AND rate_per_s <= 100000),
    max_active      integer NOT NULL CHECK (max_active BETWEEN 1 AND 10000000),
    session_ttl_s   integer NOT NULL CHECK (session_ttl_s BETWEEN 10 AND 7200),
    abandon_after_s integer NOT NULL CHECK (abandon_after_s BETWEEN 0 AND 600),
    pow_difficulty  integer NOT NULL CHECK (pow_difficulty BETWEEN 0 AND 32),
    shop_url        text CHECK (length(shop_url) <= 2048),
    paused          boolean NOT NULL DEFAULT false,
    title           text CHECK (length(title) BETWEEN 1 AND 200),
    sold_out        boolean NOT NULL DEFAULT false,
    version         bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE room_events (
    event_id text PRIMARY KEY CHECK (event_id ~ '^[0-9]{1,19}$'),
    room_id  text NOT NULL UNIQUE REFERENCES rooms (room_id) ON DELETE CASCADE
);

CREATE TABLE room_evictions (
    room_id    text NOT NULL REFERENCES rooms (room_id) ON DELETE CASCADE,
    visitor_id text NOT NULL CHECK (length(visitor_id) <= 64),
    evicted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (room_id, visitor_id)
);

CREATE TABLE room_redis_pending (
    id           bigserial PRIMARY KEY,
    room_id      text NOT NULL,
    old_event_id text,
    created_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX room_redis_pending_room ON room_redis_pending (room_id);
