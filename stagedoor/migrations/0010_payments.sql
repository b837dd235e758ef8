-- Payments recorded before the charge (docs/decisions/0010-payments-recorded-before-the-charge.md).
--
-- A paid purchase writes its payments row in state 'pending' BEFORE it asks the gateway to charge,
-- with a deterministic gateway idempotency key: <purchase_key>:<seq>, where purchase_key is derived
-- from (user, Idempotency-Key, hold). A retry with the same Idempotency-Key finds the row and sends the
-- same key, so the gateway answers with the same charge: never two charges. seq moves on only when the
-- previous charge under this purchase is settled as money back or never taken (failed, refunded,
-- refunding, refund_failed), so a fan may pay again after a decline or a refund.
--
-- States (status):
--   pending        written before the charge; the outcome is not known yet
--   succeeded      the order committed with this charge (the purchase statement sets it)
--   failed         no charge was taken (declined, or the gateway knows no charge for the key)
--   unknown        the charge or the commit ended without an answer; the reconciler settles it
--   refunding      a refund is owed and claimed; the gateway has not confirmed it yet
--   refunded       the gateway confirmed the refund
--   refund_failed  the refund failed; retried with backoff (attempts, next_attempt_at)
-- 'captured' rows of older versions are succeeded charges.

ALTER TABLE payments DROP CONSTRAINT payments_status_check;

UPDATE payments SET status = 'succeeded' WHERE status = 'captured';

ALTER TABLE payments
    ADD CONSTRAINT payments_status_check CHECK (status IN (
        'pending', 'succeeded', 'failed', 'unknown', 'refunding', 'refunded', 'refund_failed')),
    ALTER COLUMN charge_id DROP NOT NULL,               -- pending and failed rows have no charge
    ADD COLUMN purchase_key     text,                    -- sha256(user, Idempotency-Key, hold), hex
    ADD COLUMN seq              integer NOT NULL DEFAULT 0,
    ADD COLUMN gateway_key      text CONSTRAINT payments_gateway_key_once UNIQUE,  -- purchase_key:seq
    ADD COLUMN hold_id          text,
    ADD COLUMN event_id         bigint,
    ADD COLUMN idempotency_key  text,
    ADD COLUMN fingerprint      text,
    ADD COLUMN email            text,
    ADD COLUMN subtotal         bigint,
    ADD COLUMN discount         bigint,
    ADD COLUMN discount_code_id bigint,
    ADD COLUMN attempts         integer NOT NULL DEFAULT 0,  -- refund attempts that failed
    ADD COLUMN next_attempt_at  timestamptz,
    ADD COLUMN last_error       text,
    ADD COLUMN updated_at       timestamptz NOT NULL DEFAULT now();

-- Refunds that failed before this migration get a key and are retried by the worker like any other.
UPDATE payments SET gateway_key = 'legacy:' || charge_id, next_attempt_at = now()
WHERE status = 'refund_failed' AND gateway_key IS NULL;

CREATE INDEX payments_by_purchase ON payments (purchase_key, seq) WHERE purchase_key IS NOT NULL;

-- What the worker's reconciler and refund retries look at: a small set, whatever the table's size.
CREATE INDEX payments_unsettled ON payments (updated_at)
    WHERE status IN ('pending', 'unknown', 'refunding', 'refund_failed');

-- A purchase and an event's cancellation are serialised per event: the purchase statement calls
-- event_sales_open() (a shared transaction-level advisory lock, then the event's status read with a
-- fresh snapshot: a VOLATILE function's queries see what committed before the lock was granted);
-- the cancellation calls close_event_sales() (the exclusive lock) in its transaction. So either the
-- purchase commits first and the cancellation's refund run (which starts after the cancellation
-- commits) lists its order, or the purchase sees 'cancelled' and is refused. A shared advisory lock
-- writes nothing to the events row, unlike SELECT ... FOR SHARE (migration 0004's hot-path note).
CREATE FUNCTION event_sales_open(p_event_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
DECLARE
    current_status text;
BEGIN
    PERFORM pg_advisory_xact_lock_shared(1560320010, hashtext(p_event_id::text));
    SELECT status INTO current_status FROM events WHERE id = p_event_id;
    IF current_status IS NULL OR current_status NOT IN ('on_sale', 'sold_out') THEN
        RAISE EXCEPTION 'event % is %', p_event_id, coalesce(current_status, 'missing')
            USING ERRCODE = 'check_violation', CONSTRAINT = 'event_on_sale';
    END IF;
    RETURN true;
END
$$;

CREATE FUNCTION close_event_sales(p_event_id bigint) RETURNS boolean
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    PERFORM pg_advisory_xact_lock(1560320010, hashtext(p_event_id::text));
    RETURN true;
END
$$;

-- Refuses the purchase statement it is called from (CASE keeps it from running otherwise): the
-- charge's payments row was settled meanwhile (refund claimed by the reconciler, or already succeeded).
CREATE FUNCTION payment_settled_refusal(p_gateway_key text) RETURNS integer
LANGUAGE plpgsql VOLATILE AS $$
BEGIN
    RAISE EXCEPTION 'payment % is no longer pending', p_gateway_key
        USING ERRCODE = 'check_violation', CONSTRAINT = 'payment_pending';
END
$$;
