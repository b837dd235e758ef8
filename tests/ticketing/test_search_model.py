"""The event search's filters and sort orders against a Python model, by hypothesis.

Each example writes a small generated catalog straight to PostgreSQL (titles, categories, cities,
start times, price ranges, statuses, tickets_left of the read model; ties on purpose), runs a
generated query through ``GET /api/events`` following ``next_cursor`` to the last page (small
``limit``s, so the keyset cursor is exercised), and compares the ids with the model's. One
database and one ticketing app per test function; the events are deleted between examples.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import hypothesis
import hypothesis.strategies as st
import msgspec
import pytest
from hypothesis import HealthCheck

WORDS = ("jazz", "Rock", "opera", "night", "Gala", "live", "tour")
CATEGORIES = ("concert", "Theatre", "sport", "comedy")
CITIES = ("Paris", "lyon", "Oslo", "New York")
STATUSES = ("on_sale", "on_sale", "on_sale", "sold_out", "draft", "cancelled")
T0 = datetime(2030, 6, 1, 19, 0, tzinfo=UTC)
INSTANTS = [T0 + timedelta(hours=h) for h in (0, 0, 1, 24, 25, 48, 24 * 30)]  # repeats: ties on starts_at
PRICES = (0, 1_000, 2_500, 5_000, 12_000)


class Ev(msgspec.Struct, frozen=True):
    title: str
    category: str
    city: str
    status: str
    starts_at: datetime
    min_price: int
    max_price: int
    tickets_left: int | None


@st.composite
def events(draw: Callable[..., Any]) -> Ev:
    low, high = sorted([draw(st.sampled_from(PRICES)), draw(st.sampled_from(PRICES))])
    return Ev(title=" ".join(draw(st.lists(st.sampled_from(WORDS), min_size=1, max_size=3))),
              category=draw(st.sampled_from(CATEGORIES)), city=draw(st.sampled_from(CITIES)),
              status=draw(st.sampled_from(STATUSES)), starts_at=draw(st.sampled_from(INSTANTS)),
              min_price=low, max_price=high, tickets_left=draw(st.sampled_from([None, 0, 1, 50])))


def case_variant(values: tuple[str, ...]) -> st.SearchStrategy[str]:
    return st.sampled_from(values).flatmap(lambda v: st.sampled_from([v, v.lower(), v.upper()]))


FILTERS: dict[str, st.SearchStrategy[Any]] = {
    "q": st.lists(case_variant(WORDS + CATEGORIES), min_size=1, max_size=2).map(" ".join),
    "category": case_variant(CATEGORIES),
    "city": case_variant(CITIES),
    "from": st.sampled_from(INSTANTS),
    "to": st.sampled_from(INSTANTS),
    "min_price": st.sampled_from(PRICES),
    "max_price": st.sampled_from(PRICES),
    "available": st.booleans(),
}


@st.composite
def queries(draw: Callable[..., Any]) -> dict[str, Any]:
    """Up to three filters (more would leave nothing to compare on small catalogs), a sort, a page size."""
    names = draw(st.lists(st.sampled_from(sorted(FILTERS)), max_size=3, unique=True))
    q = {name: draw(FILTERS[name]) for name in names}
    q["sort"] = draw(st.sampled_from(["starts_at", "-starts_at", "price", "-price"]))
    q["limit"] = draw(st.integers(1, 4))
    return q


def model(catalog: list[tuple[int, Ev]], q: dict[str, Any]) -> list[int]:
    """The search's meaning: listed events (on sale or sold out) passing every filter, in the sort order."""
    def keep(e: Ev) -> bool:
        if e.status not in ("on_sale", "sold_out"):
            return False
        if "q" in q:
            words = {w.lower() for w in f"{e.title} {e.category}".split()}
            if not all(w.lower() in words for w in q["q"].split()):
                return False
        if "category" in q and e.category.lower() != q["category"].lower():
            return False
        if "city" in q and e.city.lower() != q["city"].lower():
            return False
        if "from" in q and not e.starts_at >= q["from"]:
            return False
        if "to" in q and not e.starts_at < q["to"]:
            return False
        if "min_price" in q and not e.max_price >= q["min_price"]:
            return False
        if "max_price" in q and not e.min_price <= q["max_price"]:
            return False
        if q.get("available") is True and not (e.status == "on_sale" and e.tickets_left != 0):
            return False
        if q.get("available") is False and not (e.status == "sold_out" or e.tickets_left == 0):
            return False
        return True

    sort = q.get("sort", "starts_at")
    key = (lambda p: (p[1].starts_at, p[0])) if sort.lstrip("-") == "starts_at" else (lambda p: (p[1].min_price, p[0]))
    return [i for i, _ in sorted((p for p in catalog if keep(p[1])), key=key, reverse=sort.startswith("-"))]


def as_params(q: dict[str, Any]) -> dict[str, str]:
    out = {}
    for k, v in q.items():
        if isinstance(v, bool):
            out[k] = "true" if v else "false"
        elif isinstance(v, datetime):
            out[k] = v.isoformat().replace("+00:00", "Z")
        else:
            out[k] = str(v)
    return out


def _edge(title: str, category: str, city: str, status: str, hours: int, low: int, high: int,
          left: int | None) -> Ev:
    return Ev(title=title, category=category, city=city, status=status, starts_at=T0 + timedelta(hours=hours),
              min_price=low, max_price=high, tickets_left=left)


# Ties on start and price, every status, tickets_left NULL / 0 / some, mixed case.
EDGES = [
    _edge("jazz night", "Theatre", "Paris", "on_sale", 0, 1_000, 5_000, None),
    _edge("Jazz gala", "theatre", "paris", "on_sale", 0, 2_500, 2_500, 0),
    _edge("rock live", "concert", "Oslo", "sold_out", 1, 0, 1_000, 0),
    _edge("opera", "Theatre", "PARIS", "on_sale", 1, 2_500, 12_000, 50),
    _edge("tour", "sport", "Paris", "draft", 0, 1_000, 1_000, None),
    _edge("jazz", "theatre", "Paris", "cancelled", 0, 1_000, 1_000, 1),
    _edge("gala night", "comedy", "New York", "on_sale", 24, 5_000, 5_000, 1),
]


@pytest.fixture
async def search_client(service_client: Any, make_settings: Any) -> Any:
    return await service_client("ticketing", make_settings(rate_limits_enabled=False))


@pytest.fixture
async def organizer(db: asyncpg.Pool) -> AsyncIterator[str]:
    yield await db.fetchval("INSERT INTO users (email, password_hash, name, roles) "
                            "VALUES ('model-org@example.test', 'x', 'Org', ARRAY['organizer']) RETURNING id::text")


async def insert(db: asyncpg.Pool, organizer: str, catalog: list[Ev]) -> list[tuple[int, Ev]]:
    out = []
    async with db.acquire() as conn, conn.transaction():
        await conn.execute("DELETE FROM events")
        for e in catalog:
            venue = await conn.fetchval(
                "INSERT INTO venues (name, city, address) VALUES ('Hall', $1, '') "
                "ON CONFLICT (name, city, address) DO UPDATE SET name = EXCLUDED.name RETURNING id", e.city)
            event_id = await conn.fetchval(
                "INSERT INTO events (organizer_id, venue_id, status, title, description, category, city, starts_at,"
                " ends_at, currency, max_tickets_per_order, seated, min_price, max_price, tickets_left) "
                "VALUES ($1::uuid, $2, $3, $4, '', $5, $6, $7, $7, 'EUR', 10, false, $8, $9, $10) RETURNING id",
                organizer, venue, e.status, e.title, e.category, e.city, e.starts_at, e.min_price, e.max_price,
                e.tickets_left)
            out.append((event_id, e))
    return out


async def search_all_pages(client: Any, q: dict[str, Any]) -> list[int]:
    params, ids, pages = as_params(q), [], 0
    while True:
        resp = await client.get("/api/events", params=params)
        assert resp.status == 200, await resp.text()
        page = await resp.json()
        assert len(page["items"]) <= q["limit"]
        ids += [int(item["id"]) for item in page["items"]]
        pages += 1
        assert pages <= 50, "next_cursor does not end"
        if page["next_cursor"] is None:
            return ids
        assert page["items"], "an empty page with a next cursor"
        params = {**as_params(q), "cursor": page["next_cursor"]}


@hypothesis.settings(max_examples=200, deadline=None, database=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@hypothesis.given(catalog=st.lists(events(), min_size=1, max_size=24), q=queries())
@hypothesis.example(catalog=EDGES, q={"city": "PARIS", "sort": "starts_at", "limit": 1})  # case-insensitive
@hypothesis.example(catalog=EDGES, q={"category": "theatre", "sort": "-price", "limit": 2})
@hypothesis.example(catalog=EDGES, q={"q": "Theatre jazz", "sort": "starts_at", "limit": 1})  # category words too
@hypothesis.example(catalog=EDGES, q={"available": True, "sort": "price", "limit": 1})  # tickets_left NULL: status
@hypothesis.example(catalog=EDGES, q={"available": False, "sort": "-starts_at", "limit": 1})
@hypothesis.example(catalog=EDGES, q={"from": T0, "to": T0 + timedelta(hours=1), "sort": "starts_at", "limit": 1})
@hypothesis.example(catalog=EDGES, q={"min_price": 2_500, "max_price": 2_500, "sort": "price", "limit": 1})
async def test_search_matches_the_model(search_client: Any, db: asyncpg.Pool, organizer: str,
                                        catalog: list[Ev], q: dict[str, Any]) -> None:
    rows = await insert(db, organizer, catalog)
    got = await search_all_pages(search_client, q)
    hypothesis.event("results", "none" if not got else "one page" if len(got) <= q["limit"] else "several pages")
    assert got == model(rows, q), (q, rows)
