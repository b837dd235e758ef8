"""Demo data for `stagedoor up`: an organizer and an arena event (about 2,000 seats in four
sections, three price tiers), on sale. Idempotent: a second run finds both and only makes sure
the event's inventory is loaded in Redis. The organizer's password is generated once, kept in
the data directory (never in the repo) and printed in the banner.
"""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

from stagedoor.connections import make_pool, make_redis
from stagedoor.keys import KeyRing
from stagedoor.lua import LuaScripts
from stagedoor.redis_calls import RedisCalls
from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from ticketing.catalog.inventory import Inventory
from ticketing.catalog.store import EventStore, NewEvent, TierRow
from ticketing.holds.store import HoldStore

DEMO_EMAIL = "demo@stagedoor.local"
DEMO_TITLE = "Stagedoor Arena Night (demo)"
# section name, rows, seats per row, tier of the first rows / of the rest
SECTIONS = (("Floor", 10, 40, "VIP", "VIP"), ("Lower North", 12, 45, "CAT1", "CAT2"),
            ("Lower South", 12, 45, "CAT1", "CAT2"), ("Upper", 10, 50, "CAT2", "CAT2"))
TIERS = (TierRow(code="VIP", name="Floor VIP", price=15_000, quantity=None),
         TierRow(code="CAT1", name="Category 1", price=8_500, quantity=None),
         TierRow(code="CAT2", name="Category 2", price=4_500, quantity=None))


def _seats() -> list[tuple[str, str, str, str]]:
    seats = []
    for name, rows, per_row, front_tier, back_tier in SECTIONS:
        for r in range(1, rows + 1):
            tier = front_tier if r <= 4 else back_tier
            seats += [(name, f"R{r}", str(n), tier) for n in range(1, per_row + 1)]
    return seats


def _password(settings: Settings) -> str:
    path = Path(settings.data_dir) / "demo-organizer-password"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(12)
    path.write_text(password + "\n")
    path.chmod(0o600)
    return password


async def _organizer(settings: Settings, pool: asyncpg.Pool) -> tuple[str, str]:
    from ticketing.accounts.passwords import Passwords

    password = _password(settings)
    existing = await pool.fetchval("SELECT id::text FROM users WHERE lower(email) = $1", DEMO_EMAIL)
    if existing is not None:
        return existing, password
    password_hash = await Passwords.from_settings(settings).hash(password)
    user_id = await pool.fetchval(
        "INSERT INTO users (email, password_hash, name, roles) VALUES ($1, $2, 'Demo Organizer', "
        "ARRAY['customer', 'organizer']) ON CONFLICT DO NOTHING RETURNING id::text", DEMO_EMAIL, password_hash)
    if user_id is None:  # a concurrent seeder won
        user_id = await pool.fetchval("SELECT id::text FROM users WHERE lower(email) = $1", DEMO_EMAIL)
    return user_id, password


async def seed_demo(settings: Settings, keyring: KeyRing, context: dict[str, Any]) -> list[str]:
    pool = await make_pool(settings)
    redis = make_redis(settings)
    try:
        scripts = LuaScripts(redis)
        await scripts.load_all()
        events = EventStore(pool)
        holds = HoldStore(RedisCalls.batched(redis, scripts), RedisKeys(settings.redis_key_prefix))
        inventory = Inventory(events, holds, settings)
        organizer_id, password = await _organizer(settings, pool)
        event_id = await pool.fetchval("SELECT id FROM events WHERE organizer_id = $1::uuid AND title = $2 "
                                       "ORDER BY id LIMIT 1", organizer_id, DEMO_TITLE)
        if event_id is None:
            seats = _seats()
            event_id = await events.create(NewEvent(
                organizer_id=organizer_id, status="on_sale", title=DEMO_TITLE,
                description="A demo on-sale: an arena with a floor, two lower stands and an upper tier.",
                category="concert", venue_name="Stagedoor Arena", venue_city="Demo City",
                venue_address="1 Loopback Avenue", starts_at=_in_days(30), ends_at=_in_days(30, hours=3),
                currency="EUR", max_tickets_per_order=6, hold_ttl_s=None, tiers=TIERS, seats=seats))
        await inventory.ensure_loaded(str(event_id))
        context["event_id"] = str(event_id)
        context["title"] = DEMO_TITLE  # the queue page names the sale
    finally:
        await redis.aclose()
        await pool.close()
    base = settings.url_of("ticketing")
    return [
        f"demo event: {base}/api/events/{event_id}  (seat map: {base}/api/events/{event_id}/seats)",
        f"demo organizer: {DEMO_EMAIL} / {password}",
    ]


def _in_days(days: int, hours: int = 0) -> datetime:
    start = datetime.now(UTC).replace(hour=19, minute=0, second=0, microsecond=0)
    return start + timedelta(days=days, hours=hours)
