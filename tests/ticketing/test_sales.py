"""Live sales for the organizer: sold and revenue from the dashboard counters (kept by the
worker's ``dashboard`` bus group: ``count_sales`` runs its relay and consumer once), held and free
from Redis."""

from __future__ import annotations

from tests.support.bus import count_sales
from tests.support.events import buy, hold_seats


async def test_sales_show_sold_held_free_revenue_and_orders_over_time(shop, make_event, create_user) -> None:
    client = await shop()
    event = await make_event(client)  # 100 seats: 50 A at 5000, 50 B at 3000
    buyer, holder = await create_user(), await create_user()
    hold = await hold_seats(client, buyer, event["id"], ["s1", "s11"])
    assert (await buy(client, buyer, hold["hold_id"])).status == 201
    await hold_seats(client, holder, event["id"], ["s2", "s3", "s4"])
    assert await count_sales(client.server.app) == 1
    resp = await client.get(f"/api/events/{event['id']}/sales", headers=event["_organizer"].headers)
    assert resp.status == 200, await resp.text()
    sales = await resp.json()
    assert sales["sold"] == 2 and sales["held"] == 3 and sales["free"] == 95
    assert sales["revenue"] == 8000 and sales["orders"] == 1 and sales["currency"] == "EUR"
    assert {t["tier"]: (t["sold"], t["held"], t["free"]) for t in sales["tiers"]} == {"A": (1, 3, 46),
                                                                                   "B": (1, 0, 49)}
    assert [p["orders"] for p in sales["orders_over_time"]] == [1]
    assert [(p["tickets"], p["revenue"]) for p in sales["orders_over_time"]] == [(2, 8000)]
    assert sales["funnel"] == {"orders": 1, "tickets": 2, "revenue": 8000, "refunds": 0, "refunded_tickets": 0,
                               "refunded_amount": 0, "payment_failures": 0, "holds_expired": 0, "checkins": 0}
    assert sales["counters_as_of"] is not None and 0 <= sales["counters_lag_seconds"] < 60
    hourly = await client.get(f"/api/events/{event['id']}/sales?bucket=hour&buckets=24",
                              headers=event["_organizer"].headers)
    assert hourly.status == 200
    assert [(p["orders"], p["revenue"]) for p in (await hourly.json())["orders_over_time"]] == [(1, 8000)]


async def test_sales_are_for_the_organizer_and_admins_only(shop, make_event, create_user, admin_headers) -> None:
    client = await shop()
    event = await make_event(client)
    fan, other = await create_user(), await create_user(roles=["organizer"])
    url = f"/api/events/{event['id']}/sales"
    assert (await client.get(url, headers=fan.headers)).status == 403
    assert (await client.get(url, headers=other.headers)).status == 403
    assert (await client.get(url, headers=admin_headers)).status == 200
    assert (await client.get(url)).status == 401
    assert (await client.get("/api/events/999999/sales", headers=admin_headers)).status == 404
    assert (await client.get(url + "?bucket=week", headers=admin_headers)).status == 422
    assert (await client.get(url + "?buckets=0", headers=admin_headers)).status == 422
