"""Every Redis key shape, in one place: the contract shared by all three services.

Keys are ``<prefix>:{room:<room>}:<what>`` and ``<prefix>:{ev:<event_id>}:<what>``. The
hash tag in braces keeps every key one Lua script touches in one Redis Cluster slot.
The prefix is a setting, so each test uses its own and tests share one server.
"""

from __future__ import annotations


class RedisKeys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix

    # -- process-wide (not hash-tagged: never used together with room/event keys in a script)
    def probe(self) -> str:
        return f"{self.prefix}:probe"

    def rooms_index(self) -> str:
        """set of all room ids (admin listing)."""
        return f"{self.prefix}:rooms"

    def rooms_restored(self) -> str:
        """string: present once the rooms were rebuilt from PostgreSQL into this Redis
        (admission/room_rebuild.py); gone after FLUSHALL or a restart without persistence,
        which starts a rebuild (FLUSHALL keeps Redis's run_id, so the run_id alone misses it)."""
        return f"{self.prefix}:rooms_restored"

    # -- per room: everything a room's scripts touch shares the {room:<id>} tag
    def room_tag(self, room: str) -> str:
        return f"{self.prefix}:{{room:{room}}}"

    def room(self, room: str, what: str) -> str:
        return f"{self.room_tag(room)}:{what}"

    # -- per event: everything an event's scripts touch shares the {ev:<id>} tag
    def event_tag(self, event_id: str) -> str:
        return f"{self.prefix}:{{ev:{event_id}}}"

    def event(self, event_id: str, what: str) -> str:
        return f"{self.event_tag(event_id)}:{what}"

    # -- waiting room and admission keys

    def event_room(self, event_id: str) -> str:
        """string: the id of the waiting room gating this event (absent = not gated).
        Written by admission when a room is created for an event; read by ticketing."""
        return self.event(event_id, "room")

    def room_config(self, room: str) -> str:
        """hash: the room's configuration (rooms/store.py RoomConfig, times in ms)."""
        return self.room(room, "cfg")

    def room_state(self, room: str) -> str:
        """hash: seq (arrival counter), tokens + ts_ms (admission token bucket), sold_out,
        cancelled_event + cancelled_at (lua/close_cancelled_room.lua), admitted_total,
        abandoned_total, rate_ewma + rate_ts_ms (measured admission rate)."""
        return self.room(room, "st")

    def room_waiting(self, room: str) -> str:
        """zset: visitor_id -> order score (pre-queue: random in (0, 1); later: arrival seq >= 1)."""
        return self.room(room, "wait")

    def room_active(self, room: str) -> str:
        """zset: visitor_id -> shopper session expiry (ms)."""
        return self.room(room, "active")

    def room_choosing(self, room: str) -> str:
        """zset: visitor_id -> admitted at (ms), for admitted visitors who have not held yet: each
        counts against the event's free tickets for at most the room's stock_reserve_s
        (lua/admit_batch.lua, docs/admission.md "Admission and the stock")."""
        return self.room(room, "choosing")

    def room_evicted(self, room: str) -> str:
        """set: evicted visitor ids (their queue tokens stop working)."""
        return self.room(room, "evicted")

    def room_seen(self, room: str, bucket: int) -> str:
        """bitmap with TTL: bit <visitor seq> set when the visitor polled during time bucket
        ``bucket`` (abandon detection at about 1 bit per visitor per bucket)."""
        return self.room(room, f"seen:{bucket}")

    # "It is your turn" e-mail (waitingroom join -> admission tick -> worker; ticketing/notifications/).
    def room_emails(self, room: str) -> str:
        """hash with TTL: visitor_id -> address left on join; deleted when the visitor is admitted."""
        return self.room(room, "emails")

    def room_your_turn(self, room: str) -> str:
        """list with TTL: JSON {v, e, x} of admitted visitors to e-mail (lua/collect_admitted_emails.lua)."""
        return self.room(room, "your_turn")

    # The shop's health as its admitted fans see it (rooms/shop_health.py): ticketing writes, the
    # admission controller's automatic rate reads, both in the room's own slot.
    def room_health(self, room: str, second: int) -> str:
        """hash with TTL: one second (unix) of the room's hold and purchase requests: n (count),
        e (errors: 5xx and timeouts), b<i> (latency histogram, rooms.shop_health.LATENCY_BOUNDS_MS)."""
        return self.room(room, f"health:{second}")

    def your_turn_lock(self) -> str:
        """string with PX: one worker replica drains the your_turn lists at a time."""
        return f"{self.prefix}:your_turn_lock"

    # -- ticketing keys
    # Holdable inventory of one event (ticketing/holds/store.py). Redis is a cache of what can be
    # held; PostgreSQL is the truth of what is sold (ticketing/catalog/inventory.py rebuilds from it).
    def inventory_meta(self, event_id: str) -> str:
        """hash: status, currency, max_per_order, hold_ttl_ms, gen (the "loaded" marker: absent
        after Redis data loss, which triggers a rebuild from PostgreSQL)."""
        return self.event(event_id, "inv:meta")

    def inventory_tiers(self, event_id: str) -> str:
        """hash: p:<tier> unit price, c:<tier> capacity, f:<tier> free, s:<tier> sold, ga:<tier> "1"."""
        return self.event(event_id, "inv:tiers")

    def inventory_seats(self, event_id: str) -> str:
        """hash: seat_id -> "0" free | "s" sold | "<hold_id>:<expires_ms>" held."""
        return self.event(event_id, "inv:seats")

    def inventory_seat_tiers(self, event_id: str) -> str:
        """hash: seat_id -> tier code."""
        return self.event(event_id, "inv:seat_tiers")

    def hold_expiry(self, event_id: str) -> str:
        """zset: hold_id -> expires_ms, for holds still held or locked (the sweeper's index)."""
        return self.event(event_id, "holds:expiry")

    def hold_records(self, event_id: str) -> str:
        """hash: hold_id -> JSON record (user, state, items, total, expiry)."""
        return self.event(event_id, "holds:rec")

    def hold_users(self, event_id: str) -> str:
        """hash: user_id -> hold_id of the user's latest hold (one live hold per user per event)."""
        return self.event(event_id, "holds:users")

    def holds_done(self, event_id: str) -> str:
        """zset: hold_id -> ms it became sold/released/expired (records purged after a retention)."""
        return self.event(event_id, "holds:done")

    def holds_expired_log(self, event_id: str) -> str:
        """list: hold ids reclaimed as expired, not yet announced as BookingExpired."""
        return self.event(event_id, "holds:expired_log")

    def admission_binding(self, event_id: str, jti: str) -> str:
        """hash with PEXPIRE (the admission token's lifetime left + a grace): u = id of the user the
        admission is bound to (the first who held with it), n = tickets bought through it. Written
        by the hold scripts, n counted by confirm_hold_sold (docs/holds-and-purchases.md)."""
        return self.event(event_id, f"adm:{jti}")

    def inventory_staging(self, event_id: str, what: str) -> str:
        """the loader writes a fresh inventory here, then load_inventory swaps it in atomically."""
        return self.event(event_id, f"inv:load:{what}")

    def inventory_rebuild_lock(self, event_id: str) -> str:
        """string with PX: one process rebuilds an event's inventory at a time."""
        return self.event(event_id, "inv:rebuild_lock")

    def events_on_sale(self) -> str:
        """set of event ids whose inventory is loaded (the sweeper's work list)."""
        return f"{self.prefix}:ev_on_sale"

    def hold_sweeper_lock(self) -> str:
        """string with PX: one worker replica sweeps expired holds at a time."""
        return f"{self.prefix}:hold_sweeper_lock"

    # Purchases (ticketing/orders/idempotency.py).
    def purchase_idempotency(self, user_id: str, key_digest: str) -> str:
        """string with EX: "p:<fingerprint>:<nonce>" while a purchase with this Idempotency-Key runs,
        then "d:<fingerprint>:<status>:<response>" (PostgreSQL keeps the durable copy)."""
        return f"{self.prefix}:{{idem:{user_id}}}:{key_digest}"

    # -- event bus (stagedoor/bus.py): every bus key shares the {bus} tag (one slot, so a
    # consumer's "mark done + XACK" and "dead-letter + XACK" run in one MULTI)
    def bus_stream(self) -> str:
        """stream: one entry per published event (fields type, id, env = the Envelope as JSON)."""
        return f"{self.prefix}:{{bus}}:events"

    def bus_dead(self) -> str:
        """stream: entries a consumer group gave up on (original fields + group, stream_id, attempts, error)."""
        return f"{self.prefix}:{{bus}}:dead"

    def bus_seen(self, group: str, event_id: str) -> str:
        """string with TTL: "run:<consumer>:<stream id>" while a group's consumer handles the event,
        then "done" (the group's dedupe of redelivered or republished event ids)."""
        return f"{self.prefix}:{{bus}}:seen:{group}:{event_id}"

    # -- accounts: process-wide, one key per subject, never used in a script
    def revoked_subject(self, kind: str, subject: str) -> str:
        """string with TTL: ms time up to which the subject's access tokens are refused."""
        return f"{self.prefix}:revoked:{kind}:{subject}"

    def login_failures(self, scope: str, subject: str) -> str:
        """counter with TTL (the failure window): failed logins per account hash or IP."""
        return f"{self.prefix}:loginfail:{scope}:{subject}"

    # -- per-limit rate buckets (one key per bucket; each script call touches one key)
    def rate_bucket(self, limit: str, subject: str) -> str:
        return f"{self.prefix}:{{rl:{limit}:{subject}}}"

    # -- proof of work
    def pow_spent(self, room: str, challenge_id: str) -> str:
        """string with TTL: a proof-of-work challenge already redeemed (single use)."""
        return self.room(room, f"pow:{challenge_id}")
