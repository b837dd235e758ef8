-- Charge attempts apart from payments (docs/decisions/0011-charge-attempts-apart-from-payments.md).
--
-- A paid purchase still records its charge before it asks the gateway (decision 0010), but in a narrow
-- table of its own with one index, instead of a pending payments row that the purchase statement then
-- updated (a second, non-HOT row version with six index entries, on every purchase):
--
--   charge_attempts  one row per charge attempt of a purchase, keyed (purchase_key, seq); its gateway
--                    idempotency key is purchase_key:seq. state: pending (written before the charge),
--                    unknown (the charge or the commit ended without an answer), failed (no charge was
--                    taken: declined, or the gateway knows none).
--   payments         the charges that were settled: 'succeeded' (inserted by the purchase statement with
--                    the order; the same statement deletes the attempt), or a refund owed or made
--                    ('refunding' -> 'refunded' / 'refund_failed'; the attempt stays, so the purchase's
--                    next attempt takes the next seq).
--
-- The unique gateway_key of payments is the arbiter between the order's commit and a refund: both
-- insert the key's payments row, so exactly one of them wins and a charge whose order committed is
-- never refunded. A purchase's standing = its latest attempt, overridden by the payments row of the
-- same key when there is one (the view purchase_payments below).

CREATE TABLE charge_attempts (
    purchase_key     text        NOT NULL,  -- sha256(user, Idempotency-Key, hold), hex
    seq              integer     NOT NULL,
    gateway_key      text        NOT NULL GENERATED ALWAYS AS (purchase_key || ':' || seq) STORED,
    state            text        NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'unknown', 'failed')),
    user_id          uuid        NOT NULL,
    gateway          text        NOT NULL,
    hold_id          text        NOT NULL,
    event_id         bigint      NOT NULL,
    idempotency_key  text        NOT NULL,
    fingerprint      text        NOT NULL,
    email            text        NOT NULL,
    subtotal         bigint      NOT NULL,
    discount         bigint      NOT NULL,
    discount_code_id bigint,
    amount           bigint      NOT NULL CHECK (amount > 0),
    currency         char(3)     NOT NULL,
    charge_id        text,                  -- the gateway's charge (or payment intent) once it is known
    reason           text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (purchase_key, seq)
);

-- Attempts of migration 0010's pending/unknown/failed payments rows move over; their payments rows go.
INSERT INTO charge_attempts (purchase_key, seq, state, user_id, gateway, hold_id, event_id, idempotency_key,
                             fingerprint, email, subtotal, discount, discount_code_id, amount, currency,
                             charge_id, reason, created_at, updated_at)
SELECT purchase_key, seq, status, user_id, gateway, hold_id, event_id, idempotency_key, fingerprint, email,
       subtotal, discount, discount_code_id, amount, currency, charge_id, reason, created_at, updated_at
FROM payments
WHERE status IN ('pending', 'unknown', 'failed') AND purchase_key IS NOT NULL;

-- A settled attempt of 0010 (succeeded, or a refund owed or made) keeps its payments row; the purchase's
-- seq history needs the attempt of a refund (the next attempt takes seq + 1).
INSERT INTO charge_attempts (purchase_key, seq, state, user_id, gateway, hold_id, event_id, idempotency_key,
                             fingerprint, email, subtotal, discount, discount_code_id, amount, currency,
                             charge_id, reason, created_at, updated_at)
SELECT purchase_key, seq, 'pending', user_id, gateway, hold_id, event_id, idempotency_key, fingerprint, email,
       subtotal, discount, discount_code_id, amount, currency, charge_id, reason, created_at, updated_at
FROM payments
WHERE status IN ('refunding', 'refunded', 'refund_failed') AND purchase_key IS NOT NULL AND amount > 0;

DELETE FROM payments WHERE status IN ('pending', 'unknown', 'failed');

ALTER TABLE payments DROP CONSTRAINT payments_status_check;
ALTER TABLE payments ADD CONSTRAINT payments_status_check
    CHECK (status IN ('succeeded', 'refunding', 'refunded', 'refund_failed'));

-- The purchase's fields now live on the attempt; payments keeps the columns for the rows of 0010.
DROP INDEX payments_by_purchase;

DROP INDEX payments_unsettled;
CREATE INDEX payments_refunds_owed ON payments (next_attempt_at) WHERE status IN ('refunding', 'refund_failed');

-- Each purchase charge as it stands: the attempt, overridden by its settled payments row. For support,
-- reports and tests; the code reads the two tables itself.
CREATE VIEW purchase_payments AS
SELECT a.gateway_key, a.purchase_key, a.seq, coalesce(p.status, a.state) AS status,
       coalesce(p.charge_id, a.charge_id) AS charge_id, p.order_id, coalesce(p.reason, a.reason) AS reason,
       coalesce(p.attempts, 0) AS attempts, p.next_attempt_at, a.user_id, a.event_id, a.hold_id, a.amount,
       a.currency, a.created_at, greatest(a.updated_at, p.updated_at) AS updated_at
FROM charge_attempts a LEFT JOIN payments p ON p.gateway_key = a.gateway_key
UNION ALL
SELECT p.gateway_key, split_part(p.gateway_key, ':', 1), coalesce(p.seq, 0), p.status, p.charge_id, p.order_id,
       p.reason, p.attempts, p.next_attempt_at, p.user_id, p.event_id, p.hold_id, p.amount, p.currency,
       p.created_at, p.updated_at
FROM payments p
WHERE p.gateway_key IS NOT NULL
  AND NOT EXISTS (SELECT 1 FROM charge_attempts a WHERE a.gateway_key = p.gateway_key);
