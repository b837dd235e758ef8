"""Check-in: a code is accepted once (atomic under concurrent scans), forged or unknown -> 404,
only the event's organizer or an admin may scan; ticket codes verify offline; QR as SVG."""

from __future__ import annotations

import asyncio
import uuid

import jwt

from tests.support.events import buy, hold_seats
from ticketing.tickets.codes import TICKET_AUDIENCE, sign_ticket_code, verify_ticket_code


async def _bought(client, make_event, create_user, seats=("s1", "s2")):
    event = await make_event(client)
    fan = await create_user()
    hold = await hold_seats(client, fan, event["id"], list(seats))
    resp = await buy(client, fan, hold["hold_id"])
    assert resp.status == 201, await resp.text()
    return event, fan, await resp.json()


async def test_a_ticket_checks_in_once_then_409(shop, make_event, create_user) -> None:
    client = await shop()
    event, _fan, order = await _bought(client, make_event, create_user)
    organizer = event["_organizer"]
    code = order["tickets"][0]["code"]
    first = await client.post("/api/checkin", json={"code": code}, headers=organizer.headers)
    assert first.status == 200, await first.text()
    body = await first.json()
    assert body["ticket_id"] == order["tickets"][0]["id"] and body["event_id"] == event["id"]
    second = await client.post("/api/checkin", json={"code": code}, headers=organizer.headers)
    assert second.status == 409 and (await second.json())["type"] == "/problems/already-checked-in"
    # the other ticket of the order is still good
    other = await client.post("/api/checkin", json={"code": order["tickets"][1]["code"]}, headers=organizer.headers)
    assert other.status == 200


async def test_concurrent_scans_of_one_ticket_admit_exactly_one(shop, make_event, create_user,
                                                                admin_headers) -> None:
    client = await shop()
    _event, _fan, order = await _bought(client, make_event, create_user)
    code = order["tickets"][0]["code"]
    responses = await asyncio.gather(*(client.post("/api/checkin", json={"code": code}, headers=admin_headers)
                                       for _ in range(10)))
    assert sorted(r.status for r in responses) == [200] + [409] * 9


async def test_forged_and_unknown_codes_are_404(shop, make_event, create_user, keyring) -> None:
    client = await shop()
    event, _fan, order = await _bought(client, make_event, create_user)
    organizer = event["_organizer"]
    code = order["tickets"][0]["code"]
    head, payload, sig = code.split(".")
    tampered_sig = head + "." + payload + "." + ("A" if sig[0] != "A" else "B") + sig[1:]
    forged_payload = jwt.encode({"aud": TICKET_AUDIENCE, "sub": str(uuid.uuid4()), "eid": event["id"],
                                 "exp": 4_000_000_000}, "s" * 32, algorithm="HS256")
    unknown = sign_ticket_code(keyring, str(uuid.uuid4()), event["id"], 4_000_000_000)  # genuine but never sold
    for bad in (tampered_sig, forged_payload, unknown, "garbage", "a.b.c"):
        resp = await client.post("/api/checkin", json={"code": bad}, headers=organizer.headers)
        assert resp.status == 404, bad
        assert (await resp.json())["type"] == "/problems/ticket-not-found"
    assert (await client.post("/api/checkin", json={"code": ""}, headers=organizer.headers)).status == 422
    assert (await client.post("/api/checkin", json={"code": code, "x": 1}, headers=organizer.headers)).status == 422


async def test_only_the_events_organizer_or_an_admin_may_check_in(shop, make_event, create_user) -> None:
    client = await shop()
    _event, fan, order = await _bought(client, make_event, create_user)
    code = order["tickets"][0]["code"]
    assert (await client.post("/api/checkin", json={"code": code}, headers=fan.headers)).status == 403
    stranger = await create_user(roles=["organizer"])  # another event's organizer: as if the code were forged
    assert (await client.post("/api/checkin", json={"code": code}, headers=stranger.headers)).status == 404
    assert (await client.post("/api/checkin", json={"code": code})).status == 401


def test_ticket_codes_verify_offline_with_the_public_key_only(keyring) -> None:
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    ticket_id = str(uuid.uuid4())
    code = sign_ticket_code(keyring, ticket_id, "42", 4_000_000_000)
    jwk = keyring.jwks()["keys"][0]
    public = jwt.PyJWK(jwk).key
    assert isinstance(public, Ed25519PublicKey)
    claims = jwt.decode(code, public, algorithms=["EdDSA"], audience=TICKET_AUDIENCE)
    assert claims["sub"] == ticket_id and claims["eid"] == "42"
    assert verify_ticket_code(keyring, code) is not None
    assert verify_ticket_code(keyring, code + "x") is None


async def test_the_ticket_qr_is_an_svg_for_its_owner(shop, make_event, create_user) -> None:
    client = await shop()
    _event, fan, order = await _bought(client, make_event, create_user)
    ticket = order["tickets"][0]
    resp = await client.get(f"/api/tickets/{ticket['id']}/qr.svg", headers=fan.headers)
    assert resp.status == 200 and resp.content_type == "image/svg+xml"
    svg = await resp.text()
    assert "<svg" in svg and "</svg>" in svg
    stranger = await create_user()
    assert (await client.get(f"/api/tickets/{ticket['id']}/qr.svg", headers=stranger.headers)).status == 404
    assert (await client.get("/api/tickets/not-a-uuid/qr.svg", headers=fan.headers)).status == 404
    assert (await client.get(f"/api/tickets/{uuid.uuid4()}/qr.svg", headers=fan.headers)).status == 404
