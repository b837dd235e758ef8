"""The policy table walked against the handlers, over HTTP (real Redis and PostgreSQL).

Every action of ``stagedoor.policy`` has a probe: one endpoint that performs it on a resource of
known ownership (an event of the organizer ``org``; a hold, an order and a ticket of the customer
``cust``; a room of ``org``'s event). Every caller kind is sent to every probe: users with each
role (owner or not of the resource), the admin key, and API clients of each owner with each scope
(plus ownerless clients). The expected answer of each cell is read from the table itself:

- the table never lets the caller do the action (``can_ever`` false): 403 before any lookup;
- it lets the caller do it to some things but not to this one: the probe's "hidden" answer
  (404 where telling "not yours" from "missing" would leak, 403/409 where the thing is public or
  its id unguessable, as docs/security.md lists);
- it lets the caller do it to this one: one of the probe's success answers.

A handler that decides anything itself (a role test, a scope ignored, a lookup before the
check) shows up as a mismatching cell; all mismatches are reported at once.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from stagedoor.auth import ACCESS_AUDIENCE, ADMIN_KEY_PRINCIPAL, Principal
from stagedoor.keys import KeyRing
from stagedoor.policy import POLICY, SCOPES, Action, Resource, can_ever, is_allowed
from tests.support.accounts import FAST_ACCOUNTS
from tests.support.authz import client_headers
from tests.support.events import buy, event_body, hold_seats
from tests.support.rooms import iso
from ticketing.accounts.oauth import CLIENT_SCOPES

Ids = dict[str, str]
Answer = tuple[int, str | None]  # status, problem type (None: not a problem answer)
FORBIDDEN = frozenset({(403, "/problems/forbidden"), (403, "/problems/not-a-user-account")})


@dataclass(frozen=True)
class Probe:
    action: Action
    method: str
    path: str                                   # a format string over the walk's ids
    ok: frozenset[Answer]                       # answers that mean "allowed" (later calls may find it done)
    hidden: Answer                              # the answer to a caller refused for this resource
    resource: Callable[[Ids], Resource]
    service: str = "ticketing"
    body: Callable[[Ids, int], Any] | None = None   # (ids, caller number) -> JSON body
    gated: bool = True       # callers who may never do the action get 403 before any lookup


def _of_event(ids: Ids) -> Resource:
    return Resource(organizer_id=ids["org"])


def _of_customer(ids: Ids) -> Resource:
    return Resource(owner_id=ids["cust"], organizer_id=ids["org"])


OK = (200, None)
PROBES = [
    Probe(Action.EVENT_CREATE, "POST", "/api/events", frozenset({(201, None)}), (403, "/problems/not-event-owner"),
          _of_event, body=lambda ids, n: event_body(organizer_id=ids["org"], title=f"walk {n}")),
    Probe(Action.EVENT_READ, "GET", "/api/events/{draft}", frozenset({OK}), (404, "/problems/event-not-found"),
          _of_event, gated=False),  # public endpoint: a draft is simply not there for others
    Probe(Action.EVENT_UPDATE, "PATCH", "/api/events/{event}", frozenset({OK}), (403, "/problems/not-event-owner"),
          _of_event, body=lambda ids, n: {"description": f"walked {n}"}),
    Probe(Action.EVENT_CANCEL, "DELETE", "/api/events/{cancel_event}", frozenset({OK}),
          (403, "/problems/not-event-owner"), _of_event),
    Probe(Action.ROOM_MANAGE, "GET", "/admin/rooms/{room}", frozenset({OK}), (404, "/problems/room-not-found"),
          _of_event, service="admission"),
    Probe(Action.ROOM_LIST, "GET", "/admin/rooms", frozenset({OK}), (403, "/problems/forbidden"),
          lambda ids: Resource(), service="admission"),
    Probe(Action.CHECKIN, "POST", "/api/checkin", frozenset({OK, (409, "/problems/already-checked-in")}),
          (404, "/problems/ticket-not-found"), _of_event, body=lambda ids, n: {"code": ids["code"]}),
    Probe(Action.SALES_READ, "GET", "/api/events/{event}/sales", frozenset({OK}), (403, "/problems/forbidden"),
          _of_event),
    Probe(Action.HOLD_CREATE, "POST", "/api/events/{event}/holds",
          frozenset({(201, None), (409, "/problems/active-hold-exists")}), (403, "/problems/forbidden"),
          lambda ids: Resource(), body=lambda ids, n: {"seats": [f"s{20 + n}"]}),
    Probe(Action.HOLD_READ, "GET", "/api/holds/{hold}", frozenset({OK}), (409, "/problems/hold-not-yours"),
          _of_customer),
    Probe(Action.HOLD_RELEASE, "DELETE", "/api/holds/{release_hold}",
          frozenset({(204, None), (410, "/problems/hold-released")}), (409, "/problems/hold-not-yours"), _of_customer),
    Probe(Action.PURCHASE, "POST", "/api/holds/{buy_hold}/purchase", frozenset({(201, None)}),
          (409, "/problems/hold-not-yours"), _of_customer,
          body=lambda ids, n: {"payment": {"method": "card", "token": "tok_ok"}, "email": "walk@example.test"}),
    Probe(Action.ORDER_READ, "GET", "/api/orders/{order}", frozenset({OK}), (404, "/problems/order-not-found"),
          _of_customer),
    Probe(Action.TICKET_READ, "GET", "/api/tickets/{ticket}/qr.svg", frozenset({OK}),
          (404, "/problems/ticket-not-found"), _of_customer),
    Probe(Action.PROFILE_READ, "GET", "/api/users/me", frozenset({OK}), (403, "/problems/forbidden"),
          lambda ids: Resource()),
    Probe(Action.USER_READ, "GET", "/api/users/{cust}", frozenset({OK}), (403, "/problems/forbidden"),
          lambda ids: Resource()),
    Probe(Action.USER_MANAGE, "PATCH", "/api/users/{bystander}", frozenset({OK}), (403, "/problems/forbidden"),
          lambda ids: Resource(), body=lambda ids, n: {"name": f"Walked {n}"}),
    Probe(Action.CLIENT_MANAGE, "GET", "/api/clients/{client}", frozenset({OK}), (403, "/problems/forbidden"),
          lambda ids: Resource()),
]


def test_every_action_of_the_table_has_a_probe() -> None:
    assert sorted(p.action for p in PROBES) == sorted(Action)


def test_the_scopes_a_client_may_be_registered_with_are_the_tables() -> None:
    assert set(CLIENT_SCOPES) == set(SCOPES)
    assert {rule.scope for rule in POLICY.values()} - {None} == set(SCOPES) - {"admin"}


def _principal_of(keyring: KeyRing, headers: dict[str, str]) -> Principal:
    """The principal the services make of these headers (the claims of the access token)."""
    claims = keyring.verify(headers["Authorization"].removeprefix("Bearer "), ACCESS_AUDIENCE)
    return Principal(kind=claims.get("kind", "user"), id=str(claims["sub"]), roles=frozenset(claims.get("roles", ())),
                     scopes=frozenset(str(claims.get("scope", "")).split()), on_behalf_of=claims.get("obo"))


def _expected(probe: Probe, principal: Principal, ids: Ids) -> frozenset[Answer]:
    if probe.gated and not can_ever(principal, probe.action):
        return FORBIDDEN
    if not is_allowed(principal, probe.action, probe.resource(ids)):
        return frozenset({probe.hidden})
    return probe.ok


async def _answer(resp: Any) -> Answer:
    if resp.content_type == "application/problem+json":
        return resp.status, (await resp.json()).get("type")
    await resp.read()
    return resp.status, None


async def _world(shop: Any, adm: Any, create_user: Callable[..., Any], admin_headers: dict[str, str]
                 ) -> tuple[Ids, dict[str, dict[str, str]]]:
    users = {
        "cust": await create_user(roles=["customer"]),
        "other_cust": await create_user(roles=["customer"]),
        "org": await create_user(roles=["organizer"]),
        "other_org": await create_user(roles=["organizer"]),
        "admin": await create_user(roles=["admin"]),
    }
    bystander = await create_user(roles=["customer"])
    org, cust = users["org"], users["cust"]

    async def event(**overrides: Any) -> str:
        resp = await shop.post("/api/events", json=event_body(**overrides), headers=org.headers)
        assert resp.status == 201, await resp.text()
        return str((await resp.json())["id"])

    ids: Ids = {"cust": cust.id, "org": org.id, "bystander": bystander.id}
    ids["event"], ids["draft"], ids["cancel_event"] = await event(), await event(draft=True), await event()
    release_event, buy_event, room_event = await event(), await event(), await event()
    sold = await hold_seats(shop, cust, ids["event"], ["s1"])
    order = await (await buy(shop, cust, sold["hold_id"], key=uuid.uuid4().hex)).json()
    ids["order"], ids["ticket"], ids["code"] = order["order_id"], order["tickets"][0]["id"], order["tickets"][0]["code"]
    ids["hold"] = (await hold_seats(shop, cust, ids["event"], ["s2"]))["hold_id"]
    ids["release_hold"] = (await hold_seats(shop, cust, release_event, ["s1"]))["hold_id"]
    ids["buy_hold"] = (await hold_seats(shop, cust, buy_event, ["s1"]))["hold_id"]
    ids["room"] = f"w{uuid.uuid4().hex[:10]}"
    room = {"event_id": room_event, "mode": "fifo", "opens_at": iso(-60), "starts_at": iso(-30), "rate_per_s": 5,
            "max_active": 100, "session_ttl_s": 300, "abandon_after_s": 0, "shop_url": "https://shop.example/"}
    assert (await adm.put(f"/admin/rooms/{ids['room']}", json=room, headers=org.headers)).status == 201

    callers: dict[str, dict[str, str]] = {name: user.headers for name, user in users.items()}
    callers["admin key"] = admin_headers
    for owner in ("cust", "org", "other_org", "admin"):
        for scope in SCOPES:
            callers[f"{owner}'s client [{scope}]"] = await client_headers(shop, users[owner].id, [scope])
    callers["ownerless client [admin]"] = await client_headers(shop, None, ["admin"])
    callers["ownerless client [checkin]"] = await client_headers(shop, None, ["checkin"])
    target = await shop.post("/api/clients", json={"name": "walk target", "scopes": ["checkin"]},
                             headers=admin_headers)
    assert target.status == 201, await target.text()
    ids["client"] = (await target.json())["client_id"]
    return ids, callers


async def test_every_action_x_role_x_scope_answers_as_the_table_says(
        service_client: Any, make_settings: Any, create_user: Any, admin_headers: dict[str, str],
        keyring: KeyRing) -> None:
    settings = make_settings(**FAST_ACCOUNTS)
    shop, adm = await service_client("ticketing", settings), await service_client("admission", settings)
    ids, callers = await _world(shop, adm, create_user, admin_headers)
    services = {"ticketing": shop, "admission": adm}
    mismatches: list[str] = []
    tally = {"allowed": 0, "hidden": 0, "refused before lookup": 0}
    for probe in PROBES:
        for n, (name, headers) in enumerate(callers.items()):
            principal = ADMIN_KEY_PRINCIPAL if name == "admin key" else _principal_of(keyring, headers)
            expected = _expected(probe, principal, ids)
            kwargs: dict[str, Any] = {"headers": {**headers, "Idempotency-Key": uuid.uuid4().hex}}
            if probe.body is not None:
                kwargs["json"] = probe.body(ids, n)
            resp = await services[probe.service].request(probe.method, probe.path.format(**ids), **kwargs)
            got = await _answer(resp)
            if got not in expected:
                mismatches.append(f"{probe.action.value} {probe.method} {probe.path} as {name}: got {got}, "
                                  f"want one of {sorted(expected, key=str)}")
            tally["refused before lookup" if expected is FORBIDDEN else
                  "hidden" if expected == {probe.hidden} else "allowed"] += 1
    assert not mismatches, f"{len(mismatches)} cells disagree with the policy table:\n  " + "\n  ".join(mismatches)
    # the walk covered every kind of cell (a table that allowed or refused everything would not pass)
    assert min(tally.values()) >= 15, tally
