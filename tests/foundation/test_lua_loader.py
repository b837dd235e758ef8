from __future__ import annotations

import re
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from stagedoor.embedded import EmbeddedRedis
from stagedoor.lua import LuaScripts, ScriptLoadError
from stagedoor.settings import LUA_DIR

ECHO = """--[[
  echo_key: set a key and return its value.
  KEYS[1] the key
  ARGV[1] the value
  Returns the value
]]
redis.call('SET', KEYS[1], ARGV[1])
return redis.call('GET', KEYS[1])
"""


async def test_scripts_are_loaded_and_called_by_sha(tmp_path: Path, redis_client: redis_asyncio.Redis,
                                                    redis_prefix: str) -> None:
    (tmp_path / "echo_key.lua").write_text(ECHO)
    scripts = LuaScripts(redis_client, tmp_path)
    await scripts.load_all()
    assert scripts.names == ["echo_key"]
    assert await redis_client.script_exists(scripts.sha("echo_key")) == [True]
    assert await scripts.call("echo_key", [f"{redis_prefix}:k"], ["v1"]) == b"v1"


async def test_a_script_is_reloaded_transparently_after_script_flush(tmp_path: Path) -> None:
    # Its own server: SCRIPT FLUSH on the shared one would disturb tests running beside us.
    server = EmbeddedRedis(tmp_path / "redis", persist=False).start()
    client = redis_asyncio.Redis.from_url(server.url)
    try:
        (tmp_path / "echo_key.lua").write_text(ECHO)
        scripts = LuaScripts(client, tmp_path)
        await scripts.load_all()
        await client.script_flush()
        assert await scripts.call("echo_key", ["k"], ["v2"]) == b"v2"
    finally:
        await client.aclose()
        server.stop()


async def test_a_syntax_error_stops_startup_and_names_the_script(tmp_path: Path,
                                                                 redis_client: redis_asyncio.Redis) -> None:
    (tmp_path / "broken_thing.lua").write_text("return (")
    scripts = LuaScripts(redis_client, tmp_path)
    with pytest.raises(ScriptLoadError, match=r"broken_thing\.lua"):
        await scripts.load_all()


REQUIRED = ("KEYS", "ARGV", "Returns")


@pytest.mark.parametrize("path", sorted(LUA_DIR.glob("*.lua")), ids=lambda p: p.name)
def test_every_project_script_has_a_documented_header(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("--[["), f"{path.name}: header must open the file"
    header = text.split("]]", 1)[0]
    assert re.match(r"--\[\[\s*\n\s*" + re.escape(path.stem) + r":", header), f"{path.name}: header names the script"
    for word in REQUIRED:
        assert word in header, f"{path.name}: header documents {word}"


@pytest.mark.parametrize("path", sorted(LUA_DIR.glob("*.lua")), ids=lambda p: p.name)
def test_every_project_script_is_used_by_a_store(path: Path) -> None:
    root = LUA_DIR.parent
    sources = [p.read_text() for pkg in ("waitingroom", "ticketing", "admission", "stagedoor")
               for p in (root / pkg).rglob("*.py")]
    assert any(f'"{path.stem}"' in s for s in sources), f"lua/{path.name} is not called from any store"
