-- Catalog: venues, events, price tiers and seat maps. PostgreSQL is the truth of the
-- catalog (and, with the orders tables of 0004, of what is sold); Redis holds a cache of
-- the holdable inventory, loaded when an event goes on sale (ticketing/inventory.py).
CREATE TABLE venues (
    id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name    text NOT NULL CHECK (length(name) BETWEEN 1 AND 200),
    city    text NOT NULL CHECK (length(city) BETWEEN 1 AND 100),
    address text NOT NULL DEFAULT '' CHECK (length(address) <= 300),
    CONSTRAINT venues_identity UNIQUE (name, city, address)
);

CREATE TABLE events (
    id                    bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    organizer_id          uuid NOT NULL REFERENCES users (id),
    venue_id              bigint NOT NULL REFERENCES venues (id),
    status                text NOT NULL DEFAULT 'draft'
                          CHECK (status IN ('draft', 'on_sale', 'sold_out', 'cancelled')),
    title                 text NOT NULL CHECK (length(title) BETWEEN 1 AND 200),
    description           text NOT NULL DEFAULT '' CHECK (length(description) <= 10000),
    category              text NOT NULL CHECK (length(category) BETWEEN 1 AND 50),
    city                  text NOT NULL,                      -- the venue's, copied for search
    starts_at             timestamptz NOT NULL,
    ends_at               timestamptz NOT NULL,
    currency              char(3) NOT NULL CHECK (currency ~ '^[A-Z]{3}$'),
    max_tickets_per_order integer NOT NULL CHECK (max_tickets_per_order BETWEEN 1 AND 50),
    hold_ttl_s            integer CHECK (hold_ttl_s BETWEEN 5 AND 3600),  -- NULL: the global setting
    seated                boolean NOT NULL,
    min_price             bigint NOT NULL DEFAULT 0,          -- over tiers, for price search
    max_price             bigint NOT NULL DEFAULT 0,
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    cancelled_at          timestamptz,
    search                tsvector GENERATED ALWAYS AS
                          (to_tsvector('simple', title || ' ' || category || ' ' || description)) STORED,
    CONSTRAINT events_ends_after_start CHECK (ends_at >= starts_at)
);

CREATE INDEX events_listing ON events (starts_at, id) WHERE status IN ('on_sale', 'sold_out');
CREATE INDEX events_by_organizer ON events (organizer_id, id);
CREATE INDEX events_search ON events USING gin (search);
CREATE INDEX events_city ON events (lower(city), starts_at);

CREATE TABLE price_tiers (
    event_id bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    code     text NOT NULL CHECK (code ~ '^[A-Za-z0-9_-]{1,32}$'),
    name     text NOT NULL CHECK (length(name) BETWEEN 1 AND 100),
    price    bigint NOT NULL CHECK (price BETWEEN 0 AND 100000000),
    quantity integer CHECK (quantity BETWEEN 1 AND 1000000),  -- general admission; NULL: seated tier
    position smallint NOT NULL,
    PRIMARY KEY (event_id, code)
);

-- Seat ids are server-assigned, stable strings ("s1", "s2", ... per event, in seat-map order).
CREATE TABLE seats (
    event_id  bigint NOT NULL,
    id        text NOT NULL,
    section   text NOT NULL,
    row_label text NOT NULL,
    number    text NOT NULL,
    tier_code text NOT NULL,
    position  integer NOT NULL,
    PRIMARY KEY (event_id, id),
    FOREIGN KEY (event_id, tier_code) REFERENCES price_tiers (event_id, code) ON DELETE CASCADE
);
