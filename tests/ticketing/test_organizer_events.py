"""GET /api/organizer/events: an organizer's own events in every status, sold/free counts and
room; admins see everybody's; keyset pages; bounded, validated query."""

from __future__ import annotations

from typing import Any

from stagedoor.web import KEYS, REDIS
from tests.support.events import buy, hold_seats, seat_map


async def test_organizers_list_their_own_events_in_any_status_with_counts_and_room(
        shop: Any, make_event: Any, create_user: Any, admin_headers: Any) -> None:
    client = await shop()
    org, other = await create_user(roles=["organizer"]), await create_user(roles=["organizer"])
    on_sale = await make_event(client, organizer=org, seat_map=seat_map(rows=2, per_row=5, tiers=("A", "B")))
    draft = await make_event(client, organizer=org, draft=True, title="Draft night")
    ga = await make_event(client, organizer=org, seat_map=None,
                          tiers=[{"code": "GA", "name": "Floor", "price": 1000, "quantity": 7}])
    theirs = await make_event(client, organizer=other)
    fan = await create_user()
    hold = await hold_seats(client, fan, on_sale["id"], ["s1", "s2"])
    assert (await buy(client, fan, hold["hold_id"])).status == 201
    await client.app[REDIS].set(client.app[KEYS].event_room(on_sale["id"]), "big-room")

    resp = await client.get("/api/organizer/events", headers=org.headers)
    assert resp.status == 200, await resp.text()
    page = await resp.json()
    by_id = {e["id"]: e for e in page["items"]}
    assert list(by_id) == [ga["id"], draft["id"], on_sale["id"]]  # newest first, only theirs
    assert (by_id[on_sale["id"]]["capacity"], by_id[on_sale["id"]]["sold"], by_id[on_sale["id"]]["free"]) == (
        10, 2, 8)
    assert by_id[on_sale["id"]]["room"] == "big-room" and by_id[draft["id"]]["room"] is None
    assert by_id[draft["id"]]["status"] == "draft" and by_id[ga["id"]]["capacity"] == 7
    assert page["next_cursor"] is None

    resp = await client.get("/api/organizer/events", params={"status": "draft"}, headers=org.headers)
    assert [e["id"] for e in (await resp.json())["items"]] == [draft["id"]]
    # pages
    first = await (await client.get("/api/organizer/events", params={"limit": 2}, headers=org.headers)).json()
    assert len(first["items"]) == 2 and first["next_cursor"] == draft["id"]
    rest = await (await client.get("/api/organizer/events", params={"limit": 2, "cursor": first["next_cursor"]},
                                   headers=org.headers)).json()
    assert [e["id"] for e in rest["items"]] == [on_sale["id"]] and rest["next_cursor"] is None

    # admins: everybody's, or one organizer's
    everyone = await (await client.get("/api/organizer/events", params={"limit": 100},
                                       headers=admin_headers)).json()
    assert {ga["id"], draft["id"], on_sale["id"], theirs["id"]} <= {e["id"] for e in everyone["items"]}
    only = await (await client.get("/api/organizer/events", params={"organizer_id": other.id},
                                   headers=admin_headers)).json()
    assert [e["id"] for e in only["items"]] == [theirs["id"]]


async def test_organizer_events_refuse_strangers_and_bad_queries(shop: Any, create_user: Any) -> None:
    client = await shop()
    org, other = await create_user(roles=["organizer"]), await create_user(roles=["organizer"])
    fan = await create_user()
    assert (await client.get("/api/organizer/events")).status == 401
    assert (await client.get("/api/organizer/events", headers=fan.headers)).status == 403
    resp = await client.get("/api/organizer/events", params={"organizer_id": other.id}, headers=org.headers)
    assert resp.status == 403
    for params in ({"limit": "0"}, {"limit": "101"}, {"status": "gone"}, {"cursor": "-1"},
                   {"organizer_id": "x" * 300}, {"nope": "1"}):
        resp = await client.get("/api/organizer/events", params=params, headers=org.headers)
        assert resp.status == 422, (params, resp.status)
        assert resp.content_type == "application/problem+json"
