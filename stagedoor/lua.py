"""Loads every ``lua/*.lua`` script once and calls them by SHA.

At startup each script is ``SCRIPT LOAD``ed, so a syntax error stops the process instead
of failing the first buyer. Calls go through redis-py's ``AsyncScript`` (EVALSHA, and a
transparent reload on NOSCRIPT after a Redis restart or ``SCRIPT FLUSH``).

On a Redis Cluster (``STAGEDOOR_REDIS_CLUSTER``) the same code works: redis-py sends SCRIPT LOAD
to every master, routes EVALSHA to the master of its first key's slot (all of a script's keys
share one hash tag), and a master that lost its script cache (restart, failover) answers NOSCRIPT,
upon which AsyncScript loads the script again (on every master) and retries.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from stagedoor.settings import LUA_DIR

logger = logging.getLogger(__name__)

ScriptArg = str | int | float | bytes


class ScriptLoadError(RuntimeError):
    """A Lua script failed to compile on the server."""


class LuaScripts:
    def __init__(self, redis: Redis, directory: Path = LUA_DIR) -> None:
        self._redis = redis
        self.directory = directory
        self.sources: dict[str, str] = {
            path.stem: path.read_text(encoding="utf-8") for path in sorted(directory.glob("*.lua"))
        }
        self._scripts: dict[str, AsyncScript] = {
            name: redis.register_script(source) for name, source in self.sources.items()
        }

    @property
    def names(self) -> list[str]:
        return sorted(self._scripts)

    async def load_all(self) -> None:
        """SCRIPT LOAD every script; raises ScriptLoadError naming the script on a compile error."""
        for name, source in self.sources.items():
            try:
                sha = await self._redis.script_load(source)
            except Exception as exc:  # redis.ResponseError carries the compile message
                if "compil" in str(exc).lower() or "error" in type(exc).__name__.lower():
                    raise ScriptLoadError(f"lua/{name}.lua: {exc}") from exc
                raise
            script = self._scripts[name]
            if script.sha != sha:  # pragma: no cover - redis-py computes the same SHA1
                raise ScriptLoadError(f"lua/{name}.lua: SHA mismatch {script.sha} != {sha}")
        logger.info("lua_scripts_loaded", extra={"count": len(self.sources)})

    def sha(self, name: str) -> str:
        return self._scripts[name].sha

    async def call(
        self,
        name: str,
        keys: Sequence[str],
        args: Sequence[ScriptArg] = (),
        client: Any = None,
    ) -> Any:
        """EVALSHA the named script; a pipeline may be passed as ``client``."""
        return await self._scripts[name](keys=list(keys), args=list(args), client=client)
