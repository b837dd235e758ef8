"""POST /api/payments/webhook over HTTP on real PostgreSQL and Redis: a webhook signed as Stripe signs it is
stored once per Stripe event id (one outbox row; a redelivery answers 200 and adds nothing); a missing,
wrong, stale or tampered signature and an unreadable body are 400 problems that store nothing; types not
handled are answered 200 and counted; without a secret there is no receiver (404)."""

from __future__ import annotations

import time
import uuid
from typing import Any

import asyncpg

from stagedoor.web import DB
from tests.support.stripe_webhooks import (
    WEBHOOK_SECRET,
    charge,
    dispute,
    payment_intent,
    post_webhook,
    sign,
    stripe_event,
)
from ticketing.appkeys import METRICS
from ticketing.payments.webhooks import WEBHOOK_NAMESPACE


async def _outbox(db: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await db.fetch("SELECT event_id::text AS event_id, event_type, aggregate_id, payload FROM outbox "
                          "ORDER BY id")
    return [dict(r) for r in rows]


def _counted(client: Any, type_: str, outcome: str) -> float:
    return client.app[METRICS].registry.get_sample_value(
        "ticketing_payment_webhooks_total", {"type": type_, "outcome": outcome}) or 0.0


async def _problem(resp: Any, status: int) -> str:
    assert resp.status == status, await resp.text()
    assert resp.content_type == "application/problem+json"
    return str((await resp.json())["type"])


async def test_a_signed_event_is_stored_once_and_its_redelivery_answers_200_without_a_second_row(shop: Any) -> None:
    client = await shop(stripe_webhook_secret=WEBHOOK_SECRET)
    body = stripe_event("payment_intent.succeeded",
                        payment_intent("pi_1", 5000, gateway_key="abc:0", currency="eur"), event_id="evt_once")
    first = await post_webhook(client, body)
    assert first.status == 200, await first.text()
    assert await first.json() == {"received": True, "stored": True, "ignored": False}
    again = await post_webhook(client, body, signature=sign(body, timestamp=int(time.time()) + 1))  # a new delivery
    assert again.status == 200, await again.text()
    assert (await again.json())["stored"] is False
    [row] = await _outbox(client.app[DB])
    assert row["event_id"] == str(uuid.uuid5(WEBHOOK_NAMESPACE, "stripe:evt_once"))
    assert row["event_type"] == "PaymentWebhookReceived" and row["aggregate_id"] == "evt_once"
    payload = row["payload"]
    assert (payload["type"], payload["gateway_key"], payload["payment_intent"]) == \
        ("payment_intent.succeeded", "abc:0", "pi_1")
    assert (payload["amount"], payload["currency"], payload["status"]) == (5000, "EUR", "succeeded")
    assert _counted(client, "payment_intent.succeeded", "stored") == 1
    assert _counted(client, "payment_intent.succeeded", "duplicate") == 1


async def test_each_handled_type_is_stored_with_what_stagedoor_reads_of_it_and_nothing_personal(shop: Any) -> None:
    client = await shop(stripe_webhook_secret=WEBHOOK_SECRET)
    bodies = [
        stripe_event("payment_intent.payment_failed",
                     payment_intent("pi_2", 3000, gateway_key="k:1", status="requires_payment_method",
                                    decline_code="insufficient_funds")),
        stripe_event("charge.refunded", charge("pi_3", 5000, amount_refunded=2000)),
        stripe_event("charge.dispute.created", dispute("pi_4", 5000)),
    ]
    for body in bodies:
        assert (await post_webhook(client, body)).status == 200
    failed, refunded, disputed = [r["payload"] for r in await _outbox(client.app[DB])]
    assert (failed["reason"], failed["amount"], failed["gateway_key"]) == ("insufficient_funds", 3000, "k:1")
    assert (refunded["payment_intent"], refunded["amount_refunded"], refunded["refunded"]) == ("pi_3", 2000, False)
    assert refunded["refund_id"].startswith("re_")
    assert (disputed["payment_intent"], disputed["reason"], disputed["amount"]) == ("pi_4", "fraudulent", 5000)
    assert "fan@example.test" not in str([failed, refunded, disputed])  # billing details are not kept


async def test_a_missing_wrong_stale_or_tampered_signature_is_a_400_that_stores_nothing(shop: Any) -> None:
    client = await shop(stripe_webhook_secret=WEBHOOK_SECRET)
    body = stripe_event("payment_intent.succeeded", payment_intent("pi_1", 5000, gateway_key="abc:0"))
    forged = [
        None,                                                     # no header
        "",                                                       # empty
        sign(body, secret="whsec_another_endpoint"),              # another secret
        sign(body, timestamp=int(time.time()) - 301),             # older than the 300 s tolerance
        sign(body.replace(b"5000", b"5"), secret=WEBHOOK_SECRET),  # signed for another body
        "t=notanumber,v1=abc",                                    # unreadable header
        "t=1700000000",                                           # no v1 signature
    ]
    for signature in forged:
        resp = await post_webhook(client, body, signature=signature)
        assert await _problem(resp, 400) == "/problems/webhook-signature-invalid", signature
    assert await _outbox(client.app[DB]) == []
    assert _counted(client, "unknown", "bad_signature") == len(forged)


async def test_a_signed_body_that_is_not_a_readable_event_is_a_400_that_stores_nothing(shop: Any) -> None:
    client = await shop(stripe_webhook_secret=WEBHOOK_SECRET)
    unreadable = [
        b"not json",
        b'{"id": "evt_1", "type": "payment_intent.succeeded"}',  # no data, no created
        stripe_event("payment_intent.succeeded", {"id": "pi_1", "currency": "eur"}),  # no amount, no status
        stripe_event("charge.dispute.created", {"id": "dp_1", "amount": "lots", "currency": "eur"}),
        "{\"id\": \"evt_\u00e9\"".encode("latin-1"),  # not even UTF-8
    ]
    for body in unreadable:
        resp = await post_webhook(client, body)
        assert (await _problem(resp, 400)) in ("/problems/webhook-payload-invalid",
                                               "/problems/webhook-signature-invalid"), body
    assert await _outbox(client.app[DB]) == []


async def test_a_type_stagedoor_does_not_handle_is_answered_200_counted_and_not_stored(shop: Any) -> None:
    client = await shop(stripe_webhook_secret=WEBHOOK_SECRET)
    body = stripe_event("customer.created", {"id": "cus_1", "object": "customer", "email": "x@example.test"})
    resp = await post_webhook(client, body)
    assert resp.status == 200, await resp.text()
    assert await resp.json() == {"received": True, "stored": False, "ignored": True}
    assert await _outbox(client.app[DB]) == []
    assert _counted(client, "customer.created", "ignored") == 1


async def test_without_a_webhook_secret_there_is_no_receiver(shop: Any) -> None:
    client = await shop()  # stripe_webhook_secret unset
    body = stripe_event("payment_intent.succeeded", payment_intent("pi_1", 5000, gateway_key="abc:0"))
    assert await _problem(await post_webhook(client, body, signature=sign(body, secret="")), 404) == \
        "/problems/not-found"
    assert await _outbox(client.app[DB]) == []


async def test_the_endpoint_is_documented_without_bearer_auth(shop: Any) -> None:
    client = await shop()
    spec = await (await client.get("/openapi.json")).json()
    op = spec["paths"]["/api/payments/webhook"]["post"]
    assert "security" not in op
    assert {"200", "400", "404", "503"} <= set(op["responses"])
    assert "Stripe-Signature" in op["summary"]
