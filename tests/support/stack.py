"""Real stagedoor service processes (``stagedoor serve``) on free loopback ports, for tests that
drive the stack from outside (Locust, the flash-sale engine), on the test Redis and database."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from pathlib import Path

from loadtest.bench import Started, start_server, stop_server, wait_ready
from loadtest.scenario import BenchEnv
from stagedoor.embedded import free_port
from stagedoor.keys import KeyRing


@contextlib.contextmanager
def running_stack(components: tuple[str, ...], *, redis_url: str, database_url: str, prefix: str, workdir: Path,
                  processes: int = 1, **settings: str) -> Iterator[BenchEnv]:
    """Start ``components`` (each with ``processes`` processes), wait for /readyz, yield the env, stop them."""
    keys_dir = workdir / "keys"
    KeyRing.from_dir(keys_dir, create=True)
    env = BenchEnv(urls={c: f"http://127.0.0.1:{free_port()}" for c in ("waitingroom", "ticketing", "admission",
                                                                         "worker")},
                   redis_url=redis_url, database_url=database_url,
                   admin_api_key="sd_test_" + secrets.token_urlsafe(18), queue_token_secret=secrets.token_urlsafe(32),
                   signing_keys_dir=str(keys_dir), data_dir=str(workdir / "data"))
    overrides = {"STAGEDOOR_REDIS_KEY_PREFIX": prefix, "STAGEDOOR_ENVIRONMENT": "test",
                 "STAGEDOOR_RATE_LIMIT_EXEMPT_IPS": "127.0.0.1", "STAGEDOOR_ARGON2_TIME_COST": "1",
                 "STAGEDOOR_ARGON2_MEMORY_KIB": "1024", "STAGEDOOR_DB_POOL_MIN_SIZE": "1",
                 "STAGEDOOR_DB_POOL_MAX_SIZE": "5", **settings}
    started: list[Started] = []
    try:
        for component in components:
            n = 1 if component == "worker" else processes
            started.append(start_server(env.stagedoor(component, processes=n, **overrides), workdir))
        for s in started:
            wait_ready(s)
        yield env
    finally:
        for s in reversed(started):
            stop_server(s)
