"""The flash-sale engine: tens of thousands of simulated fans in a few load processes, and a
monitor in the parent that watches the room in Redis while they go through the sale.

A fan (one coroutine) does what the queue page and the shop do: joins the room at its arrival
time (a share of them before ``starts_at``: the pre-queue), polls its status (2 s near the front,
less often further back, by its ETA), and once admitted reads the seat map, holds 1-4 free seats
(re-reading the map after a conflict), and pays: mostly ``tok_ok``, some ``tok_declined`` (half of
those retry with another card, the others walk away and let the hold expire). Some admitted fans
abandon at the seat map or after holding. A fan stops when it bought, gave up, or was told the
event is sold out.

A fixed sample of fans (``sse_fans``, every k-th fan) waits as the queue page does with
JavaScript: on the room's event stream (``GET /api/rooms/{room}/events``, reconnecting when it
ends) instead of polling. Each such stream still open at the sell-out notes when its ``sold_out``
arrived: the sold-out push latency is that time minus the last purchase's 201 (the latest 201 any
fan got; all load processes share this machine's clock); a stream still open without it when the
sale is stopped (3 s after the room reported sold out) was never told.

Outcomes of admitted fans, precisely: ``bought``, ``bought_after_decline``; left by choice
(``abandoned_at_seat_map``, ``abandoned_hold``, ``declined_left``); found nothing to buy:
``no_seats`` (no hold after every try: every map they read showed nothing free, three maps 4 s
apart, or each pick lost to another fan) and ``stopped_looking`` (still without a hold when the
sale was stopped: looking at an empty map); the rest are failed requests (``*_failed``, ``hold_<status>``,
``purchase_<status>``) and ``stopped_holding`` (paying when stopped). Fans stopped before their
admission are ``stopped_waiting``.

Requests go through a small pool of keep-alive connections per process (``loadtest.rawhttp``); a
step's latency is the request's own (from send to full response), the wait for a free pooled
connection is reported on its own (``pool_wait``: high means the load generator, not the server,
was the bottleneck).

The monitor (``Monitor``) takes an atomic snapshot of the room every ~25 ms (MULTI on the room's
slot): the head of the waiting queue, the shoppers admitted since the last snapshot and the
admission counters. FIFO check: once a visitor who joined after ``starts_at`` (order score = its
arrival number) is admitted, nobody who arrived before it may still be waiting; a snapshot whose
head (a pre-queue visitor, score < 1, or an earlier arrival) is older than a visitor admitted since
the previous snapshot counts that visitor as an out-of-order admission. Clock-independent: it
compares queue order, not timestamps of different processes.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import random
import time
import traceback
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import msgspec

from loadtest.driver import Histogram
from loadtest.rawhttp import RawClient
from loadtest.scenario import BenchEnv, check_loopback_url

STEPS = ("join", "status", "seats", "hold", "purchase")


class SeatView(msgspec.Struct):
    """The fields of a seat-map entry a fan looks at (typed decoding: a fraction of the load
    generator's CPU that decoding whole maps into dicts costs); ``seat["state"]`` works too."""

    id: str
    section: str
    row: str
    state: str

    def __getitem__(self, name: str) -> str:
        return str(getattr(self, name))


class SeatMapView(msgspec.Struct):
    seats: list[SeatView]


_SEAT_MAP = msgspec.json.Decoder(SeatMapView)


@dataclass(frozen=True)
class SalePlan:
    """Everything that shapes one flash sale; every bound explicit."""

    fans: int = 20_000
    seats: int = 2_000
    rate_per_s: float = 30.0           # configured admission rate (about what the shop serves on 2 cores)
    max_active: int = 5_000            # high enough that the rate, not capacity, is the bound
    pre_start_s: float = 8.0           # pre-queue fans arrive over this window before starts_at
    pre_fraction: float = 0.7          # share of fans arriving before starts_at
    post_join_s: float = 20.0          # the others arrive over this window after starts_at
    sale_max_s: float = 90.0           # the sale is stopped this long after starts_at, sold out or not
    processes: int = 2                 # load-generator processes
    queue_connections: int = 64        # keep-alive connections per load process for join/status
    shop_connections: int = 48         # and for seats/hold/purchase (browsers have their own)
    poll_min_s: float = 2.0            # the page's polling interval, near the front of the queue
    poll_max_s: float = 15.0           # far back, fans poll about every eta/3 s up to this
    abandon_at_seat_map: float = 0.06  # admitted fans who look at the map and leave
    abandon_after_hold: float = 0.04   # fans who hold and never pay (the hold expires)
    decline_rate: float = 0.10         # fans whose first card is declined
    retry_after_decline: float = 0.5   # of those, the share who pay with another card
    hold_ttl_s: int = 15
    session_ttl_s: int = 120
    stock_reserve_s: int | None = None  # an admitted fan not holding by then stops counting against
                                        # the stock; None: hold_ttl_s (these fans hold within a poll)
    abandon_after_s: int = 60
    seats_per_row: int = 30
    request_timeout_s: float = 15.0
    sse_fans: int = 300                # fans who wait on the event stream instead of polling (a fixed sample)
    seed: int = 20261202

    def streams(self, i: int) -> bool:
        """Fan ``i`` waits on the event stream (every k-th fan, ``sse_fans`` in all)."""
        if self.sse_fans <= 0:
            return False
        every = max(1, self.fans // self.sse_fans)
        return i % every == 0 and i // every < self.sse_fans


@dataclass(frozen=True)
class SaleCtx:
    """What every load process gets (picklable)."""

    plan: SalePlan
    env: BenchEnv
    waitingroom: str
    ticketing: str
    room: str
    event_id: str
    users: tuple[str, ...]     # user id per fan index
    keys_dir: str
    redis_prefix: str = "sd"   # the services' STAGEDOOR_REDIS_KEY_PREFIX (the monitor reads the room's keys)
    redis_cluster: bool = False  # env.redis_url names a Redis Cluster node (STAGEDOOR_REDIS_CLUSTER)


# ----------------------------------------------------------------------------- load process

class _Recorder:
    def __init__(self) -> None:
        self.hist = {s: Histogram() for s in STEPS}
        self.statuses: dict[str, Counter[int]] = {s: Counter() for s in STEPS}
        self.exceptions: dict[str, Counter[str]] = {s: Counter() for s in STEPS}
        self.pool_wait = {"queue": Histogram(), "shop": Histogram()}
        self.outcomes: Counter[str] = Counter()
        self.joins: list[tuple[str, bool, float]] = []      # visitor id, joined before starts_at, wall time
        self.admitted: dict[str, float] = {}                # visitor id -> wall time first seen admitted
        self.admitted_early = 0                             # seen admitted before starts_at (must be 0)
        self.last_sale = 0.0                                # wall time of the latest purchase 201
        self.streams_opened = 0                             # event streams opened (reconnects included)
        self.stream_told: list[float] = []                  # wall time each stream's sold_out arrived
        self.stream_untold = 0                              # streams open without it when stopped

    def to_wire(self) -> dict[str, Any]:
        return {"hist": {s: h.to_wire() for s, h in self.hist.items()},
                "statuses": {s: dict(c) for s, c in self.statuses.items()},
                "exceptions": {s: dict(c) for s, c in self.exceptions.items()},
                "pool_wait": {k: h.to_wire() for k, h in self.pool_wait.items()},
                "outcomes": dict(self.outcomes), "joins": self.joins,
                "admitted": self.admitted, "admitted_early": self.admitted_early, "last_sale": self.last_sale,
                "streams_opened": self.streams_opened, "stream_told": self.stream_told,
                "stream_untold": self.stream_untold}


class _Fans:
    """The fans of one load process."""

    def __init__(self, ctx: SaleCtx, index: int, starts_at: float) -> None:
        from stagedoor.keys import KeyRing

        self.ctx = ctx
        self.plan = ctx.plan
        self.index = index
        self.starts_at = starts_at
        self.rec = _Recorder()
        self.keyring = KeyRing.from_dir(Path(ctx.keys_dir))
        self.pools: dict[str, asyncio.Queue[RawClient]] = {"queue": asyncio.Queue(), "shop": asyncio.Queue()}
        for name, size in (("queue", self.plan.queue_connections), ("shop", self.plan.shop_connections)):
            for _ in range(size):
                self.pools[name].put_nowait(RawClient(self.plan.request_timeout_s))
        room, ev = ctx.room, ctx.event_id
        self.join_url = f"{ctx.waitingroom}/api/rooms/{room}/join"
        self.status_url = f"{ctx.waitingroom}/api/rooms/{room}/status"
        self.seats_url = f"{ctx.ticketing}/api/events/{ev}/seats"
        self.hold_url = f"{ctx.ticketing}/api/events/{ev}/holds"
        self.events_url = f"{ctx.waitingroom}/api/rooms/{room}/events"
        self.streams: Any = None  # an aiohttp session for the event streams, opened by run()
        for url in (self.join_url, self.seats_url):
            check_loopback_url(url)

    async def call(self, step: str, method: str, url: str, headers: dict[str, str] | None = None,
                   body: Any = None) -> Any:
        kind = "queue" if step in ("join", "status") else "shop"
        pool = self.pools[kind]
        t0 = time.perf_counter()
        client = await pool.get()
        t1 = time.perf_counter()
        self.rec.pool_wait[kind].record_us(int((t1 - t0) * 1e6))
        try:
            if method == "GET":
                resp = await client.get(url, headers)
            else:
                resp = await client.post(url, json_body=body, headers=headers)
        except Exception as exc:
            self.rec.exceptions[step][type(exc).__name__] += 1
            return None
        finally:
            pool.put_nowait(client)
        self.rec.hist[step].record_us(int((time.perf_counter() - t1) * 1e6))
        self.rec.statuses[step][resp.status] += 1
        return resp

    # -- one fan
    async def fan(self, i: int, rng: random.Random, progress: dict[str, bool]) -> str:
        plan = self.plan
        pre = rng.random() < plan.pre_fraction
        if pre:
            arrive = self.starts_at - plan.pre_start_s + rng.random() * plan.pre_start_s * 0.95
        else:
            arrive = self.starts_at + rng.random() * plan.post_join_s
        await asyncio.sleep(max(0.0, arrive - time.time()))
        sent = time.time()
        resp = await self.call("join", "POST", self.join_url, body={})
        if resp is None or resp.status not in (200, 201):
            return "sold_out_at_join" if resp is not None and resp.status == 409 else "join_failed"
        joined = msgspec.json.decode(resp.body)
        visitor = joined["visitor_id"]
        self.rec.joins.append((visitor, sent < self.starts_at, sent))
        auth = {"Authorization": "Bearer " + joined["queue_token"]}
        state = joined
        if plan.streams(i) and state["state"] != "admitted":
            state = await self.wait_on_stream(auth, progress)
        while state["state"] != "admitted":
            if state["state"] in ("sold_out", "closed", "expired"):
                return "told_" + state["state"]
            if state["state"] == "pre_queue":  # the countdown page checks in now and then
                interval = rng.uniform(2 * plan.poll_min_s, plan.poll_max_s)
            else:
                eta = state.get("eta_s") or 0
                interval = min(plan.poll_max_s, max(plan.poll_min_s, eta / 3)) * rng.uniform(0.8, 1.2)
            await asyncio.sleep(interval)
            resp = await self.call("status", "GET", self.status_url, auth)
            if resp is None or resp.status != 200:
                return "status_failed"
            state = msgspec.json.decode(resp.body)
        now = time.time()
        self.rec.admitted.setdefault(visitor, now)
        progress["admitted"] = True
        if now < self.starts_at:
            self.rec.admitted_early += 1
        return await self.shop(i, rng, state["admission_token"], progress)

    async def wait_on_stream(self, auth: dict[str, str], progress: dict[str, bool]) -> dict[str, Any]:
        """Wait on the room's event stream until a state other than waiting (the page's
        EventSource: reconnects 1 s after a stream ends); a failed stream answers
        ``{"state": "stream_failed"}`` and the fan polls from then on."""
        import aiohttp

        while True:
            try:
                async with self.streams.get(self.events_url, headers=auth) as resp:
                    if resp.status != 200:
                        return {"state": "stream_failed"}
                    self.rec.streams_opened += 1
                    progress["streaming"] = True  # a fan cancelled while it is set: a stream never told
                    async for line in resp.content:
                        if not line.startswith(b"data:"):
                            continue
                        state: dict[str, Any] = msgspec.json.decode(line[5:].strip())
                        if state["state"] == "sold_out":
                            self.rec.stream_told.append(time.time())
                        if state["state"] not in ("waiting", "pre_queue"):
                            progress["streaming"] = False
                            return state
                    progress["streaming"] = False
            except (aiohttp.ClientError, OSError):
                progress["streaming"] = False
                return {"state": "stream_failed"}
            await asyncio.sleep(1.0)

    async def shop(self, i: int, rng: random.Random, admission_token: str, progress: dict[str, bool]) -> str:
        from stagedoor.auth import mint_access_token

        plan = self.plan
        user_token = mint_access_token(self.keyring, subject=self.ctx.users[i], roles=["customer"], ttl_s=3600)
        headers = {"Authorization": "Bearer " + user_token, "X-Admission-Token": admission_token}
        want = rng.choices((1, 2, 3, 4), weights=(20, 45, 15, 20))[0]
        leave = rng.random() < plan.abandon_at_seat_map
        hold_id = ""
        empty_maps = 0
        for _attempt in range(4):
            resp = await self.call("seats", "GET", self.seats_url, headers)
            if resp is None or resp.status != 200:
                return "seats_failed"
            if leave:
                return "abandoned_at_seat_map"
            seats = _SEAT_MAP.decode(resp.body).seats
            for _pick in range(2):  # after a conflict, one more pick on the same map, then a fresh map
                choice = pick_seats(seats, want, rng)
                if not choice:
                    break
                resp = await self.call("hold", "POST", self.hold_url, headers, {"seats": choice})
                if resp is None:
                    return "hold_failed"
                if resp.status == 201:
                    hold_id = msgspec.json.decode(resp.body)["hold_id"]
                    progress["held"] = True
                    break
                if resp.status != 409:
                    return f"hold_{resp.status}"
                taken = set(choice) | set(msgspec.json.decode(resp.body).get("conflicts") or ())
                seats = [s for s in seats if s["id"] not in taken]
            if hold_id:
                break
            if not choice:  # everything is held or sold: held seats may come back; look twice more, then leave
                empty_maps += 1
                if empty_maps == 3:
                    break
                await asyncio.sleep(4.0)
        if not hold_id:
            return "no_seats"
        if rng.random() < plan.abandon_after_hold:
            return "abandoned_hold"
        token = "tok_declined" if rng.random() < plan.decline_rate else "tok_ok"
        purchase_url = f"{self.ctx.ticketing}/api/holds/{hold_id}/purchase"
        body = {"payment": {"method": "card", "token": token}, "email": f"fan{i}@example.test"}
        resp = await self.call("purchase", "POST", purchase_url, {**headers, "Idempotency-Key": uuid.uuid4().hex},
                               body)
        self._sold(resp)
        if resp is not None and resp.status == 402:
            if rng.random() >= plan.retry_after_decline:
                return "declined_left"
            body = {**body, "payment": {"method": "card", "token": "tok_ok"}}
            resp = await self.call("purchase", "POST", purchase_url,
                                   {**headers, "Idempotency-Key": uuid.uuid4().hex}, body)
            self._sold(resp)
            if resp is not None and resp.status == 201:
                return "bought_after_decline"
        if resp is None:
            return "purchase_failed"
        return "bought" if resp.status == 201 else f"purchase_{resp.status}"

    def _sold(self, resp: Any) -> None:
        if resp is not None and resp.status == 201:
            self.rec.last_sale = max(self.rec.last_sale, time.time())

    async def run(self, stop: asyncio.Future[None]) -> None:
        import aiohttp

        plan = self.plan
        mine = range(self.index, plan.fans, plan.processes)
        self.streams = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(limit=0),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=plan.request_timeout_s))

        async def one(i: int) -> None:
            rng = random.Random(plan.seed * 1_000_003 + i)
            progress: dict[str, bool] = {}
            try:
                outcome = await self.fan(i, rng, progress)
            except asyncio.CancelledError:
                if progress.get("streaming"):
                    self.rec.stream_untold += 1
                stopped = "holding" if progress.get("held") else "looking" if progress.get("admitted") else "waiting"
                self.rec.outcomes["stopped_" + stopped] += 1
                raise
            except Exception as exc:  # a fan must not take the process down
                outcome = "crashed:" + type(exc).__name__
            self.rec.outcomes[outcome] += 1

        tasks = [asyncio.ensure_future(one(i)) for i in mine]
        everyone = asyncio.ensure_future(asyncio.wait(tasks))
        deadline = self.starts_at + plan.sale_max_s + 10 - time.time()
        await asyncio.wait([everyone, stop], timeout=max(1.0, deadline), return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        everyone.cancel()
        await self.streams.close()
        for pool in self.pools.values():
            while not pool.empty():
                pool.get_nowait().close()


def pick_seats(seats: list[Any], want: int, rng: random.Random) -> list[str]:
    """Up to ``want`` free seats: side by side in one row when a row has them, else any free ones."""
    free = [s for s in seats if s["state"] == "free"]
    if not free:
        return []
    start = rng.randrange(len(free))
    row = (free[start]["section"], free[start]["row"])
    block = [s["id"] for s in free[start:start + want] if (s["section"], s["row"]) == row]
    if len(block) == want:
        return block
    return [s["id"] for s in rng.sample(free, min(want, len(free)))]


async def _process_main_async(ctx: SaleCtx, index: int, conn: Connection) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    conn.send(("ready", None))
    starts_at = await loop.run_in_executor(None, conn.recv)
    fans = _Fans(ctx, index, starts_at)
    stop: asyncio.Future[None] = loop.create_future()

    def wait_stop() -> None:
        with contextlib.suppress(EOFError, OSError):
            conn.recv()
        loop.call_soon_threadsafe(lambda: stop.done() or stop.set_result(None))

    loop.run_in_executor(None, wait_stop)
    await fans.run(stop)
    return fans.rec.to_wire()


def _process_main(ctx: SaleCtx, index: int, conn: Connection) -> None:
    try:
        import uvloop

        wire = uvloop.run(_process_main_async(ctx, index, conn))
        conn.send(("result", wire))
    except BaseException:
        conn.send(("result", {"failure": traceback.format_exc()}))
    finally:
        conn.close()


# ----------------------------------------------------------------------------- monitor (parent)

def visitor_seq(visitor_id: str) -> int:
    """The arrival number a visitor id starts with (base 36, see lua/join_queue.lua)."""
    return int(visitor_id.split("_", 1)[0], 36)


@dataclass
class Snapshot:
    t: float
    head_score: float | None
    new_admitted: list[str]
    admitted_total: int
    waiting: int
    sold_out: bool
    all_held: bool = False  # the stock, not the rate, held admission back (lua/admit_batch.lua)


@dataclass
class Monitor:
    redis_url: str
    room: str
    prefix: str = "sd"
    cluster: bool = False
    snapshots: list[Snapshot] = field(default_factory=list)
    seen: set[str] = field(default_factory=set)
    max_score: float = 0.0
    memory_baseline: int = 0
    memory_at_start: int = 0
    waiting_at_start: int = 0
    sold_out_at: float | None = None

    def keys(self) -> Any:
        from stagedoor.redis_keys import RedisKeys

        k = RedisKeys(self.prefix)
        return k.room_waiting(self.room), k.room_active(self.room), k.room_state(self.room)

    async def snapshot(self, client: Any) -> Snapshot:
        wait, active, st = self.keys()
        floor = self.max_score - 5_000 if self.max_score else "-inf"
        async with client.pipeline(transaction=True) as pipe:
            pipe.zrange(wait, 0, 0, withscores=True)
            pipe.zrangebyscore(active, floor, "+inf", withscores=True)
            pipe.hmget(st, "admitted_total", "sold_out", "all_held")
            pipe.zcard(wait)
            head, admitted, counters, waiting = await pipe.execute()
        t = time.time()
        new = []
        for member, score in admitted:
            vid = member.decode()
            self.max_score = max(self.max_score, score)
            if vid not in self.seen:
                self.seen.add(vid)
                new.append(vid)
        snap = Snapshot(t, head[0][1] if head else None, new, int(counters[0] or 0), int(waiting),
                        counters[1] == b"1", counters[2] == b"1")
        self.snapshots.append(snap)
        if snap.sold_out and self.sold_out_at is None:
            self.sold_out_at = t
        return snap

    def client(self) -> Any:
        if self.cluster:
            from redis.asyncio.cluster import RedisCluster

            return RedisCluster.from_url(self.redis_url)
        import redis.asyncio as redis_asyncio

        return redis_asyncio.Redis.from_url(self.redis_url)

    async def memory(self, client: Any) -> tuple[int, int]:
        """The dataset (used memory minus client buffers and overhead; summed over the masters of a
        cluster) and the number waiting."""
        wait, _, _ = self.keys()
        if self.cluster:
            from redis.asyncio.cluster import RedisCluster

            infos = await client.info("memory", target_nodes=RedisCluster.PRIMARIES)
            dataset = sum(int(i["used_memory_dataset"]) for i in infos.values())
        else:
            dataset = int((await client.info("memory"))["used_memory_dataset"])
        return dataset, int(await client.zcard(wait))


def out_of_order(snapshots: list[Snapshot], post_start: set[str]) -> list[str]:
    """Visitors who joined after starts_at and were admitted while someone ahead of them in the
    queue (a pre-queue visitor or an earlier arrival) was still waiting."""
    bad: list[str] = []
    for snap in snapshots:
        if snap.head_score is None:
            continue
        for vid in snap.new_admitted:
            if vid in post_start and (snap.head_score < 1 or snap.head_score < visitor_seq(vid)):
                bad.append(vid)
    return bad


def admitted_rate(snapshots: list[Snapshot], starts_at: float, skip_s: float = 2.0) -> tuple[float, float]:
    """Admissions per second between starts_at + skip_s (past the initial burst) and the last
    snapshot while the rate was what held admission back: before the room sold out, its queue
    ran dry, or the stock first bound it (the last tickets are let in as they come back, not at
    the rate: docs/admission.md "Admission and the stock"); returns (rate, window seconds)."""
    window = [s for s in snapshots if s.t >= starts_at + skip_s]
    end = next((k for k, s in enumerate(window) if s.sold_out or s.waiting == 0 or s.all_held), len(window))
    window = window[:end]
    if len(window) < 2:
        return 0.0, 0.0
    first, last = window[0], window[-1]
    span = last.t - first.t
    return ((last.admitted_total - first.admitted_total) / span if span > 0 else 0.0), span


# ----------------------------------------------------------------------------- parent driver

@dataclass
class SaleResult:
    plan: SalePlan
    starts_at: float
    ended_at: float
    hist: dict[str, Histogram]
    statuses: dict[str, Counter[int]]
    exceptions: dict[str, Counter[str]]
    pool_wait: dict[str, Histogram]
    outcomes: Counter[str]
    joins: list[tuple[str, bool, float]]
    admitted_by_fans: dict[str, float]
    admitted_early: int
    monitor: Monitor
    failures: list[str]
    last_sale: float = 0.0                                   # wall time of the latest purchase 201
    streams_opened: int = 0
    stream_told: list[float] = field(default_factory=list)   # wall time each stream's sold_out arrived
    stream_untold: int = 0                                   # streams open without it when stopped

    def sold_out_push_ms(self) -> list[float]:
        """Per stream told, ms from the last purchase's 201 to its sold_out (0 when it came first:
        the room may be told a moment before that 201 reaches its fan)."""
        if not self.last_sale:
            return []
        return sorted(max(0.0, (t - self.last_sale) * 1000) for t in self.stream_told)

    def step_summary(self, step: str) -> dict[str, Any]:
        h = self.hist[step]
        return {"requests": h.total, "p50_ms": h.percentile_us(50) / 1000, "p99_ms": h.percentile_us(99) / 1000,
                "max_ms": h.max_us / 1000, "statuses": dict(sorted(self.statuses[step].items())),
                "exceptions": dict(self.exceptions[step])}


async def _patch_room(ctx: SaleCtx, admission_url: str, admin_headers: dict[str, str], starts_at: float) -> None:
    import aiohttp

    from rooms.store import rfc3339

    async with aiohttp.ClientSession() as session, session.patch(
            f"{admission_url}/admin/rooms/{ctx.room}", json={"starts_at": rfc3339(int(starts_at * 1000))},
            headers=admin_headers, timeout=aiohttp.ClientTimeout(total=30)) as resp:
        if resp.status != 200:
            raise RuntimeError(f"room patch failed: {resp.status} {await resp.text()}")


async def _watch(ctx: SaleCtx, monitor: Monitor, pipes: list[Connection], starts_at: float,
                 results: dict[int, dict[str, Any]], grace_s: float) -> float:
    client = monitor.client()
    try:
        monitor.memory_baseline = min([(await monitor.memory(client))[0] for _ in range(3)])
        measured_start = False
        hard_stop = starts_at + ctx.plan.sale_max_s
        while True:
            now = time.time()
            if not measured_start and now >= starts_at - 0.3:
                # Three readings, the leanest kept: a hash table that Redis is rehashing at that
                # instant (incrementally) counts twice in one reading, not in all of them.
                readings = []
                for _ in range(3):
                    readings.append(await monitor.memory(client))
                    await asyncio.sleep(0.03)
                monitor.memory_at_start, monitor.waiting_at_start = min(
                    readings, key=lambda r: (r[0] - monitor.memory_baseline) / max(1, r[1]))
                measured_start = True
            await monitor.snapshot(client)
            for k, pipe in enumerate(pipes):
                if k not in results and pipe.poll():
                    results[k] = pipe.recv()[1]
            if len(results) == len(pipes):
                break
            if now >= hard_stop or (monitor.sold_out_at is not None and now >= monitor.sold_out_at + grace_s):
                break
            await asyncio.sleep(0.025)
        ended = time.time()
        await monitor.snapshot(client)
        return ended
    finally:
        await client.aclose()


def run_sale(ctx: SaleCtx, admission_url: str, admin_headers: dict[str, str], grace_s: float = 3.0,
             lead_s: float = 1.0) -> SaleResult:
    """Spawn the fans, open the sale, watch it, stop it; blocks until done (bounded by the plan)."""
    plan = ctx.plan
    mp = multiprocessing.get_context("spawn")
    pipes: list[Connection] = []
    procs: list[Any] = []
    for i in range(plan.processes):
        parent_end, child_end = mp.Pipe()
        proc = mp.Process(target=_process_main, args=(ctx, i, child_end), daemon=True, name=f"flashsale-{i}")
        proc.start()
        child_end.close()
        pipes.append(parent_end)
        procs.append(proc)
    results: dict[int, dict[str, Any]] = {}
    monitor = Monitor(ctx.env.redis_url, ctx.room, ctx.redis_prefix, ctx.redis_cluster)
    try:
        for k, pipe in enumerate(pipes):
            if not pipe.poll(60):
                raise TimeoutError("flash-sale load process not ready in 60 s")
            kind, payload = pipe.recv()
            if kind == "result":
                results[k] = payload
        starts_at = time.time() + lead_s + plan.pre_start_s
        asyncio.run(_patch_room(ctx, admission_url, admin_headers, starts_at))
        for k, pipe in enumerate(pipes):
            if k not in results:
                pipe.send(starts_at)
        ended = asyncio.run(_watch(ctx, monitor, pipes, starts_at, results, grace_s))
        for k, pipe in enumerate(pipes):
            if k not in results:
                pipe.send("stop")
        for k, pipe in enumerate(pipes):
            if k not in results:
                if not pipe.poll(plan.request_timeout_s + 30):
                    raise TimeoutError("flash-sale load process did not stop")
                results[k] = pipe.recv()[1]
    finally:
        for pipe in pipes:  # first: a child's stop-listener thread then sees EOF and lets the child exit
            pipe.close()
        for proc in procs:
            proc.join(5)
            if proc.is_alive():
                proc.terminate()
                proc.join(5)
    return _merge(plan, starts_at, ended, results, monitor)


def _merge(plan: SalePlan, starts_at: float, ended: float, results: dict[int, dict[str, Any]],
           monitor: Monitor) -> SaleResult:
    hist = {s: Histogram() for s in STEPS}
    statuses: dict[str, Counter[int]] = {s: Counter() for s in STEPS}
    exceptions: dict[str, Counter[str]] = {s: Counter() for s in STEPS}
    pool_wait = {"queue": Histogram(), "shop": Histogram()}
    outcomes: Counter[str] = Counter()
    joins: list[tuple[str, bool, float]] = []
    admitted: dict[str, float] = {}
    early = 0
    failures = []
    last_sale, opened, told, untold = 0.0, 0, [], 0
    for wire in results.values():
        if "failure" in wire:
            failures.append(wire["failure"])
            continue
        for s in STEPS:
            hist[s].merge(Histogram.from_wire(wire["hist"][s]))
            statuses[s].update({int(k): v for k, v in wire["statuses"][s].items()})
            exceptions[s].update(wire["exceptions"][s])
        for kind, h in wire["pool_wait"].items():
            pool_wait[kind].merge(Histogram.from_wire(h))
        outcomes.update(wire["outcomes"])
        joins.extend(tuple(j) for j in wire["joins"])  # type: ignore[misc]
        admitted.update(wire["admitted"])
        early += wire["admitted_early"]
        last_sale = max(last_sale, wire["last_sale"])
        opened += wire["streams_opened"]
        told.extend(wire["stream_told"])
        untold += wire["stream_untold"]
    return SaleResult(plan, starts_at, ended, hist, statuses, exceptions, pool_wait, outcomes, joins, admitted,
                      early, monitor, failures, last_sale=last_sale, streams_opened=opened, stream_told=told,
                      stream_untold=untold)


def plan_dict(plan: SalePlan) -> dict[str, Any]:
    return asdict(plan)
