"""The Lua loader (stagedoor/lua.py): scripts loaded once and called by SHA, reloaded after a
SCRIPT FLUSH, fragments (lua/lib/) included at load time; every project script headed and used."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import redis.asyncio as redis_asyncio

from stagedoor.embedded import EmbeddedRedis
from stagedoor.lua import FRAGMENTS, LuaScripts, ScriptLoadError, assemble
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
    sources = [p.read_text() for pkg in ("rooms", "waitingroom", "ticketing", "admission", "stagedoor")
               for p in (root / pkg).rglob("*.py")]
    assert any(f'"{path.stem}"' in s for s in sources), f"lua/{path.name} is not called from any store"


# ---------------------------------------------------------------- fragments (lua/lib/)

FRAGMENT_PATHS = sorted((LUA_DIR / FRAGMENTS).glob("*.lua"))
SCRIPT_TEXTS = {p.stem: p.read_text() for p in LUA_DIR.glob("*.lua")}


@pytest.mark.parametrize("path", FRAGMENT_PATHS, ids=lambda p: p.name)
def test_every_fragment_has_a_header_and_is_included_by_a_script(path: Path) -> None:
    text = path.read_text()
    assert text.startswith("--[["), f"{path.name}: header must open the file"
    header = text.split("]]", 1)[0]
    assert re.match(r"--\[\[\s*\n\s*" + re.escape(path.stem) + r" \(fragment", header), \
        f"{path.name}: header names the fragment"
    assert "Cost" in header
    includers = [name for name, source in SCRIPT_TEXTS.items() if f"--#include {path.stem}\n" in source]
    assert includers, f"lua/{FRAGMENTS}/{path.name} is included by no script"
    for name in includers:  # and each includer says so in its header
        assert f"lua/{FRAGMENTS}/{path.name}" in SCRIPT_TEXTS[name].split("]]", 1)[0], name


def test_a_fragment_is_not_a_script() -> None:
    names = LuaScripts(redis_asyncio.Redis()).names  # no connection: registering computes SHAs only
    assert names == sorted(SCRIPT_TEXTS)
    assert not {p.stem for p in FRAGMENT_PATHS} & set(names)


def test_the_assembled_scripts_hold_exactly_the_one_reclaim_source() -> None:
    reclaim = (LUA_DIR / FRAGMENTS / "reclaim.lua").read_text().rstrip("\n")
    includers = {"hold_general_admission", "release_hold", "sweep_expired_holds", "hold_for_offer"}
    scripts = LuaScripts(redis_asyncio.Redis())
    for name, source in scripts.sources.items():
        assert not re.search(r"^--#include", source, re.M), name  # every include line was resolved
        assert source.count(reclaim) == (1 if name in includers else 0), name
        # no second copy: the routine is defined only by the fragment's text
        assert source.count("local function reclaim(") == source.count("local function give_back(") == \
            (1 if name in includers else 0), name
        assert scripts.sha(name) == hashlib.sha1(source.encode()).hexdigest(), name  # the SHA Redis runs
    for name, text in SCRIPT_TEXTS.items():  # and no script file defines or copies it itself
        assert "function reclaim" not in text and "function give_back" not in text, name
        assert "HINCRBY', KEYS[1], 'f:' .. r.t" not in text and "HINCRBY', KEYS[2], 'f:' .. r.t" not in text, name


INCLUDER = """--[[
  uses_twice: doubles a number through a fragment.
  KEYS none
  ARGV[1] n
  Returns 2 n
]]
--#include twice
return twice(tonumber(ARGV[1]))
"""
TWICE = """--[[
  twice (fragment): n -> 2 n
  Cost O(1)
]]
local function twice(n) return 2 * n end
"""


async def test_an_included_fragment_runs_inside_the_script(tmp_path: Path, redis_client: redis_asyncio.Redis) -> None:
    (tmp_path / FRAGMENTS).mkdir()
    (tmp_path / FRAGMENTS / "twice.lua").write_text(TWICE)
    (tmp_path / "uses_twice.lua").write_text(INCLUDER)
    scripts = LuaScripts(redis_client, tmp_path)
    await scripts.load_all()
    assert scripts.names == ["uses_twice"]
    assert scripts.sources["uses_twice"] == INCLUDER.replace("--#include twice\n", TWICE)
    assert await scripts.call("uses_twice", [], [21]) == 42


@pytest.mark.parametrize(("script", "fragment", "message"), [
    ("--#include nowhere\nreturn 1\n", None, r"uses_it\.lua: no fragment lua/lib/nowhere\.lua"),
    ("--#include twice\n--#include twice\nreturn 1\n", TWICE, "included twice"),
    ("--#include twice\nreturn 1\n", "--#include other\nlocal function twice(n) return n end\n",
     "a fragment includes nothing"),
    ("--#include ../secrets\nreturn 1\n", None, "bad fragment name"),
])
def test_a_bad_include_stops_startup_and_names_the_script(tmp_path: Path, script: str, fragment: str | None,
                                                          message: str) -> None:
    (tmp_path / FRAGMENTS).mkdir()
    if fragment is not None:
        (tmp_path / FRAGMENTS / "twice.lua").write_text(fragment)
    (tmp_path / "uses_it.lua").write_text(script)
    with pytest.raises(ScriptLoadError, match=message):
        assemble(tmp_path / "uses_it.lua")
