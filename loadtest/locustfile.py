"""A Locust on-sale against a running stagedoor stack (loopback only), headless and bounded:

    .venv/bin/locust -f loadtest/locustfile.py --headless -u 200 -r 50 -t 60s \\
        --stagedoor-admin-key "$STAGEDOOR_ADMIN_API_KEY"

At the start (``test_start``) it creates, with the admin API key, an event (``--stagedoor-seats``
seats) and a fifo room for it whose sale starts ``--stagedoor-pre-start-s`` seconds later, with
proof of work (``--stagedoor-pow``) and a rate (``--stagedoor-rate``). Then:

- ``Fan`` (most users): registers and signs in, solves the proof of work, joins (before or after
  ``starts_at``, depending on when Locust spawns it), follows its status by polling every 2 s as
  the queue page does without SSE, and once admitted reads the seat map, holds 1-4 free seats and
  pays (mostly ``tok_ok``, some ``tok_declined``, then another card or nothing); some abandon at the
  seat map or after holding. A fan that bought, gave up or was told "sold out" stops.
- ``Bot``: hammers join without proof of work and hold without an admission token; a 403 or 429 is
  the expected answer (a 2xx counts as a failure: the defence let it through).
- ``Organizer`` (one): watches the event's sales and the room's stats.
- ``Sre`` (one): raises the room's admission rate mid-sale through the admin API.

On exit it prints one line ``stagedoor-locust-summary {json}`` (tickets bought, fan outcomes,
5xx answers, bots refused, rate changes) beside Locust's own tables. Registration is rate limited
per address: run against a stack that exempts the load generator
(``STAGEDOOR_RATE_LIMIT_EXEMPT_IPS=127.0.0.1``), or fans stop registering after 30.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import time
import uuid
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

from locust import FastHttpUser, between, constant, events, task
from locust.exception import StopUser

if str(Path(__file__).resolve().parent.parent) not in sys.path:  # locust puts only loadtest/ on the path
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from loadtest.flashsale import pick_seats
from loadtest.scenario import check_loopback_url
from stagedoor import pow as pow_

POLL_S = 2.0  # templates/static/queue.js POLL_MS

_lock = threading.Lock()
SALE: dict[str, Any] = {}
COUNTS: Counter[str] = Counter()
OUTCOMES: Counter[str] = Counter()


def _count(name: str, n: int = 1, outcomes: bool = False) -> None:
    with _lock:
        (OUTCOMES if outcomes else COUNTS)[name] += n


def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@events.init_command_line_parser.add_listener
def _options(parser: Any) -> None:
    group = parser.add_argument_group("stagedoor")
    for service, port in (("waitingroom", 8080), ("ticketing", 8081), ("admission", 8082)):
        group.add_argument(f"--stagedoor-{service}", default=f"http://127.0.0.1:{port}",
                           env_var=f"LOCUST_STAGEDOOR_{service.upper()}", help=f"base URL of the {service} service")
    group.add_argument("--stagedoor-admin-key", default="", env_var="LOCUST_STAGEDOOR_ADMIN_KEY",
                       help="the stack's STAGEDOOR_ADMIN_API_KEY (creates the event and room, raises the rate)")
    group.add_argument("--stagedoor-seats", type=int, default=300, env_var="LOCUST_STAGEDOOR_SEATS")
    group.add_argument("--stagedoor-rate", type=float, default=5.0, env_var="LOCUST_STAGEDOOR_RATE",
                       help="admission rate (fans/s) at the start; the SRE user doubles it mid-sale")
    group.add_argument("--stagedoor-pre-start-s", type=float, default=4.0, env_var="LOCUST_STAGEDOOR_PRE_START_S")
    group.add_argument("--stagedoor-raise-after-s", type=float, default=5.0, env_var="LOCUST_STAGEDOOR_RAISE_AFTER_S",
                       help="seconds after starts_at when the SRE raises the rate")
    group.add_argument("--stagedoor-pow", type=int, default=8, env_var="LOCUST_STAGEDOOR_POW",
                       help="proof-of-work difficulty of the room (0 = off)")


def _seat_map(seats: int) -> dict[str, Any]:
    per_row = 20
    rows = [{"label": f"R{r + 1}", "seats": [{"number": str(k + 1), "tier": "A"}
                                             for k in range(min(per_row, seats - r * per_row))]}
            for r in range((seats + per_row - 1) // per_row)]
    return {"sections": [{"name": "Floor", "rows": rows}]}


def _check(resp: Any, environment: Any) -> None:
    """Locust only logs an exception raised in test_start: say what failed and stop the run."""
    if resp.status_code >= 300:
        message = f"stagedoor on-sale set-up failed: {resp.request.method} {resp.url} -> {resp.status_code} {resp.text}"
        print(message, file=sys.stderr, flush=True)
        _count("setup_failed")
        if environment.runner is not None:
            environment.runner.quit()
        raise RuntimeError(message)


@events.test_start.add_listener
def _create_sale(environment: Any, **_: Any) -> None:
    """The event and its room, once, before any user runs (also on a master: users wait for SALE)."""
    import requests

    opts = environment.parsed_options
    for url in (opts.stagedoor_waitingroom, opts.stagedoor_ticketing, opts.stagedoor_admission):
        check_loopback_url(url)
    if not opts.stagedoor_admin_key:
        raise SystemExit("--stagedoor-admin-key (or LOCUST_STAGEDOOR_ADMIN_KEY) is required")
    admin = {"Authorization": f"Bearer {opts.stagedoor_admin_key}"}
    # The organizer: a registered account made organizer by the admin; it owns the event and watches it.
    email, password = f"organizer-{uuid.uuid4().hex}@example.test", "pw-" + uuid.uuid4().hex
    resp = requests.post(opts.stagedoor_ticketing + "/api/users", json={"email": email, "password": password,
                                                                        "name": "Organizer"}, timeout=30)
    _check(resp, environment)
    organizer_id = resp.json()["id"]
    resp = requests.patch(f"{opts.stagedoor_ticketing}/api/users/{organizer_id}", json={"roles": ["organizer"]},
                          headers=admin, timeout=30)
    _check(resp, environment)
    resp = requests.post(opts.stagedoor_ticketing + "/oauth/token", timeout=30,
                         data={"grant_type": "password", "username": email, "password": password})
    _check(resp, environment)
    organizer = {"Authorization": "Bearer " + resp.json()["access_token"]}
    event = {
        "title": f"Locust on-sale {uuid.uuid4().hex[:6]}", "category": "concert", "currency": "EUR",
        "venue": {"name": "Locust Hall", "city": "Loadtown", "address": "1 Swarm St"},
        "starts_at": "2030-06-01T19:00:00Z", "ends_at": "2030-06-01T22:00:00Z",
        "tiers": [{"code": "A", "name": "Floor", "price": 5000}], "seat_map": _seat_map(opts.stagedoor_seats),
        "max_tickets_per_order": 4, "hold_ttl_s": 30, "organizer_id": organizer_id,
    }
    resp = requests.post(opts.stagedoor_ticketing + "/api/events", json=event, headers=admin, timeout=60)
    _check(resp, environment)
    event_id = str(resp.json()["id"])
    now = time.time()
    room = f"locust-{uuid.uuid4().hex[:8]}"
    starts_at = now + opts.stagedoor_pre_start_s
    body = {"event_id": event_id, "mode": "fifo", "opens_at": _rfc3339(now - 60), "starts_at": _rfc3339(starts_at),
            "rate_per_s": opts.stagedoor_rate, "max_active": 10_000, "session_ttl_s": 300, "abandon_after_s": 60,
            "pow_difficulty": opts.stagedoor_pow}
    resp = requests.put(f"{opts.stagedoor_admission}/admin/rooms/{room}", json=body, headers=admin, timeout=30)
    _check(resp, environment)
    SALE.update(event_id=event_id, room=room, starts_at=starts_at, rate=opts.stagedoor_rate, admin=admin,
                organizer=organizer, pow=opts.stagedoor_pow,
                waitingroom=opts.stagedoor_waitingroom, ticketing=opts.stagedoor_ticketing,
                admission=opts.stagedoor_admission, raise_after_s=opts.stagedoor_raise_after_s)


@events.request.add_listener
def _on_request(response: Any = None, exception: Any = None, **_: Any) -> None:
    status = getattr(response, "status_code", 0) or 0
    if status >= 500:
        _count("http_5xx")
    elif exception is not None and status == 0:
        _count("no_response")


@events.quitting.add_listener
def _summary(environment: Any, **_: Any) -> None:
    with _lock:
        summary = {"event_id": SALE.get("event_id"), "room": SALE.get("room"), **dict(COUNTS),
                   "fan_outcomes": dict(OUTCOMES)}
    summary.setdefault("http_5xx", 0)
    summary.setdefault("tickets_bought", 0)
    print("stagedoor-locust-summary " + json.dumps(summary, sort_keys=True), flush=True)


def _wait_for_sale() -> None:
    while not SALE:
        time.sleep(0.1)


class _StagedoorUser(FastHttpUser):
    abstract = True
    host = "http://127.0.0.1:8080"  # every request below uses an absolute URL

    def on_start(self) -> None:
        _wait_for_sale()
        for url in (SALE["waitingroom"], SALE["ticketing"], SALE["admission"]):
            host = urlsplit(url).hostname
            check_loopback_url(f"http://{host}/")


class Fan(_StagedoorUser):
    weight = 20
    wait_time = constant(0)

    def on_start(self) -> None:
        super().on_start()
        self.rng = random.Random()
        email = f"fan-{uuid.uuid4().hex}@example.test"
        password = "pw-" + uuid.uuid4().hex
        self.client.post(SALE["ticketing"] + "/api/users", json={"email": email, "password": password, "name": "Fan"},
                         name="/api/users")
        form = urlencode({"grant_type": "password", "username": email, "password": password})
        resp = self.client.post(SALE["ticketing"] + "/oauth/token", name="/oauth/token", data=form,
                                headers={"Content-Type": "application/x-www-form-urlencoded"})
        self.user_auth = {"Authorization": "Bearer " + (resp.json()["access_token"] if resp.status_code == 200 else "")}

    def finish(self, outcome: str) -> None:
        _count(outcome, outcomes=True)
        raise StopUser()

    def solved_pow(self, room: str, base: str) -> dict[str, str] | None:
        challenge = self.client.get(f"{base}/api/rooms/{room}/pow", name="/api/rooms/[room]/pow")
        if challenge.status_code != 200 or not challenge.json().get("difficulty"):
            return None
        ch = challenge.json()
        return {"challenge": ch["challenge"], "nonce": pow_.solve(ch["challenge"], ch["difficulty"])}

    def join(self) -> dict[str, Any]:
        """As the queue page joins: a challenge first only where the room requires one, and after
        a pow-required answer (the room started to require it)."""
        room, base = SALE["room"], SALE["waitingroom"]
        pow_solution = self.solved_pow(room, base) if SALE.get("pow") else None
        resp = self.client.post(f"{base}/api/rooms/{room}/join", json={"pow": pow_solution} if pow_solution else {},
                                name="/api/rooms/[room]/join")
        if resp.status_code == 403 and pow_solution is None and resp.json().get("type") == "/problems/pow-required":
            pow_solution = self.solved_pow(room, base)
            resp = self.client.post(f"{base}/api/rooms/{room}/join", json={"pow": pow_solution} if pow_solution else {},
                                    name="/api/rooms/[room]/join")
        if resp.status_code not in (200, 201):
            self.finish("sold_out_at_join" if resp.status_code == 409 else f"join_{resp.status_code}")
        _count("joined_before_start" if time.time() < SALE["starts_at"] else "joined_after_start")
        return dict(resp.json())

    @task
    def on_sale(self) -> None:
        state = self.join()
        auth = {"Authorization": "Bearer " + state["queue_token"]}
        status_url = f"{SALE['waitingroom']}/api/rooms/{SALE['room']}/status"
        while state["state"] != "admitted":
            if state["state"] in ("sold_out", "closed", "expired"):
                self.finish("told_" + state["state"])
            time.sleep(POLL_S)  # gevent-patched: yields to the other users
            resp = self.client.get(status_url, headers=auth, name="/api/rooms/[room]/status")
            if resp.status_code != 200:
                self.finish(f"status_{resp.status_code}")
            state = resp.json()
        _count("admitted")
        self.shop(state["admission_token"])

    def shop(self, admission_token: str) -> None:
        ticketing, event_id = SALE["ticketing"], SALE["event_id"]
        headers = {**self.user_auth, "X-Admission-Token": admission_token}
        want = self.rng.choice((1, 2, 2, 3, 4))
        hold_id = ""
        for _attempt in range(3):
            seats = self.client.get(f"{ticketing}/api/events/{event_id}/seats", headers=headers,
                                    name="/api/events/[id]/seats")
            if seats.status_code != 200:
                self.finish(f"seats_{seats.status_code}")
            if self.rng.random() < 0.05:
                self.finish("abandoned_at_seat_map")
            choice = pick_seats(seats.json()["seats"], want, self.rng)
            if not choice:
                time.sleep(1.0)
                continue
            with self.client.post(f"{ticketing}/api/events/{event_id}/holds", json={"seats": choice}, headers=headers,
                                  name="/api/events/[id]/holds", catch_response=True) as resp:
                if resp.status_code == 409:
                    resp.success()  # someone was faster: a normal answer during an on-sale
                    continue
                if resp.status_code == 201:
                    hold_id = resp.json()["hold_id"]
                    break
                resp.failure(f"hold answered {resp.status_code}")
                self.finish(f"hold_{resp.status_code}")
        if not hold_id:
            self.finish("no_seats")
        if self.rng.random() < 0.05:
            self.finish("abandoned_hold")
        token = "tok_declined" if self.rng.random() < 0.1 else "tok_ok"
        for card in (token, "tok_ok"):
            with self.client.post(f"{ticketing}/api/holds/{hold_id}/purchase", name="/api/holds/[id]/purchase",
                                  json={"payment": {"method": "card", "token": card}, "email": "fan@example.test"},
                                  headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
                                  catch_response=True) as resp:
                if resp.status_code == 201:
                    resp.success()
                    _count("tickets_bought", len(resp.json()["tickets"]))
                    _count("orders")
                    self.finish("bought" if card == token else "bought_after_decline")
                if resp.status_code != 402:
                    resp.failure(f"purchase answered {resp.status_code}")
                    self.finish(f"purchase_{resp.status_code}")
                resp.success()  # a declined card is the gateway's answer
                if self.rng.random() < 0.5:
                    self.finish("declined_left")


class Bot(_StagedoorUser):
    """Joins without proof of work, holds without an admission token: must be refused."""

    weight = 2
    wait_time = between(0.05, 0.2)

    def on_start(self) -> None:
        super().on_start()
        self.auth: dict[str, str] = {}

    def _refused(self, resp: Any, what: str) -> None:
        if resp.status_code in (401, 403, 429):
            resp.success()
            _count(f"bot_{what}_refused")
        else:
            resp.failure(f"bot {what} answered {resp.status_code}")
            _count(f"bot_{what}_let_through")

    @task(3)
    def join_without_pow(self) -> None:
        with self.client.post(f"{SALE['waitingroom']}/api/rooms/{SALE['room']}/join", json={},
                              name="bot: join without pow", catch_response=True) as resp:
            self._refused(resp, "join")

    @task(1)
    def hold_without_admission(self) -> None:
        with self.client.post(f"{SALE['ticketing']}/api/events/{SALE['event_id']}/holds", json={"seats": ["s1"]},
                              headers=self.auth, name="bot: hold without admission", catch_response=True) as resp:
            self._refused(resp, "hold")


class Organizer(_StagedoorUser):
    fixed_count = 1
    wait_time = constant(2.0)

    @task
    def watch(self) -> None:
        self.client.get(f"{SALE['ticketing']}/api/events/{SALE['event_id']}/sales", headers=SALE["organizer"],
                        name="/api/events/[id]/sales")
        self.client.get(f"{SALE['admission']}/admin/rooms/{SALE['room']}", headers=SALE["organizer"],
                        name="/admin/rooms/[room]")


class Sre(_StagedoorUser):
    fixed_count = 1
    wait_time = constant(0.5)

    def on_start(self) -> None:
        super().on_start()
        self.raised = False

    @task
    def raise_rate_mid_sale(self) -> None:
        if self.raised or time.time() < SALE["starts_at"] + SALE["raise_after_s"]:
            return
        rate = SALE["rate"] * 2
        with self.client.request("PATCH", f"{SALE['admission']}/admin/rooms/{SALE['room']}",
                                 json={"rate_per_s": rate}, headers=SALE["admin"], name="/admin/rooms/[room] PATCH",
                                 catch_response=True) as resp:
            if resp.status_code == 200:
                self.raised = True
                _count("rate_raised")
            else:
                resp.failure(f"rate change answered {resp.status_code}")
