"""The defences through the real services: a room created with the admin API (admission), then
fans hitting the waiting room: proof of work on join, join bursts, cross-site joins, the queue page."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stagedoor.pow import solve
from stagedoor.settings import Settings
from tests.support.abuse import assert_html_hardened, wrong_nonce


async def _room(admission: Any, admin_headers: dict[str, str], room: str, **config: Any) -> None:
    resp = await admission.put(f"/admin/rooms/{room}", json=config, headers=admin_headers)
    assert resp.status in (200, 201), await resp.text()


async def _fresh_join(client: Any, room: str, body: dict[str, Any] | None = None,
                      headers: dict[str, str] | None = None) -> Any:
    client.session.cookie_jar.clear()  # a new fan: no queue cookie
    return await client.post(f"/api/rooms/{room}/join", json=body or {}, headers=headers)


async def _challenge(client: Any, room: str) -> dict[str, Any]:
    resp = await client.get(f"/api/rooms/{room}/pow")
    assert resp.status == 200, await resp.text()
    ch = await resp.json()
    return {"challenge": ch["challenge"], "nonce": solve(ch["challenge"], ch["difficulty"])}


async def test_proof_of_work_on_join(service_client: Any, make_settings: Callable[..., Settings],
                                     admin_headers: dict[str, str]) -> None:
    settings = make_settings(rate_limits_enabled=False)
    admission, wr = await service_client("admission", settings), await service_client("waitingroom", settings)
    await _room(admission, admin_headers, "pow-a", pow_difficulty=8)
    await _room(admission, admin_headers, "pow-b", pow_difficulty=8)

    async def refused(room: str, body: dict[str, Any]) -> str:
        resp = await _fresh_join(wr, room, body)
        assert resp.status == 403, await resp.text()
        return (await resp.json())["type"]

    assert await refused("pow-a", {}) == "/problems/pow-required"
    sol = await _challenge(wr, "pow-a")
    assert await refused("pow-a", {"pow": {**sol, "nonce": wrong_nonce(sol["challenge"])}}) == "/problems/pow-invalid"
    assert await refused("pow-b", {"pow": sol}) == "/problems/pow-wrong-room"
    accepted = await _fresh_join(wr, "pow-a", {"pow": sol})
    assert accepted.status == 201, await accepted.text()
    assert await refused("pow-a", {"pow": sol}) == "/problems/pow-replayed"
    other = await _challenge(wr, "pow-b")
    assert (await _fresh_join(wr, "pow-b", {"pow": other})).status == 201


async def test_a_join_burst_gets_429_with_retry_after(service_client: Any, make_settings: Callable[..., Settings],
                                                      admin_headers: dict[str, str]) -> None:
    settings = make_settings(rate_limit_join_per_ip="3/60s")
    admission, wr = await service_client("admission", settings), await service_client("waitingroom", settings)
    await _room(admission, admin_headers, "burst")
    responses = [await _fresh_join(wr, "burst") for _ in range(5)]
    assert [r.status for r in responses] == [201, 201, 201, 429, 429]
    assert responses[-1].headers["Retry-After"] == "20"
    assert (await responses[-1].json())["type"] == "/problems/rate-limited"


async def test_a_cross_site_join_riding_the_queue_cookie_is_refused(
        service_client: Any, make_settings: Callable[..., Settings], admin_headers: dict[str, str]) -> None:
    settings = make_settings(rate_limits_enabled=False)
    admission, wr = await service_client("admission", settings), await service_client("waitingroom", settings)
    await _room(admission, admin_headers, "csrf")
    first = await _fresh_join(wr, "csrf")
    assert first.status == 201
    cross = await wr.post("/api/rooms/csrf/join", json={}, headers={"Origin": "https://evil.example"})
    assert cross.status == 403 and (await cross.json())["type"] == "/problems/csrf-refused"
    form = await wr.post("/rooms/csrf", data={}, headers={"Origin": "https://evil.example"}, allow_redirects=False)
    assert form.status == 403  # the no-JS join form too
    own = f"http://{wr.server.host}:{wr.server.port}"
    again = await wr.post("/api/rooms/csrf/join", json={}, headers={"Origin": own})
    assert again.status == 200  # same place, same origin


async def test_the_queue_page_is_hardened(service_client: Any, make_settings: Callable[..., Settings],
                                          admin_headers: dict[str, str]) -> None:
    settings = make_settings(rate_limits_enabled=False)
    admission, wr = await service_client("admission", settings), await service_client("waitingroom", settings)
    await _room(admission, admin_headers, "page")
    resp = await wr.get("/rooms/page", headers={"Accept": "text/html"})
    await resp.read()
    assert resp.content_type == "text/html"
    assert_html_hardened(resp.headers, "/rooms/page")
    missing = await wr.get("/rooms/no-such-room", headers={"Accept": "text/html"})
    await missing.read()
    if missing.content_type == "text/html":
        assert_html_hardened(missing.headers, "/rooms/no-such-room")
    else:
        assert missing.headers["Content-Security-Policy"] == "default-src 'none'; frame-ancestors 'none'"
    await _fresh_join(wr, "page")
    resp = await wr.get("/rooms/page", headers={"Accept": "text/html"})
    assert resp.content_type == "text/html"
    assert_html_hardened(resp.headers, "/rooms/page with a queue cookie")


async def test_status_polls_and_stream_connects_share_the_status_limit(
        service_client: Any, make_settings: Callable[..., Settings], admin_headers: dict[str, str]) -> None:
    settings = make_settings(rate_limit_status_per_subject="3/60s")
    admission, wr = await service_client("admission", settings), await service_client("waitingroom", settings)
    await _room(admission, admin_headers, "polls")
    joined = await _fresh_join(wr, "polls")
    token = (await joined.json())["queue_token"]
    bearer = {"Authorization": f"Bearer {token}"}
    assert (await wr.get("/api/rooms/polls/status", headers=bearer)).status == 200
    assert (await wr.get("/api/rooms/polls/status", headers=bearer)).status == 200
    stream = await wr.get("/api/rooms/polls/events", headers=bearer)
    assert stream.status == 200
    stream.close()
    refused = await wr.get("/api/rooms/polls/events", headers=bearer)
    assert refused.status == 429 and refused.headers["Retry-After"] == "20"
    assert (await wr.get("/api/rooms/polls/status", headers=bearer)).status == 429


async def test_a_search_flood_from_one_address_gets_429(service_client: Any,
                                                        make_settings: Callable[..., Settings]) -> None:
    shop = await service_client("ticketing", make_settings(rate_limit_search_per_ip="4/60s"))
    statuses = [(await shop.get("/api/events", params={"q": "x"})).status for _ in range(6)]
    assert statuses == [200] * 4 + [429] * 2
