-- Orders, tickets, payments, idempotency records, discount codes, and the counters that
-- bound what one purchase transaction may commit. PostgreSQL is the truth of what is sold:
-- "sold once: the unique constraint on tickets (event_id, seat_id) has the last word";
-- general admission is bounded by tier_sales' CHECK, per-account limits by
-- account_event_tickets' CHECK, discount usage by discount_codes' CHECK. A purchase is one
-- statement (ticketing/order_store.py), so any of these refusals aborts all of it.
--
-- Hot-path note: no foreign key points at events from the per-purchase rows: every FK check
-- takes a KEY SHARE lock on the parent row, and thousands of purchases per second sharing one
-- events row would churn multixacts on it (events are never deleted: cancel is a status).
-- Tickets do reference their seat (distinct rows, no contention).

CREATE TABLE discount_codes (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id    bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    code        text NOT NULL CHECK (code ~ '^[A-Z0-9_-]{1,32}$'),          -- stored upper-case
    kind        text NOT NULL CHECK (kind IN ('percent', 'fixed')),
    value       bigint NOT NULL CHECK (value BETWEEN 1 AND 100000000),      -- percent or minor units
    max_uses    integer NOT NULL CHECK (max_uses BETWEEN 1 AND 10000000),
    used        integer NOT NULL DEFAULT 0,
    valid_from  timestamptz,
    valid_until timestamptz,
    created_at  timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT discount_codes_unique UNIQUE (event_id, code),
    CONSTRAINT discount_percent_bounded CHECK (kind <> 'percent' OR value <= 100),
    CONSTRAINT discount_usage_limit CHECK (used BETWEEN 0 AND max_uses),
    CONSTRAINT discount_window CHECK (valid_until IS NULL OR valid_from IS NULL OR valid_until > valid_from)
);

CREATE TABLE orders (
    id               uuid PRIMARY KEY,
    user_id          uuid NOT NULL REFERENCES users (id),
    event_id         bigint NOT NULL,
    hold_id          text NOT NULL CONSTRAINT orders_one_per_hold UNIQUE,
    status           text NOT NULL DEFAULT 'confirmed' CHECK (status IN ('confirmed', 'refunded', 'cancelled')),
    subtotal         bigint NOT NULL CHECK (subtotal >= 0),
    discount         bigint NOT NULL DEFAULT 0 CHECK (discount >= 0),
    total            bigint NOT NULL CHECK (total >= 0),
    currency         char(3) NOT NULL,
    discount_code_id bigint REFERENCES discount_codes (id),
    email            text NOT NULL CHECK (length(email) BETWEEN 3 AND 320),
    created_at       timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT orders_total_adds_up CHECK (total = subtotal - discount)
);

CREATE INDEX orders_by_user ON orders (user_id, created_at);
CREATE INDEX orders_by_event ON orders (event_id, created_at);

CREATE TABLE tickets (
    id            uuid PRIMARY KEY,
    order_id      uuid NOT NULL REFERENCES orders (id),
    event_id      bigint NOT NULL,
    seat_id       text,                        -- NULL: general admission
    tier          text NOT NULL,
    price         bigint NOT NULL CHECK (price >= 0),
    code          text NOT NULL,               -- signed, verifiable offline (ticketing/ticket_codes.py)
    checked_in_at timestamptz,
    -- sold once: this constraint has the last word (NULL seat ids, i.e. GA, never collide).
    CONSTRAINT tickets_sold_once UNIQUE (event_id, seat_id),
    CONSTRAINT tickets_seat_exists FOREIGN KEY (event_id, seat_id) REFERENCES seats (event_id, id)
);

CREATE INDEX tickets_by_order ON tickets (order_id);

-- General admission: one row per tier, created by the first sale; the CHECK bounds sales by
-- the tier's quantity inside the purchase statement (the row lock serialises one tier's sales).
CREATE TABLE tier_sales (
    event_id bigint NOT NULL,
    tier     text NOT NULL,
    capacity integer NOT NULL,
    sold     integer NOT NULL,
    PRIMARY KEY (event_id, tier),
    CONSTRAINT tier_sales_within_capacity CHECK (sold BETWEEN 0 AND capacity)
);

-- Per-account ticket limit per event (scalpers): the CHECK bounds the running total.
CREATE TABLE account_event_tickets (
    user_id     uuid NOT NULL REFERENCES users (id),
    event_id    bigint NOT NULL,
    tickets     integer NOT NULL,
    max_tickets integer NOT NULL,
    PRIMARY KEY (user_id, event_id),
    CONSTRAINT account_ticket_limit CHECK (tickets BETWEEN 0 AND max_tickets)
);

-- Gateway charges. order_id is NULL for a charge whose order failed to commit (refunded).
CREATE TABLE payments (
    id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    order_id    uuid REFERENCES orders (id),
    user_id     uuid NOT NULL,
    gateway     text NOT NULL,
    charge_id   text NOT NULL CONSTRAINT payments_charge_once UNIQUE,
    amount      bigint NOT NULL CHECK (amount >= 0),
    currency    char(3) NOT NULL,
    status      text NOT NULL CHECK (status IN ('captured', 'refunded', 'refund_failed')),
    reason      text,
    refund_id   text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    refunded_at timestamptz
);

CREATE INDEX payments_by_order ON payments (order_id);

-- Idempotency-Key records: the same key (per user) replays the stored response.
CREATE TABLE idempotency_keys (
    user_id     uuid NOT NULL,
    key         text NOT NULL CHECK (length(key) BETWEEN 1 AND 200),
    fingerprint text NOT NULL,
    status      smallint NOT NULL,
    response    bytea NOT NULL,
    order_id    uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, key)
);

CREATE INDEX idempotency_keys_age ON idempotency_keys (created_at);
