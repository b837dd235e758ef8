-- The gateway sweep (docs/payments.md "Reconciliation with the gateway"; ticketing/payments/sweep.py).
--
-- The worker lists the gateway's payments created in a window of time and compares each with our records
-- (charge_attempts, payments). Where it stands is kept here, one row per gateway, so a restart goes on
-- where the last run stopped instead of listing everything again:
--
--   swept_until   unix seconds, the gateway's clock: every payment created before it was compared
--   window_from   the window being listed (NULL: none); the next window starts at swept_until minus an
--   window_to     overlap, and ends a settling time before now
--   position      where the window's listing goes on (the gateway's page cursor; NULL: at its start)
--   lease_token   the sweeper working on it, until leased_until: one sweeper at a time over several workers
--
-- payment_flags gains the kind 'refund_missing': a refund stagedoor recorded as made that the gateway does
-- not show (the money did not go back).

CREATE TABLE gateway_sweeps (
    gateway      text        PRIMARY KEY,
    swept_until  bigint      NOT NULL,
    window_from  bigint,
    window_to    bigint,
    position     text,
    lease_token  uuid,
    leased_until timestamptz,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT gateway_sweep_window CHECK ((window_from IS NULL) = (window_to IS NULL) AND window_from <= window_to)
);

ALTER TABLE payment_flags DROP CONSTRAINT payment_flags_kind_check;
ALTER TABLE payment_flags ADD CONSTRAINT payment_flags_kind_check
    CHECK (kind IN ('dispute', 'amount_mismatch', 'refund_missing'));
