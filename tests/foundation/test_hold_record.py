"""The hold record's schema (lua/hold_record.md) against its users: the Python field names
(stagedoor/hold_record.py), every script that reads or writes a record (the fields it touches,
the records it builds, its header's reference to the schema), and the records the scripts
really write on Redis through every state a hold passes."""

from __future__ import annotations

import re
from typing import Any

import msgspec
import redis.asyncio as redis_asyncio

from stagedoor import hold_record
from stagedoor.admission_tokens import AdmissionClaims
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import LUA_DIR
from ticketing.holds.store import HoldStore
from ticketing.holds.types import InventoryMeta, StagedTier

SCHEMA = LUA_DIR / "hold_record.md"
ROW_RE = re.compile(r"^\| `([a-z]+)` \| (string|integer|array) \| (always|general admission|admission|offer) "
                    r"\| (.+) \|$", re.M)
TYPES: dict[str, type] = {"string": str, "integer": int, "array": list}


def schema() -> dict[str, tuple[str, str]]:
    """field -> (type, present), in the table's order."""
    return {m[1]: (m[2], m[3]) for m in ROW_RE.finditer(SCHEMA.read_text())}


def _record_scripts() -> dict[str, tuple[str, str]]:
    """name -> (the file's header, the assembled text) of each script that decodes a hold record."""
    sources = LuaScripts(redis_asyncio.Redis(), LUA_DIR).sources  # no connection: assembling only
    out = {}
    for path in sorted(LUA_DIR.glob("*.lua")):
        header = path.read_text().split("]]", 1)[0]
        if ":holds:rec" in header and "cjson.decode(" in sources[path.stem]:
            out[path.stem] = (header, sources[path.stem])
    return out


def test_the_schema_table_names_every_field_once() -> None:
    rows = ROW_RE.findall(SCHEMA.read_text())
    fields = [r[0] for r in rows]
    assert len(fields) == len(set(fields)) == 13
    table_lines = [line for line in SCHEMA.read_text().splitlines() if line.startswith("| `")]
    assert len(table_lines) == len(rows), "a table row the test cannot read"


def test_the_python_names_are_the_schema_fields_in_order() -> None:
    assert hold_record.FIELDS == tuple(schema())
    assert {hold_record.KIND_SEATS, hold_record.KIND_GENERAL_ADMISSION} == {"s", "g"}


def test_the_eight_scripts_reading_records_reference_the_schema_and_touch_only_its_fields() -> None:
    fields = set(schema())
    scripts = _record_scripts()
    assert set(scripts) == {"hold_seats", "hold_general_admission", "lock_hold_for_payment",
                            "unlock_hold_after_failed_payment", "release_hold", "confirm_hold_sold",
                            "sweep_expired_holds", "hold_for_offer"}
    for name, (header, source) in scripts.items():
        assert "lua/hold_record.md" in header, f"{name}: the header points at the schema"
        # a decoded record is always called r (or handed straight to the fragment's give_back)
        for line in source.splitlines():
            if "cjson.decode(" in line:
                assert re.search(r"local r = |give_back\(", line), f"{name}: {line.strip()}"
        used = set(re.findall(r"\br\.([A-Za-z_]\w*)", source))
        assert used, name
        assert used <= fields, f"{name} uses {sorted(used - fields)}, not in lua/hold_record.md"


def test_the_scripts_that_create_records_write_every_field_the_schema_requires() -> None:
    fields = schema()
    always = {f for f, (_, present) in fields.items() if present == "always"}
    built: dict[str, set[str]] = {}
    for name, (_, source) in _record_scripts().items():
        bodies = re.findall(r"cjson\.encode\(\{(.*?)\}\)\)", source, re.S)
        bodies += re.findall(r"record = \{(.*?)\}\n", source, re.S)  # hold_for_offer: built, then encoded
        for body in bodies:
            kind = re.search(r"\bk = '([a-z])'", body)
            assert kind is not None, f"{name} builds a record without its kind"
            built[f"{name}:{kind[1]}"] = set(re.findall(r"\b([a-z]+) =(?!=)", body))
    admission = {f for f, (_, present) in fields.items() if present == "admission"}
    offer = {f for f, (_, present) in fields.items() if present == "offer"}
    assert admission == {hold_record.ADMISSION} and offer == {hold_record.OFFER}
    assert built == {"hold_seats:s": always | admission, "hold_general_admission:g": set(fields) - offer,
                     "hold_for_offer:g": set(fields) - admission, "hold_for_offer:s": always | offer}


# ---------------------------------------------------------------- records on Redis

EVENT = "42"
NOW = 1_900_000_000_000  # 13 digits: what cjson must write exactly


def _check(raw: bytes, fields: dict[str, tuple[str, str]]) -> dict[str, Any]:
    record = msgspec.json.decode(raw)
    assert set(record) <= set(fields), sorted(set(record) - set(fields))
    for field, (kind, present) in fields.items():
        if field not in record:
            if present in ("admission", "offer"):  # only holds placed with an admission token / for an offer
                continue
            assert present != "always" and record[hold_record.KIND] == hold_record.KIND_SEATS, field
            continue
        value = record[field]
        if kind == "array" and value == {}:  # cjson writes an empty table as an object
            assert record[hold_record.KIND] == hold_record.KIND_GENERAL_ADMISSION
            continue
        assert type(value) is TYPES[kind], (field, value)
    assert record[hold_record.STATE] in hold_record.STATES
    return record  # type: ignore[no-any-return]


async def test_records_written_by_the_scripts_match_the_schema_in_every_state(redis_client: redis_asyncio.Redis,
                                                                             redis_prefix: str) -> None:
    scripts = LuaScripts(redis_client)
    await scripts.load_all()
    keys = RedisKeys(redis_prefix)
    store = HoldStore(RedisCalls.batched(redis_client, scripts), keys)
    meta = InventoryMeta(status="on_sale", currency="EUR", max_per_order=4, hold_ttl_ms=60_000)
    tiers = [StagedTier(code="A", price=1250, capacity=0, sold=0, general_admission=False),
             StagedTier(code="G", price=900, capacity=10, sold=0, general_admission=True)]
    await store.load(EVENT, meta, tiers, [("a1", "A", False), ("a2", "A", False)], "g1")
    fields = schema()
    seen: dict[str, set[str]] = {"s": set(), "g": set()}

    async def record(hold_id: str) -> dict[str, Any]:
        raw = await redis_client.hget(keys.hold_records(EVENT), hold_id)
        assert raw is not None
        r = _check(raw, fields)
        seen[r[hold_record.KIND]].add(r[hold_record.STATE])
        return r

    admission = AdmissionClaims(visitor_id="v1", room="r1", event_id=EVENT, jti="j" * 32, exp=NOW // 1000 + 600)
    seats = await store.hold_seats(EVENT, f"{EVENT}-{1:024x}", "u1", ["a2", "a1"], NOW, admitted=True,
                                   admission=admission)
    r = await record(seats.id)
    assert r[hold_record.ADMISSION] == admission.jti
    assert r[hold_record.ITEMS] == [["a2", "A", 1250], ["a1", "A", 1250]]
    assert (r[hold_record.CREATED_MS], r[hold_record.EXPIRES_MS], r[hold_record.TOTAL]) == (NOW, NOW + 60_000, 2500)
    assert await store.get_hold(seats.id) == seats  # the store reads back what it was told
    locked = await store.lock_for_payment(seats, NOW + 1, 300_000)
    assert (await record(seats.id))[hold_record.EXPIRES_MS] == locked.expires_ms == NOW + 300_001
    await store.unlock_after_failed_payment(seats)
    await record(seats.id)
    await store.release(seats, NOW + 2)
    await record(seats.id)

    ga = await store.hold_general_admission(EVENT, f"{EVENT}-{2:024x}", "u2", "G", 3, NOW, admitted=True)
    r = await record(ga.id)
    assert (r[hold_record.TIER], r[hold_record.UNIT_PRICE], r[hold_record.QUANTITY]) == ("G", 900, 3)
    assert await store.get_hold(ga.id) == ga
    await store.sweep_expired(EVENT, NOW + 60_000)  # expired: reclaimed by the shared fragment
    await record(ga.id)
    again = await store.hold_seats(EVENT, f"{EVENT}-{3:024x}", "u3", ["a1"], NOW + 60_001, admitted=True)
    await store.confirm_sold(again, NOW + 60_002)
    await record(again.id)
    assert seen == {"s": {"held", "locked", "released", "sold"}, "g": {"held", "expired"}}
