"""Helpers shared by the waiting-room scenarios (not a scenario itself)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import redis.asyncio as redis_asyncio

from rooms.queue_store import BUCKET_MS, QueueStore, new_suffix
from rooms.store import Room, RoomStore
from stagedoor.embedded import EmbeddedRedis
from stagedoor.keys import write_new_key
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys

PREFIX = "sd"  # the services' default STAGEDOOR_REDIS_KEY_PREFIX


def bench_room(room: str, *, paused: bool = True, starts_in_s: float = -60) -> Room:
    """A selling fifo room, paused: joins and polls do their full work, nobody is admitted,
    so the queue only grows (the load measures the fan-facing path, not the controller)."""
    now_ms = int(time.time() * 1000)
    return Room(room=room, event_id=None, mode="fifo", opens_at_ms=now_ms - 3_600_000,
                starts_at_ms=now_ms + int(starts_in_s * 1000), closes_at_ms=0, rate_per_s=100.0,
                max_active=1000, session_ttl_s=600, abandon_after_s=600, pow_difficulty=0, shop_url=None,
                paused=paused)


async def create_room(redis_url: str, room: Room) -> None:
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        scripts = LuaScripts(client)
        await scripts.load_all()
        await RoomStore(RedisCalls.batched(client, scripts), RedisKeys(PREFIX)).put(room, int(time.time() * 1000))
    finally:
        await client.aclose()


async def bulk_join(client: Any, room: str, count: int, pipeline_size: int = 2000) -> list[str]:
    """Join ``count`` new visitors through lua/join_queue.lua itself, pipelined (the loader of the
    1 M test: the same script and key shapes as a real join, without HTTP in the way)."""
    scripts = LuaScripts(client)
    await scripts.load_all()
    keys = RedisKeys(PREFIX)
    store_keys = [keys.room_config(room), keys.room_state(room), keys.room_waiting(room), keys.room_active(room),
                  keys.room_evicted(room)]
    choosing = keys.room_choosing(room)
    sha = scripts.sha("join_queue")
    ids: list[str] = []
    done = 0
    while done < count:
        n = min(pipeline_size, count - done)
        now_ms = int(time.time() * 1000)
        seen = keys.room_seen(room, now_ms // BUCKET_MS)
        pipe = client.pipeline(transaction=False)
        for _ in range(n):
            pipe.evalsha(sha, 7, *store_keys, seen, choosing, "", "", now_ms, "0.5", BUCKET_MS, 0.5, new_suffix(),
                         10_000)
        for reply in await pipe.execute():
            ids.append(reply[1].decode())
        done += n
    return ids


async def bulk_join_at(redis_url: str, room: str, count: int) -> None:
    """:func:`bulk_join` on a client of its own (opened and closed here)."""
    client = redis_asyncio.Redis.from_url(redis_url)
    try:
        await bulk_join(client, room, count)
    finally:
        await client.aclose()


def lone_waiting_room_stores(work: Path) -> tuple[EmbeddedRedis, Path]:
    """What a measuring tool's lone waiting-room process needs under ``work``: a throwaway Redis
    (started; the caller stops it) and a signing-keys directory holding one key."""
    redis = EmbeddedRedis(work / "redis", persist=False).start()
    keys_dir = work / "keys"
    keys_dir.mkdir()
    write_new_key(keys_dir)
    return redis, keys_dir


def lone_waiting_room_env(redis_url: str, keys_dir: Path, port: int, **overrides: str) -> dict[str, str]:
    """The environment of one waiting-room process started by a measuring tool on its own
    throwaway Redis (production settings, rate limits off: one client address; no database)."""
    return {**os.environ, "STAGEDOOR_REDIS_URL": redis_url, "STAGEDOOR_ADMIN_API_KEY": "m" * 32,
            "STAGEDOOR_QUEUE_TOKEN_SECRET": "q" * 40, "STAGEDOOR_SIGNING_KEYS_DIR": str(keys_dir),
            "STAGEDOOR_DATABASE_URL": "postgresql://unused@127.0.0.1:1/unused", "STAGEDOOR_COOKIE_SECURE": "false",
            "STAGEDOOR_LOG_LEVEL": "WARNING", "STAGEDOOR_ENVIRONMENT": "production",
            "STAGEDOOR_RATE_LIMITS_ENABLED": "false", "STAGEDOOR_WAITINGROOM_PORT": str(port), **overrides}


__all__ = ["QueueStore", "bench_room", "bulk_join", "bulk_join_at", "create_room", "lone_waiting_room_env",
           "lone_waiting_room_stores"]
