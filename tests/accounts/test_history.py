"""GET /api/users/me/orders and /me/tickets: a user's own bookings only, newest first, paginated."""

from __future__ import annotations

from typing import Any

import pytest

from tests.support.world import World, make_order, route_exists


@pytest.fixture
async def shop(service_client: Any, accounts_settings: Any, create_user: Any) -> World:
    client = await service_client("ticketing", accounts_settings())
    if not route_exists(client.app, "POST", "/api/holds/{hold_id}/purchase"):
        pytest.skip("purchases are not served by ticketing yet")
    users = {"customer": await create_user(), "owner_org": await create_user(roles=["organizer"]),
             "other_customer": await create_user()}
    return World(client=client, users=users, headers={k: u.headers for k, u in users.items()})


async def test_history_lists_only_my_orders_and_tickets_with_pagination(shop: World) -> None:
    made = [await make_order(shop) for _ in range(3)]
    client, mine = shop.client, shop.headers["customer"]
    resp = await client.get("/api/users/me/orders?limit=2", headers=mine)
    assert resp.status == 200
    page = await resp.json()
    assert [o["id"] for o in page["items"]] == [made[2]["order_id"], made[1]["order_id"]]
    assert page["items"][0]["tickets"] == 1 and page["items"][0]["event_title"]
    resp = await client.get("/api/users/me/orders", params={"limit": 2, "cursor": page["next_cursor"]}, headers=mine)
    rest = await resp.json()
    assert [o["id"] for o in rest["items"]] == [made[0]["order_id"]] and rest["next_cursor"] is None

    tickets = await (await client.get("/api/users/me/tickets", headers=mine)).json()
    assert sorted(t["id"] for t in tickets["items"]) == sorted(m["ticket_id"] for m in made)
    assert all(t["code"] for t in tickets["items"])

    other = shop.headers["other_customer"]
    assert (await (await client.get("/api/users/me/orders", headers=other)).json())["items"] == []
    assert (await (await client.get("/api/users/me/tickets", headers=other)).json())["items"] == []


async def test_history_rejects_bad_paging_input(shop: World) -> None:
    mine = shop.headers["customer"]
    for query in ("limit=0", "limit=201", "limit=x", "cursor=%%%", "cursor=bm90LWEtY3Vyc29y", "colour=red"):
        resp = await shop.client.get(f"/api/users/me/orders?{query}", headers=mine)
        assert resp.status == 422, (query, await resp.text())
