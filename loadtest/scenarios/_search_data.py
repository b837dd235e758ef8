"""A search catalog generated in one SQL statement (not a scenario itself): shared by the search
scenario (loadtest/scenarios/search.py) and the EXPLAIN test (tests/ticketing/test_search_plan.py).

``populate(conn, n)`` inserts one organizer, 600 venues in 60 cities and ``n`` events with one
INSERT ... SELECT generate_series (100,000 events in a few seconds), then ANALYZEs. Event ``g``:

- title ``"<WORD> <KIND> <g>"`` (WORDS[g % 16], KINDS[(g // 16) % 11]), empty description;
- category CATEGORIES[(g * 7) % 12]; venue ``g % 600`` in city ``"City <(g % 600) % 60>"``;
- starts on day ``(g * 7919) % 730`` after 2030-01-01 at hour ``g % 24``, ends 3 h later;
- price range from ``500 + ((g * 31) % 200) * 100`` to that plus ``(g % 5) * 1500``;
- status sold_out when ``g % 10 == 0`` (tickets_left 0), else draft / cancelled when
  ``g % 25`` is 1 / 2, else on_sale; tickets_left NULL when ``g % 7 == 0`` (the read model has
  not seen it), else ``(g * 13) % 400`` (so some on-sale events have 0 left).
"""

from __future__ import annotations

from typing import Any

WORDS = ("Jazz", "Rock", "Opera", "Ballet", "Comedy", "Folk", "Techno", "Blues", "Choir", "Circus", "Piano",
         "Strings", "Tango", "Salsa", "Poetry", "Magic")
KINDS = ("night", "matinee", "festival", "gala", "tour", "session", "evening", "live", "special", "marathon",
         "showcase")
CATEGORIES = ("concert", "theatre", "comedy", "sport", "dance", "family", "festival", "talk", "opera", "film",
              "exhibition", "workshop")
VENUES = 600
CITIES = 60


def _array(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join(f"'{v}'" for v in values) + "]"


GENERATE = f"""
WITH org AS (
    INSERT INTO users (email, password_hash, name, roles)
    VALUES ('search-org-' || gen_random_uuid() || '@example.test', 'x', 'Search organizer', ARRAY['organizer'])
    RETURNING id
), ven AS (
    INSERT INTO venues (name, city, address)
    SELECT 'Search venue ' || v || ' ' || gen_random_uuid(), 'City ' || (v % {CITIES}), ''
    FROM generate_series(0, {VENUES - 1}) v
    RETURNING id, city, name
), vens AS (SELECT id, city, (substring(name from '^Search venue (\\d+) '))::int AS k FROM ven)
INSERT INTO events (organizer_id, venue_id, status, title, description, category, city, starts_at, ends_at,
                    currency, max_tickets_per_order, seated, min_price, max_price, tickets_left)
SELECT (SELECT id FROM org), v.id,
       CASE WHEN g % 10 = 0 THEN 'sold_out' WHEN g % 25 = 1 THEN 'draft' WHEN g % 25 = 2 THEN 'cancelled'
            ELSE 'on_sale' END,
       ({_array(WORDS)})[1 + g % 16] || ' ' || ({_array(KINDS)})[1 + (g / 16) % 11] || ' ' || g,
       '',
       ({_array(CATEGORIES)})[1 + (g * 7) % 12],
       v.city,
       timestamptz '2030-01-01 00:00Z' + ((g * 7919) % 730) * interval '1 day' + (g % 24) * interval '1 hour',
       timestamptz '2030-01-01 03:00Z' + ((g * 7919) % 730) * interval '1 day' + (g % 24) * interval '1 hour',
       'EUR', 10, false,
       500 + ((g * 31) % 200) * 100,
       500 + ((g * 31) % 200) * 100 + (g % 5) * 1500,
       CASE WHEN g % 10 = 0 THEN 0 WHEN g % 7 = 0 THEN NULL ELSE (g * 13) % 400 END
FROM generate_series(1, $1::int) g JOIN vens v ON v.k = g % {VENUES}
"""


async def populate(conn: Any, n: int = 100_000) -> None:
    """``n`` events (see the module docstring) in one statement, then ANALYZE (fresh statistics)."""
    await conn.execute(GENERATE, n)
    await conn.execute("ANALYZE venues")
    await conn.execute("ANALYZE events")
