"""Loads every ``lua/*.lua`` script once and calls them by SHA.

Stores do not call this module: they call Redis through :class:`stagedoor.redis_calls.RedisCalls`,
which runs these scripts by their SHA and comes back here on NOSCRIPT to load them again.

At startup each script is ``SCRIPT LOAD``ed, so a syntax error stops the process instead
of failing the first buyer. Calls go through redis-py's ``AsyncScript`` (EVALSHA, and a
transparent reload on NOSCRIPT after a Redis restart or ``SCRIPT FLUSH``).

A script may include a shared fragment with a line of its own, ``--#include <name>``: the
loader replaces that line with ``lua/lib/<name>.lua`` (a fragment is not a script: it is never
loaded or called alone, and includes nothing itself). A script's SHA is that of the assembled
text, which is what Redis runs; a line number in a Redis error counts lines of that text.

On a Redis Cluster (``STAGEDOOR_REDIS_CLUSTER``) the same code works: redis-py sends SCRIPT LOAD
to every master, routes EVALSHA to the master of its first key's slot (all of a script's keys
share one hash tag), and a master that lost its script cache (restart, failover) answers NOSCRIPT,
upon which AsyncScript loads the script again (on every master) and retries.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from stagedoor.settings import LUA_DIR

logger = logging.getLogger(__name__)

ScriptArg = str | int | float | bytes

FRAGMENTS = "lib"  # lua/lib/<name>.lua: the fragments scripts include
_INCLUDE_RE = re.compile(r"^--#include[ \t]+(\S+)[ \t]*$", re.MULTILINE)
_FRAGMENT_NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class ScriptLoadError(RuntimeError):
    """A Lua script failed to compile on the server, or to assemble from its fragments."""


def assemble(path: Path) -> str:
    """The text of the script at ``path`` with each ``--#include <name>`` line replaced by
    ``lua/lib/<name>.lua`` (from the script's own directory). ScriptLoadError names the script
    when a fragment is missing, included twice, or includes another."""
    source = path.read_text(encoding="utf-8")
    included: set[str] = set()

    def fragment(match: re.Match[str]) -> str:
        name = match.group(1)
        if not _FRAGMENT_NAME_RE.match(name):
            raise ScriptLoadError(f"lua/{path.name}: bad fragment name {name!r} in {match.group(0)!r}")
        if name in included:
            raise ScriptLoadError(f"lua/{path.name}: fragment {name!r} included twice")
        included.add(name)
        fragment_path = path.parent / FRAGMENTS / f"{name}.lua"
        try:
            text = fragment_path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise ScriptLoadError(f"lua/{path.name}: no fragment lua/{FRAGMENTS}/{name}.lua") from None
        if _INCLUDE_RE.search(text):
            raise ScriptLoadError(f"lua/{FRAGMENTS}/{name}.lua: a fragment includes nothing")
        return text.rstrip("\n")

    return _INCLUDE_RE.sub(fragment, source)


class LuaScripts:
    def __init__(self, redis: Redis, directory: Path = LUA_DIR) -> None:
        self.redis = redis
        self.directory = directory
        self.sources: dict[str, str] = {
            path.stem: assemble(path) for path in sorted(directory.glob("*.lua"))
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
                sha = await self.redis.script_load(source)
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
        """EVALSHA the named script on the pooled client (or ``client``, e.g. a pipeline), loading
        it again on NOSCRIPT. The call paths of stagedoor/redis_calls.py retry through here."""
        return await self._scripts[name](keys=list(keys), args=list(args), client=client)
