"""The whole journey on a real 3-master Redis Cluster: organizer creates an event, the SRE a
fifo room for it; a fan joins, is admitted by the controller, holds seats with the admission
token and buys them. Every service app runs on the cluster client (STAGEDOOR_REDIS_CLUSTER)."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from redis.asyncio.cluster import RedisCluster

from stagedoor.redis_keys import RedisKeys
from stagedoor.settings import Settings
from tests.support.cluster import event_body


async def test_join_admitted_hold_purchase_on_a_cluster(service_client: Any, cluster_settings: Settings,
                                                         create_user: Any, admin_headers: dict[str, str],
                                                         cluster_client: RedisCluster) -> None:
    s = cluster_settings
    ticketing = await service_client("ticketing", s)
    admission = await service_client("admission", s)
    waitingroom = await service_client("waitingroom", s)
    organizer = await create_user(roles=["organizer"])
    resp = await ticketing.post("/api/events", json=event_body(20), headers=organizer.headers)
    assert resp.status == 201, await resp.text()
    event_id = (await resp.json())["id"]
    resp = await admission.put("/admin/rooms/cluster-hall", json={"event_id": event_id, "mode": "fifo",
                                                                  "rate_per_s": 50, "max_active": 100},
                               headers=admin_headers)
    assert resp.status == 201, await resp.text()

    resp = await waitingroom.post("/api/rooms/cluster-hall/join", json={})
    assert resp.status == 201, await resp.text()
    joined = await resp.json()
    auth = {"Authorization": "Bearer " + joined["queue_token"]}
    state = joined
    deadline = time.monotonic() + 20
    while state["state"] != "admitted":
        assert state["state"] in ("waiting", "pre_queue"), state
        assert time.monotonic() < deadline, state
        await asyncio.sleep(0.1)
        resp = await waitingroom.get("/api/rooms/cluster-hall/status", headers=auth)
        assert resp.status == 200, await resp.text()
        state = await resp.json()

    fan = await create_user()
    headers = {**fan.headers, "X-Admission-Token": state["admission_token"]}
    resp = await ticketing.get(f"/api/events/{event_id}/seats", headers=headers)
    seats = [st["id"] for st in (await resp.json())["seats"] if st["state"] == "free"][:2]
    resp = await ticketing.post(f"/api/events/{event_id}/holds", json={"seats": seats}, headers=fan.headers)
    assert resp.status == 403  # gated: no admission token, no hold
    resp = await ticketing.post(f"/api/events/{event_id}/holds", json={"seats": seats}, headers=headers)
    assert resp.status == 201, await resp.text()
    hold_id = (await resp.json())["hold_id"]
    resp = await ticketing.post(f"/api/holds/{hold_id}/purchase", headers={**headers, "Idempotency-Key": "k1"},
                                json={"payment": {"method": "card", "token": "tok_ok"}, "email": "fan@example.test"})
    assert resp.status == 201, await resp.text()
    order = await resp.json()
    assert sorted(t["seat"] for t in order["tickets"]) == sorted(seats)
    resp = await ticketing.get(f"/api/events/{event_id}/seats")
    states = {st["id"]: st["state"] for st in (await resp.json())["seats"]}
    assert [states[x] for x in seats] == ["sold", "sold"]

    # The room's and the event's keys really live on the cluster, each family in one slot.
    keys = RedisKeys(s.redis_key_prefix)
    room_keys = [keys.room_config("cluster-hall"), keys.room_state("cluster-hall"), keys.room_active("cluster-hall")]
    event_keys = [keys.inventory_meta(event_id), keys.inventory_seats(event_id), keys.hold_records(event_id)]
    for family in (room_keys, event_keys):
        assert len({cluster_client.keyslot(k) for k in family}) == 1
        node = cluster_client.get_node_from_key(family[0])
        assert await cluster_client.exists(*family[:2]) == 2
        assert await cluster_client.execute_command("EXISTS", family[0], target_nodes=node) == 1


async def test_an_event_stream_hears_its_admission_through_the_room_pulse_on_a_cluster(
        service_client: Any, cluster_settings: Settings, admin_headers: dict[str, str]) -> None:
    """The pulse's pipeline (room config, sold-out flag, ZMSCORE of the active set) runs on the
    room's slot through the cluster client: the stream is woken, nothing fails."""
    s = cluster_settings
    admission = await service_client("admission", s)
    waitingroom = await service_client("waitingroom", s)
    resp = await admission.put("/admin/rooms/cluster-stream", json={"mode": "fifo", "rate_per_s": 50,
                                                                    "max_active": 100, "paused": True},
                               headers=admin_headers)
    assert resp.status == 201, await resp.text()
    joined = await (await waitingroom.post("/api/rooms/cluster-stream/join", json={})).json()
    stream = await waitingroom.get("/api/rooms/cluster-stream/events",
                                   headers={"Authorization": "Bearer " + joined["queue_token"]})
    states = []
    async with asyncio.timeout(15):
        resumed = False
        while not states or states[-1].get("state") != "admitted":
            line = (await stream.content.readline()).decode().strip()
            if not line.startswith("data:"):
                continue
            states.append(json.loads(line[5:]))
            if not resumed:  # the first status is out: resume, and let the controller admit
                resumed = True
                resp = await admission.patch("/admin/rooms/cluster-stream", json={"paused": False},
                                             headers=admin_headers)
                assert resp.status == 200, await resp.text()
    stream.close()
    assert states[0]["state"] == "waiting" and states[-1]["admission_token"]
    metrics = await (await waitingroom.get("/metrics")).text()
    assert "waitingroom_sse_pulse_failures_total 0.0" in metrics  # every pulse's pipeline went through
    woken = [ln for ln in metrics.splitlines() if ln.startswith("waitingroom_sse_wakeups_total{")]
    assert woken and sum(float(ln.rsplit(" ", 1)[1]) for ln in woken) >= 1, woken
