-- The automatic admission rate (docs/admission.md "Automatic rate"; admission/rate_control.py).
--
-- rate_mode 'fixed' admits at rate_per_s; 'auto' starts at rate_per_s and lets the admission controller move
-- the rate between rate_min_per_s and rate_max_per_s to keep the shop's p99 latency under target_p99_ms and
-- its error rate under target_error_rate. The controller's current rate lives only in Redis (the room's
-- config hash): rate_per_s here stays what the organizer set, and a rebuild of Redis starts from it again.
-- That an auto room has both bounds with rate_per_s between them is checked by rooms/store.py (validate), not
-- here: the columns are written by two statements of one transaction, and a CHECK cannot be deferred.

ALTER TABLE rooms
    ADD COLUMN rate_mode         text NOT NULL DEFAULT 'fixed' CHECK (rate_mode IN ('fixed', 'auto')),
    ADD COLUMN rate_min_per_s    double precision CHECK (rate_min_per_s > 0 AND rate_min_per_s <= 100000),
    ADD COLUMN rate_max_per_s    double precision CHECK (rate_max_per_s > 0 AND rate_max_per_s <= 100000),
    ADD COLUMN target_p99_ms     integer NOT NULL DEFAULT 1000 CHECK (target_p99_ms BETWEEN 10 AND 60000),
    ADD COLUMN target_error_rate double precision NOT NULL DEFAULT 0.01
        CHECK (target_error_rate > 0 AND target_error_rate <= 0.5),
    ADD CONSTRAINT rooms_rate_bounds CHECK (rate_min_per_s IS NULL OR rate_max_per_s IS NULL
                                            OR rate_min_per_s <= rate_max_per_s);
