"""Catalog over HTTP: create (incl. 100,000 seats by COPY), validation, ownership, update,
cancel with an EventCancelled outbox row, search with filters and keyset pagination."""

from __future__ import annotations

import time
from typing import Any

from tests.support.events import event_body, seat_map

PROBLEM = "application/problem+json"


async def test_an_organizer_creates_an_event_on_sale_with_live_counts(service_client, create_user) -> None:
    client = await service_client("ticketing")
    org = await create_user(roles=["organizer"])
    resp = await client.post("/api/events", json=event_body(), headers=org.headers)
    assert resp.status == 201, await resp.text()
    event = await resp.json()
    assert event["id"].isdigit() and event["status"] == "on_sale" and event["organizer_id"] == org.id
    assert resp.headers["Location"] == f"/api/events/{event['id']}"
    assert {t["code"]: (t["capacity"], t["available"]) for t in event["tiers"]} == {"A": (50, 50), "B": (50, 50)}
    seats = (await (await client.get(f"/api/events/{event['id']}/seats")).json())["seats"]
    assert len(seats) == 100 and seats[0] == {"id": "s1", "section": "S1", "row": "R1", "number": "1", "tier": "A",
                                              "state": "free"}
    assert len({s["id"] for s in seats}) == 100


async def test_creating_an_event_with_100k_seats(service_client, create_user, db) -> None:
    client = await service_client("ticketing")
    org = await create_user(roles=["organizer"])
    body = event_body(seat_map=seat_map(sections=20, rows=50, per_row=100, tiers=("A", "B")))
    started = time.perf_counter()
    resp = await client.post("/api/events", json=body, headers=org.headers)
    elapsed = time.perf_counter() - started
    assert resp.status == 201, await resp.text()
    event = await resp.json()
    print(f"100,000-seat event created and loaded in {elapsed:.2f} s")
    assert elapsed < 20  # a loose guard only: the 5 s target is measured, not asserted, on shared cores
    assert await db.fetchval("SELECT count(*) FROM seats WHERE event_id = $1", int(event["id"])) == 100_000
    assert sum(t["available"] for t in event["tiers"]) == 100_000
    fan = await create_user()
    hold = await client.post(f"/api/events/{event['id']}/holds", json={"seats": ["s99999", "s100000"]},
                             headers=fan.headers)
    assert hold.status == 201


async def test_general_admission_events_have_quantities(service_client, create_user) -> None:
    client = await service_client("ticketing")
    org = await create_user(roles=["organizer"])
    body = event_body(seat_map=None, tiers=[{"code": "GA", "name": "Floor", "price": 1500, "quantity": 800},
                                            {"code": "VIP", "name": "VIP", "price": 9000, "quantity": 20}])
    event = await (await client.post("/api/events", json=body, headers=org.headers)).json()
    assert event["seated"] is False
    assert {t["code"]: t["available"] for t in event["tiers"]} == {"GA": 800, "VIP": 20}
    assert (await (await client.get(f"/api/events/{event['id']}/seats")).json())["seats"] == []


async def test_invalid_event_definitions_are_422_and_create_nothing(service_client, create_user, db) -> None:
    client = await service_client("ticketing")
    org = await create_user(roles=["organizer"])
    bad: list[dict[str, Any]] = [
        event_body(title=""),
        event_body(title="x" * 201),
        event_body(currency="euro"),
        event_body(starts_at="2030-06-01T19:00:00"),  # no time zone
        event_body(ends_at="2030-05-01T19:00:00Z"),  # before it starts
        event_body(max_tickets_per_order=0),
        event_body(max_tickets_per_order=51),
        event_body(hold_ttl_s=1),
        event_body(tiers=[]),
        event_body(tiers=[{"code": "A", "name": "x", "price": -1}]),
        event_body(tiers=[{"code": "A", "name": "x", "price": 1}, {"code": "A", "name": "y", "price": 2}],
                   seat_map=seat_map(tiers=("A",))),
        event_body(seat_map=seat_map(tiers=("Z",))),  # unknown tier
        event_body(seat_map=None),  # seated tiers without quantities and no seats
        event_body(tiers=[{"code": "A", "name": "x", "price": 1, "quantity": 5}], seat_map=seat_map(tiers=("A",))),
        event_body(seat_map={"sections": [{"name": "S", "rows": [
            {"label": "R", "seats": [{"number": "1", "tier": "A"}, {"number": "1", "tier": "A"}]}]}]}),
        event_body(seat_map={"sections": []}),
        event_body(unknown_field=1),
        event_body(organizer_id="not-a-uuid"),
    ]
    for body in bad:
        resp = await client.post("/api/events", json=body, headers=org.headers)
        assert resp.status == 422, (body.get("title"), await resp.text())
        assert resp.content_type == PROBLEM
    resp = await client.post("/api/events", data=b"{", headers={**org.headers, "Content-Type": "application/json"})
    assert resp.status == 400
    resp = await client.post("/api/events", data=b"x", headers={**org.headers, "Content-Type": "text/plain"})
    assert resp.status == 415
    assert await db.fetchval("SELECT count(*) FROM events") == 0


async def test_only_organizers_and_admins_create_and_only_owners_change(service_client, create_user,
                                                                        admin_headers) -> None:
    client = await service_client("ticketing")
    customer = await create_user()
    assert (await client.post("/api/events", json=event_body())).status == 401
    assert (await client.post("/api/events", json=event_body(), headers=customer.headers)).status == 403
    org, rival = await create_user(roles=["organizer"]), await create_user(roles=["organizer"])
    # the admin key must name the organizer
    assert (await client.post("/api/events", json=event_body(), headers=admin_headers)).status == 422
    event = await (await client.post("/api/events", json=event_body(organizer_id=org.id),
                                     headers=admin_headers)).json()
    assert event["organizer_id"] == org.id
    path = f"/api/events/{event['id']}"
    assert (await client.patch(path, json={"title": "Mine now"}, headers=rival.headers)).status == 403
    assert (await client.delete(path, headers=rival.headers)).status == 403
    resp = await client.patch(path, json={"title": "Renamed"}, headers=org.headers)
    assert resp.status == 200 and (await resp.json())["title"] == "Renamed"
    assert (await client.patch(path, json={"title": "By admin"}, headers=admin_headers)).status == 200


async def test_a_draft_goes_on_sale_by_patch_and_limits_apply_at_once(service_client, create_user) -> None:
    client = await service_client("ticketing")
    org, fan, stranger = await create_user(roles=["organizer"]), await create_user(), await create_user()
    event = await (await client.post("/api/events", json=event_body(draft=True), headers=org.headers)).json()
    path = f"/api/events/{event['id']}"
    assert event["status"] == "draft"
    assert (await client.get(path, headers=stranger.headers)).status == 404
    assert (await client.get(path, headers=org.headers)).status == 200
    resp = await client.patch(path, json={"status": "on_sale", "max_tickets_per_order": 2}, headers=org.headers)
    assert resp.status == 200 and (await resp.json())["status"] == "on_sale"
    over = await client.post(f"{path}/holds", json={"seats": ["s1", "s2", "s3"]}, headers=fan.headers)
    assert over.status == 422
    assert (await client.post(f"{path}/holds", json={"seats": ["s1", "s2"]}, headers=fan.headers)).status == 201
    back = await client.patch(path, json={"status": "draft"}, headers=org.headers)
    assert back.status == 422  # not a status PATCH accepts
    assert (await client.patch(path, json={"tiers": []}, headers=org.headers)).status == 422
    assert (await client.patch(path, json={"ends_at": "2000-01-01T00:00:00Z"}, headers=org.headers)).status == 422


async def test_cancelling_writes_event_cancelled_once_and_stops_holds(service_client, create_user, db) -> None:
    client = await service_client("ticketing")
    org, fan = await create_user(roles=["organizer"]), await create_user()
    event = await (await client.post("/api/events", json=event_body(), headers=org.headers)).json()
    path = f"/api/events/{event['id']}"
    resp = await client.delete(path, headers=org.headers)
    assert resp.status == 200 and (await resp.json())["status"] == "cancelled"
    assert (await client.delete(path, headers=org.headers)).status == 200
    rows = await db.fetch("SELECT aggregate_id, payload FROM outbox WHERE event_type = 'EventCancelled'")
    assert [r["aggregate_id"] for r in rows] == [event["id"]]
    assert (await client.post(f"{path}/holds", json={"seats": ["s1"]}, headers=fan.headers)).status == 409
    assert (await client.patch(path, json={"status": "on_sale"}, headers=org.headers)).status == 409
    assert all(t["available"] == 0 for t in (await (await client.get(path)).json())["tiers"])


async def test_search_filters_and_pages_with_a_keyset_cursor(service_client, create_user) -> None:
    client = await service_client("ticketing")
    org = await create_user(roles=["organizer"])
    for i in range(7):
        body = event_body(title=f"Jazz night {i}" if i % 2 else f"Rock show {i}",
                          category="jazz" if i % 2 else "rock",
                          venue={"name": "Hall", "city": "Lyon" if i < 4 else "Paris"},
                          starts_at=f"2030-07-{i + 1:02d}T20:00:00Z", ends_at=f"2030-07-{i + 1:02d}T23:00:00Z",
                          tiers=[{"code": "A", "name": "A", "price": 1000 * (i + 1)}], seat_map=seat_map(rows=1,
                                                                                                        per_row=2))
        assert (await client.post("/api/events", json=body, headers=org.headers)).status == 201
    draft = event_body(title="Secret jazz", draft=True)
    assert (await client.post("/api/events", json=draft, headers=org.headers)).status == 201

    async def search(**params: Any) -> dict[str, Any]:
        resp = await client.get("/api/events", params={k: str(v) for k, v in params.items()})
        assert resp.status == 200, await resp.text()
        return await resp.json()

    assert len((await search())["items"]) == 7  # drafts are not listed
    assert {e["title"] for e in (await search(q="jazz"))["items"]} == {"Jazz night 1", "Jazz night 3", "Jazz night 5"}
    assert len((await search(category="rock", city="lyon"))["items"]) == 2
    assert [e["min_price"] for e in (await search(min_price=3000, max_price=5000, sort="price"))["items"]] == [
        3000, 4000, 5000]
    assert len((await search(**{"from": "2030-07-03T00:00:00Z", "to": "2030-07-05T00:00:00Z"}))["items"]) == 2
    seen: list[str] = []
    cursor = None
    for _ in range(10):
        page = await search(limit=3, sort="-starts_at", **({"cursor": cursor} if cursor else {}))
        seen += [e["starts_at"] for e in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 7
    for params in ({"limit": "0"}, {"limit": "101"}, {"cursor": "garbage"}, {"sort": "title"},
                   {"min_price": "-1"}, {"from": "yesterday"}):
        resp = await client.get("/api/events", params=params)
        assert resp.status == 422, params
    other_sort = (await search(limit=1))["next_cursor"]
    assert (await client.get("/api/events", params={"cursor": other_sort, "sort": "price"})).status == 422


async def test_unknown_and_malformed_event_ids_are_404(service_client) -> None:
    client = await service_client("ticketing")
    for raw in ("0", "-1", "abc", "99999", "1" * 25, "1e3"):
        assert (await client.get(f"/api/events/{raw}")).status == 404, raw
        assert (await client.get(f"/api/events/{raw}/seats")).status == 404, raw
