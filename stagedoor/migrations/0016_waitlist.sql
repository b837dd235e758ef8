-- The waiting list after sold out (docs/waitlist.md; ticketing/waitlist/store.py).
--
-- waitlist_entries: one row per (event, account). FIFO by seq (taken from a sequence when the fan
-- joins, again when they join anew after their turn ended), quantity = the tickets wanted.
--   waiting  on the list, not yet offered anything
--   offered  an offer is open (pending or accepted)
--   done     their turn ended: the offer was bought or expired (joining again puts them last)
--   left     they left the list, or the event was cancelled
-- waitlist_offers: tickets held for an entry (hold_id: the Redis hold the offer is, placed by
-- lua/hold_for_offer.lua), claimable until expires_at.
--   pending  offered, not accepted yet
--   accepted the fan took the hold (buy it through the ordinary purchase)
--   bought   an order was confirmed for the hold
--   expired  the hold ended without a purchase (claim window over, hold released)
--   void     the fan left or the event was cancelled
-- One open (pending or accepted) offer per entry, by a partial unique index. The worker offers
-- one event at a time under an advisory lock (ticketing/waitlist/offering.py).
CREATE SEQUENCE waitlist_seq;

CREATE TABLE waitlist_entries (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    event_id   bigint NOT NULL REFERENCES events (id) ON DELETE CASCADE,
    user_id    uuid NOT NULL REFERENCES users (id),
    seq        bigint NOT NULL DEFAULT nextval('waitlist_seq'),
    quantity   integer NOT NULL CHECK (quantity BETWEEN 1 AND 50),
    status     text NOT NULL DEFAULT 'waiting' CHECK (status IN ('waiting', 'offered', 'done', 'left')),
    joined_at  timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT waitlist_one_entry_per_account UNIQUE (event_id, user_id)
);

CREATE INDEX waitlist_queue ON waitlist_entries (event_id, seq) WHERE status = 'waiting';
CREATE INDEX waitlist_active_events ON waitlist_entries (event_id) WHERE status IN ('waiting', 'offered');

CREATE TABLE waitlist_offers (
    id          uuid PRIMARY KEY,
    event_id    bigint NOT NULL,
    entry_id    bigint NOT NULL REFERENCES waitlist_entries (id) ON DELETE CASCADE,
    user_id     uuid NOT NULL,
    hold_id     text NOT NULL CONSTRAINT waitlist_offer_per_hold UNIQUE,
    quantity    integer NOT NULL CHECK (quantity BETWEEN 1 AND 50),
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'accepted', 'bought', 'expired', 'void')),
    offered_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    accepted_at timestamptz,
    finished_at timestamptz
);

CREATE UNIQUE INDEX waitlist_one_open_offer_per_entry ON waitlist_offers (entry_id)
    WHERE status IN ('pending', 'accepted');
CREATE INDEX waitlist_offers_of_user ON waitlist_offers (user_id, offered_at) WHERE status IN ('pending', 'accepted');
CREATE INDEX waitlist_offers_of_event ON waitlist_offers (event_id, status);
