"""End to end through the real outbox relay and Redis Stream: outbox rows written in
PostgreSQL reach the worker's "notifications" consumer and the SMTP server, once."""

from __future__ import annotations

import asyncio
import json
import uuid
from typing import Any


async def _outbox(pool: Any, event_type: str, aggregate_id: str, payload: dict[str, Any]) -> str:
    event_id = str(uuid.uuid4())
    await pool.execute(
        "INSERT INTO outbox (event_id, event_type, aggregate_id, payload) VALUES ($1::uuid, $2, $3, $4::text::jsonb)",
        event_id, event_type, aggregate_id, json.dumps(payload))
    return event_id


async def _until(predicate: Any, timeout_s: float = 60.0) -> None:
    for _ in range(int(timeout_s / 0.1)):
        if await predicate():
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not reached in time")


async def test_outbox_rows_become_mail_through_the_relay_and_the_stream(
        service_client: Any, sink: Any, mail_settings: Any, catalog: Any, pool: Any) -> None:
    settings = mail_settings(sink.port, outbox_relay_interval_ms=20, bus_retry_ms=50, bus_claim_idle_ms=5000)
    event_id = await catalog.event(title="Stream Show")
    [order_id] = await catalog.orders(event_id, ["one@example.test"], tickets_per_order=2)
    await catalog.orders(event_id, ["two@example.test", "three@example.test"])
    await service_client("worker", settings)

    confirmed = await _outbox(pool, "OrderConfirmed", order_id, {"order_id": order_id, "event_id": str(event_id)})
    await sink.handler.wait_for(1, timeout_s=60)
    assert sink.recipients() == ["one@example.test"]

    await pool.execute("UPDATE events SET status = 'cancelled' WHERE id = $1", event_id)
    cancelled = await _outbox(pool, "EventCancelled", str(event_id), {"event_id": str(event_id)})
    await sink.handler.wait_for(4, timeout_s=60)

    async def job_done() -> bool:
        return bool(await pool.fetchval(
            "SELECT completed_at IS NOT NULL FROM notification_jobs WHERE job_id = $1::uuid", cancelled))
    await _until(job_done)
    await asyncio.sleep(0.5)
    assert sorted(sink.recipients()) == ["one@example.test", "one@example.test", "three@example.test",
                                         "two@example.test"]
    kinds = sorted(m["X-Stagedoor-Kind"] for m in sink.handler.parsed())
    assert kinds == ["event_cancelled", "event_cancelled", "event_cancelled", "order_confirmed"]
    rows = await pool.fetch("SELECT event_id::text, status FROM notifications ORDER BY 1")
    assert {r["event_id"] for r in rows} == {confirmed, cancelled}
    assert all(r["status"] == "sent" for r in rows)
