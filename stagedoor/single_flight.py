"""One read per key at a time: the callers that come while it runs share its answer.

What a cache in front of a store needs when many requests miss at once (a room's config after it
went stale, a room Redis lost): one call reaches the store, the others wait for it. A caller that
gives up (its client left) does not cancel the call the others wait for, and a call nobody awaits
any more still has its failure retrieved (no "exception was never retrieved" noise).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    def __init__(self, on_result: Callable[[K, V], None] | None = None) -> None:
        """``on_result(key, value)``: runs once per call that succeeded, whoever still waits for it."""
        self._running: dict[K, asyncio.Future[V]] = {}
        self._on_result = on_result

    def running(self, key: K) -> asyncio.Future[V] | None:
        return self._running.get(key)

    async def do(self, key: K, call: Callable[[], Awaitable[V]]) -> V:
        """``call()``'s answer: this caller's own call, or the one already running for ``key``."""
        running = self._running.get(key)
        if running is None:
            running = self._running[key] = asyncio.ensure_future(call())
            running.add_done_callback(lambda done: self._done(key, done))
        return await asyncio.shield(running)

    def _done(self, key: K, done: asyncio.Future[V]) -> None:
        if self._running.get(key) is done:
            del self._running[key]
        if done.cancelled():
            return
        if done.exception() is None and self._on_result is not None:
            self._on_result(key, done.result())
