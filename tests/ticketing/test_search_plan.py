"""The event search's indexes, proven by EXPLAIN on 100,000 events.

The catalog is generated in one INSERT ... SELECT generate_series (loadtest/scenarios/_search_data.py)
and ANALYZEd; every case EXPLAINs the SQL the code builds (ticketing.catalog.store.search_sql) for
the second page (with the keyset cursor of the first, as a client following next_cursor sends it)
and asserts that events is read through an index (index or bitmap scan), never by a sequential
scan. No timing is asserted (performance is the bench's: loadtest/scenarios/search.py).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import msgspec
import pytest

from loadtest.scenarios._search_data import populate
from ticketing.catalog.store import encode_cursor, search_sql
from ticketing.catalog.types import EventSearch

EVENTS = 100_000


@pytest.fixture
async def catalog(database_url: str) -> AsyncIterator[asyncpg.Connection]:
    conn = await asyncpg.connect(database_url)
    try:
        await populate(conn, EVENTS)
        yield conn
    finally:
        await conn.close()


def nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    out = [plan]
    for child in plan.get("Plans", ()):
        out += nodes(child)
    return out


async def second_page(conn: asyncpg.Connection, search: EventSearch) -> EventSearch:
    """The query a client sends for page 2: the same filters and the cursor of page 1."""
    sql, args = search_sql(search)
    rows = await conn.fetch(sql, *args)
    assert len(rows) > search.limit, "the case needs at least two pages"
    last = rows[search.limit - 1]
    value = last["starts_at"] if search.sort.lstrip("-") == "starts_at" else last["min_price"]
    return msgspec.structs.replace(search, cursor=encode_cursor(search.sort, value, last["id"]))


CASES: dict[str, tuple[dict[str, Any], set[str]]] = {
    # name: (query parameters, indexes of events any of which the plan may use)
    "text": ({"q": "tango"}, {"events_search", "events_listing"}),
    "text two words": ({"q": "poetry marathon"}, {"events_search", "events_listing"}),
    "text matching nothing": ({"q": "zzzz"}, {"events_search"}),
    "category": ({"category": "Opera"}, {"events_by_category"}),
    "city": ({"city": "city 7"}, {"events_city"}),
    "date range": ({"from": "2030-05-01T00:00:00Z", "to": "2030-05-08T00:00:00Z"}, {"events_listing"}),
    "price range": ({"min_price": 15_000, "max_price": 16_000}, {"events_listing", "events_by_price"}),
    "available": ({"available": True}, {"events_listing"}),
    "not available": ({"available": False}, {"events_listing"}),
    "sort by price": ({"sort": "price"}, {"events_by_price"}),
    "sort by price desc, max price": ({"sort": "-price", "max_price": 3_000}, {"events_by_price"}),
    "newest first in a city": ({"sort": "-starts_at", "city": "City 9"}, {"events_city"}),
    "combination": ({"q": "jazz", "category": "dance", "city": "City 4", "from": "2030-03-01T00:00:00Z",
                     "to": "2031-10-01T00:00:00Z", "min_price": 1_000, "max_price": 19_000, "available": True,
                     "limit": 2},
                    {"events_search", "events_by_category", "events_city", "events_listing"}),
}


async def test_every_search_filter_uses_an_index_on_100k_events(catalog: asyncpg.Connection) -> None:
    assert await catalog.fetchval("SELECT count(*) FROM events") == EVENTS
    listed = await catalog.fetchval("SELECT count(*) FROM events WHERE status IN ('on_sale', 'sold_out')")
    assert listed > 90_000
    failures = []
    for name, (params, indexes) in CASES.items():
        search = msgspec.convert(params, EventSearch, strict=False)
        if name != "text matching nothing":
            search = await second_page(catalog, search)
        sql, args = search_sql(search)
        plan = json.loads(await catalog.fetchval("EXPLAIN (FORMAT JSON) " + sql, *args))[0]["Plan"]
        on_events = [n for n in nodes(plan) if n.get("Relation Name") == "events" or
                     n.get("Index Name", "").startswith("events_")]
        kinds = {n["Node Type"] for n in on_events}
        used = {n["Index Name"] for n in on_events if "Index Name" in n}
        if any("Seq Scan" in k for k in kinds) or not used or not used <= indexes:
            failures.append(f"{name}: {sorted(kinds)} via {sorted(used)} (expected some of {sorted(indexes)})")
    assert not failures, "\n".join(failures)
