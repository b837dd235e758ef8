"""Browser-test helpers: the started services' URLs with API calls for seeding (``Stack``), and a
signed-in session put in the page's sessionStorage before it loads (``signed_in_script``)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp


class Stack:
    """The three services on 127.0.0.1, plus API helpers for seeding."""

    def __init__(self, urls: dict[str, str], admin_headers: dict[str, str]) -> None:
        self.urls = urls
        self.admin_headers = admin_headers
        self.http = aiohttp.ClientSession()

    @property
    def shop(self) -> str:
        return self.urls["ticketing"]

    @property
    def queue(self) -> str:
        return self.urls["waitingroom"]

    @property
    def admission(self) -> str:
        return self.urls["admission"]

    async def call(self, method: str, url: str, *, expect: int | tuple[int, ...] = (200, 201),
                   **kwargs: Any) -> Any:
        async with self.http.request(method, url, **kwargs) as res:
            body = await res.json(content_type=None) if res.status != 204 else None
            expected = (expect,) if isinstance(expect, int) else expect
            assert res.status in expected, f"{method} {url} -> {res.status} {body}"
            return body

    async def create_event(self, organizer_headers: dict[str, str], *, title: str = "Browser Test Night",
                           sections: int = 1, rows: int = 2, seats: int = 6, per_order: int = 4) -> dict[str, Any]:
        starts = datetime.now(UTC) + timedelta(days=30)
        seat_map = {"sections": [
            {"name": f"S{s + 1}", "rows": [
                {"label": chr(ord("A") + r), "seats": [
                    {"number": str(n + 1), "tier": "front" if r == 0 else "back"} for n in range(seats)]}
                for r in range(rows)]}
            for s in range(sections)]}
        body = {
            "title": title, "description": "A test event", "category": "concert",
            "venue": {"name": "Hall", "city": "Lyon", "address": "1 rue de la Paix"},
            "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=3)).isoformat(),
            "currency": "EUR", "max_tickets_per_order": per_order,
            "tiers": [{"code": "front", "name": "Front", "price": 8000},
                      {"code": "back", "name": "Back", "price": 4500}],
            "seat_map": seat_map,
        }
        return await self.call("POST", f"{self.shop}/api/events", json=body, headers=organizer_headers, expect=201)

    async def put_room(self, room: str, **config: Any) -> dict[str, Any]:
        return await self.call("PUT", f"{self.admission}/admin/rooms/{room}", json=config,
                               headers=self.admin_headers)

    async def close(self) -> None:
        await self.http.close()


def signed_in_script(token: str, user: dict[str, Any]) -> str:
    """An init script that puts a signed-in session in sessionStorage on every origin."""
    return (f"try {{ sessionStorage.setItem('sd_access_token', {json.dumps(token)});"
            f" sessionStorage.setItem('sd_user', {json.dumps(json.dumps(user))}); }} catch (e) {{}}")
