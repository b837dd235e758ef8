-- The gateway's webhooks (docs/payment-webhooks.md; ticketing/payments/webhooks.py).
--
-- A verified webhook is stored as one outbox row (PaymentWebhookReceived, event_id = uuid5 of the
-- gateway's event id: a redelivery inserts nothing) and applied by the worker's payment_webhooks
-- consumer group. What that group writes besides the existing tables:
--
--   payment_flags      a charge that needs a person: a dispute opened at the gateway, or a charge whose
--                      amount or currency differ from what the purchase recorded (never confirmed: an
--                      unsettled one is refunded). One row per gateway event and kind; the same statement
--                      writes a PaymentFlagged outbox row, which the notifications consumer turns into an
--                      e-mail to the event's organizer.
--   charge_attempts.charged_at
--                      when the gateway said the attempt's charge succeeded (payment_intent.succeeded): from
--                      then on a payment_failed event of the same intent, delivered late, changes nothing.
--   payments.amount_refunded
--                      money returned outside stagedoor (a partial refund in the gateway's dashboard) of a
--                      confirmed order; a full refund moves the order and its payment to 'refunded'.

CREATE TABLE payment_flags (
    id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    kind          text        NOT NULL CHECK (kind IN ('dispute', 'amount_mismatch')),
    source_event  text        NOT NULL,  -- the gateway's event id (evt_...)
    gateway       text        NOT NULL,
    gateway_key   text,                  -- <purchase_key>:<seq> of the charge, when known
    charge_id     text,                  -- the gateway's charge (payment intent) id
    order_id      uuid,                  -- NULL: the charge has no order (and never will: refunded)
    event_id      bigint      NOT NULL,  -- the catalog event: whose organizer is told
    details       jsonb       NOT NULL DEFAULT '{}'::jsonb,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT payment_flags_once UNIQUE (source_event, kind)
);

CREATE INDEX payment_flags_by_order ON payment_flags (order_id) WHERE order_id IS NOT NULL;
CREATE INDEX payment_flags_by_event ON payment_flags (event_id, created_at);

ALTER TABLE payments ADD COLUMN amount_refunded bigint NOT NULL DEFAULT 0 CHECK (amount_refunded >= 0);

ALTER TABLE charge_attempts ADD COLUMN charged_at timestamptz;
