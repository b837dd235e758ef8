-- Foundation: the transactional outbox every service writes to in the same transaction
-- as the state change it announces. The relay (event-bus issue) publishes rows in id
-- order to a Redis Stream and stamps published_at; consumers dedupe by event_id.
CREATE TABLE outbox (
    id            bigserial PRIMARY KEY,
    event_id      uuid NOT NULL UNIQUE DEFAULT gen_random_uuid(),
    event_type    text NOT NULL,
    event_version integer NOT NULL DEFAULT 1,
    aggregate_id  text NOT NULL,
    payload       jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    published_at  timestamptz
);

CREATE INDEX outbox_unpublished ON outbox (id) WHERE published_at IS NULL;
