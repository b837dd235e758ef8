-- Notifications sent-log (ticketing/notifications/sent_log.py): one row per (bus event id,
-- recipient, kind) - the exactly-once effect of email and SMS delivery over an at-least-once bus.
--
-- Status machine: a sender first claims the row ('sending', attempts + 1), sends, then marks it
-- 'sent' (or 'failed' with the error). A redelivery finds 'sent' and skips. A 'failed' row is
-- claimed again (up to a bounded number of attempts); a 'sending' row whose claim is older than
-- STAGEDOOR_NOTIFICATION_CLAIM_STALE_S (its sender died) is claimed again too. The only window
-- in which a recipient can get a message twice: the sender crashed after the SMTP server (or
-- SMS provider) accepted it and before the 'sent' mark committed.
--
-- event_id is the bus envelope's id for event-driven mail, and a deterministic uuid for the
-- scheduled kinds (reminder: per event and start time; your_turn: per room and visitor).
CREATE TABLE notifications (
    event_id   uuid NOT NULL,
    recipient  text NOT NULL CHECK (length(recipient) BETWEEN 3 AND 320),
    kind       text NOT NULL CHECK (kind ~ '^[a-z_]{1,40}$'),
    channel    text NOT NULL CHECK (channel IN ('email', 'sms')),
    status     text NOT NULL CHECK (status IN ('sending', 'sent', 'failed')),
    attempts   integer NOT NULL DEFAULT 1 CHECK (attempts >= 0),
    claimed_at timestamptz NOT NULL DEFAULT now(),
    sent_at    timestamptz,
    error      text CHECK (length(error) <= 500),
    created_at timestamptz NOT NULL DEFAULT now(),
    CONSTRAINT notifications_once PRIMARY KEY (event_id, recipient, kind),
    CONSTRAINT notifications_sent_has_time CHECK (status <> 'sent' OR sent_at IS NOT NULL)
);

CREATE INDEX notifications_unfinished ON notifications (claimed_at) WHERE status <> 'sent';

-- Fan-outs (an event's update, cancellation, reminder to every ticket holder) are jobs: the bus
-- handler (or the reminder scheduler) records one, idempotently, and the worker's job loop
-- works it in passes until every holder is sent or given up (completed_at set). The bus
-- consumer stays fast and a fan-out of any size survives restarts.
CREATE TABLE notification_jobs (
    job_id       uuid PRIMARY KEY,       -- the bus envelope id, or uuid5 of (reminder, event, start)
    kind         text NOT NULL CHECK (kind ~ '^[a-z_]{1,40}$'),
    subject      bigint NOT NULL,        -- the catalog event id
    details      jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    completed_at timestamptz,
    recipients   integer
);

CREATE INDEX notification_jobs_open ON notification_jobs (created_at) WHERE completed_at IS NULL;

-- (The reminder scheduler's scan of events starting soon uses 0003's events_listing index.)
