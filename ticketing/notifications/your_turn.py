""""It is your turn": drain the per-room lists the admission controller fills.

A waiting visitor may leave an address on join (kept in ``{room:<r>}:emails`` for the queue
token's lifetime). When an admit tick lets visitors in, ``lua/collect_admitted_emails.lua``
moves their addresses to ``{room:<r>}:your_turn`` and forgets them. Here the worker reads a
batch, sends one e-mail each (sent-log key: a digest of the address, so PostgreSQL never keeps
it), then trims what it read; an entry whose send failed with attempts left goes back on the
list. One replica drains at a time (a Redis lock), so trims never drop unread entries; a
crash between send and trim only re-reads entries the sent-log has already marked.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import cast

import msgspec
from redis.asyncio import Redis

from rooms.store import room_ids
from stagedoor.redis_keys import RedisKeys
from ticketing.notifications.service import Notifications

logger = logging.getLogger(__name__)

BATCH = 100
LOCK_MS = 60_000


class Admitted(msgspec.Struct, frozen=True):
    v: str  # visitor id
    e: str  # address
    x: int  # session expiry, epoch ms


_DECODER = msgspec.json.Decoder(Admitted)


class YourTurnDrain:
    def __init__(self, n: Notifications, redis: Redis, keys: RedisKeys,
                 clock: Callable[[], float] = time.time) -> None:
        self.n = n
        self.redis = redis
        self.keys = keys
        self.clock = clock
        self.token = uuid.uuid4().hex

    async def run_once(self) -> int:
        """One pass over every room's list; returns the number of e-mails sent."""
        lock = self.keys.your_turn_lock()
        if not await self.redis.set(lock, self.token, nx=True, px=LOCK_MS):
            return 0
        try:
            sent = 0
            for room in await room_ids(self.redis, self.keys):
                sent += await self._drain_room(room)
            return sent
        finally:
            if await self.redis.get(lock) == self.token.encode():
                await self.redis.delete(lock)

    async def _drain_room(self, room: str) -> int:
        key = self.keys.room_your_turn(room)
        sent = 0
        while True:
            await self.redis.pexpire(self.keys.your_turn_lock(), LOCK_MS)  # ours (set NX above); keep it
            # bytes: our clients do not decode replies (redis-py types them for either way)
            entries = cast(list[bytes], await self.redis.lrange(key, 0, BATCH - 1))
            if not entries:
                return sent
            now_ms = int(self.clock() * 1000)
            again: list[bytes] = []
            for raw in entries:
                try:
                    entry = _DECODER.decode(raw)
                except msgspec.DecodeError:
                    logger.warning("your_turn_entry_unreadable", extra={"room": room})
                    continue
                if entry.x <= now_ms:
                    self.n.metrics.skipped_total.labels("your_turn", "email", "session_over").inc()
                    continue  # the shopper session is over: the message would only mislead
                outcome = await self.n.send_your_turn(room, entry.v, entry.e, entry.x)
                sent += outcome.sent
                if outcome.failed:
                    again.append(raw)
            # No MULTI needed (and none to refuse on a Cluster): only this lock holder trims, and
            # the collector only appends after what was read.
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.ltrim(key, len(entries), -1)
                if again:
                    pipe.rpush(key, *again)
                await pipe.execute()
            if again and len(again) == len(entries):
                return sent  # nothing but retries: wait for the next pass
