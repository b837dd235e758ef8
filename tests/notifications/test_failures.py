"""Failures: transient SMTP errors are retried with backoff; SMTP down is retried, then recorded
as failed (the bus handler raises so the delivery is retried, dead-lettered after N); a permanent
refusal is not retried; the webhook SMS provider against a local aiohttp server."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp import web

from tests.support.notifications import FlakySink, closed_port, envelope, metric
from ticketing.notifications.errors import NotificationsIncomplete, PermanentSendFailure, TransientSendFailure
from ticketing.notifications.handlers import on_order_confirmed
from ticketing.notifications.sms import SmsMessage, WebhookSmsProvider, redact_phone, sms_provider


async def _confirmed(catalog: Any) -> Any:
    event_id = await catalog.event()
    [order_id] = await catalog.orders(event_id, ["buyer@example.test"])
    return envelope("OrderConfirmed", order_id, {"order_id": order_id, "event_id": str(event_id)})


async def test_transient_smtp_replies_are_retried_until_accepted(
        start_smtp: Any, mail_settings: Any, make_notifications: Any, catalog: Any) -> None:
    sink = await start_smtp(FlakySink(fail=2))
    n = make_notifications(mail_settings(sink.port, notification_retry_attempts=3))
    env = await _confirmed(catalog)
    await on_order_confirmed(n, env)
    assert sink.handler.attempts == 3
    assert sink.count == 1
    row = await n.sent_log.status(env.event_id, "buyer@example.test", "order_confirmed")
    assert row is not None and row.status == "sent" and row.attempts == 1  # one claim, three SMTP tries


async def test_smtp_down_is_retried_then_recorded_as_failed_and_sent_once_it_is_back(
        start_smtp: Any, mail_settings: Any, make_notifications: Any, catalog: Any) -> None:
    down = FlakySink(fail=-1)  # answers 451 to everything
    sink = await start_smtp(down)
    n = make_notifications(mail_settings(sink.port, notification_retry_attempts=3))
    env = await _confirmed(catalog)

    with pytest.raises(NotificationsIncomplete):
        await on_order_confirmed(n, env)
    assert down.attempts == 3
    row = await n.sent_log.status(env.event_id, "buyer@example.test", "order_confirmed")
    assert row is not None and row.status == "failed" and "451" in (row.error or "")
    assert metric(n, "notifications_failed_total", kind="order_confirmed", channel="email", reason="transient") == 1

    down.fail = 0  # the server recovers; the bus redelivers
    await on_order_confirmed(n, env)
    assert sink.count == 1
    row = await n.sent_log.status(env.event_id, "buyer@example.test", "order_confirmed")
    assert row is not None and row.status == "sent" and row.attempts == 2
    await on_order_confirmed(n, env)
    assert sink.count == 1


async def test_no_smtp_server_at_all_fails_after_the_retries_and_gives_up_after_max_attempts(
        mail_settings: Any, make_notifications: Any, catalog: Any) -> None:
    n = make_notifications(mail_settings(closed_port(), notification_retry_attempts=2, notification_max_attempts=2))
    env = await _confirmed(catalog)
    for _ in range(2):
        with pytest.raises(NotificationsIncomplete):
            await on_order_confirmed(n, env)
    await on_order_confirmed(n, env)  # attempts exhausted: given up, acknowledged (no endless retry)
    row = await n.sent_log.status(env.event_id, "buyer@example.test", "order_confirmed")
    assert row is not None and row.status == "failed" and row.attempts == 2
    assert "unavailable" in (row.error or "")
    assert metric(n, "notifications_failed_total", kind="order_confirmed", channel="email", reason="transient") == 2


async def test_a_permanent_refusal_is_not_retried(
        start_smtp: Any, mail_settings: Any, make_notifications: Any, catalog: Any) -> None:
    sink = await start_smtp(FlakySink(fail=-1, reply="550 5.1.1 No such mailbox"))
    n = make_notifications(mail_settings(sink.port, notification_retry_attempts=3))
    env = await _confirmed(catalog)
    with pytest.raises(NotificationsIncomplete):
        await on_order_confirmed(n, env)
    assert sink.handler.attempts == 1
    row = await n.sent_log.status(env.event_id, "buyer@example.test", "order_confirmed")
    assert row is not None and row.status == "failed" and "550" in (row.error or "")
    assert metric(n, "notifications_failed_total", kind="order_confirmed", channel="email", reason="permanent") == 1


async def test_email_disabled_without_an_smtp_host_acknowledges_and_counts(
        make_settings: Any, make_notifications: Any, catalog: Any) -> None:
    n = make_notifications(make_settings())  # no STAGEDOOR_SMTP_HOST
    env = await _confirmed(catalog)
    await on_order_confirmed(n, env)
    assert metric(n, "notifications_skipped_total", kind="order_confirmed", channel="email", reason="disabled") == 1
    assert await n.sent_log.status(env.event_id, "buyer@example.test", "order_confirmed") is None


# ---------------------------------------------------------------- SMS webhook

class WebhookServer:
    def __init__(self, statuses: list[int]) -> None:
        self.statuses = statuses
        self.requests: list[tuple[dict[str, str], dict[str, Any]]] = []

    async def handle(self, request: web.Request) -> web.Response:
        self.requests.append((dict(request.headers), await request.json()))
        status = self.statuses.pop(0) if self.statuses else 200
        return web.json_response({"ok": status < 300}, status=status)


@pytest.fixture
async def webhook(aiohttp_server: Any) -> Any:
    async def start(statuses: list[int]) -> tuple[WebhookServer, str]:
        hook = WebhookServer(statuses)
        app = web.Application()
        app.router.add_post("/sms", hook.handle)
        server = await aiohttp_server(app)
        return hook, str(server.make_url("/sms"))
    return start


def _provider(url: str, **kw: Any) -> WebhookSmsProvider:
    values: dict[str, Any] = dict(token="hook-token-123", timeout_s=2.0, attempts=3, base_ms=10, max_ms=50)
    values.update(kw)
    return WebhookSmsProvider(url, **values)


async def test_webhook_sms_posts_json_with_auth_and_idempotency_key_retrying_5xx(webhook: Any) -> None:
    hook, url = await webhook([503, 429])
    provider = _provider(url)
    try:
        await provider.send(SmsMessage(to="+4915112345678", text="hello", idempotency_key="k1"))
    finally:
        await provider.close()
    assert len(hook.requests) == 3
    headers, body = hook.requests[-1]
    assert body == {"to": "+4915112345678", "text": "hello", "idempotency_key": "k1"}
    assert headers["Authorization"] == "Bearer hook-token-123"
    assert headers["Idempotency-Key"] == "k1"


async def test_webhook_sms_4xx_is_permanent_and_5xx_exhausts_as_transient(webhook: Any) -> None:
    hook, url = await webhook([400])
    provider = _provider(url)
    try:
        with pytest.raises(PermanentSendFailure):
            await provider.send(SmsMessage(to="+4915112345678", text="x", idempotency_key="k2"))
        assert len(hook.requests) == 1
        hook.statuses = [500, 500, 500]
        with pytest.raises(TransientSendFailure):
            await provider.send(SmsMessage(to="+4915112345678", text="x", idempotency_key="k3"))
        assert len(hook.requests) == 4
    finally:
        await provider.close()


async def test_webhook_sms_timeout_is_transient(aiohttp_server: Any) -> None:
    async def slow(request: web.Request) -> web.Response:
        await asyncio.sleep(5)
        return web.Response()

    app = web.Application()
    app.router.add_post("/sms", slow)
    server = await aiohttp_server(app)
    provider = _provider(str(server.make_url("/sms")), timeout_s=0.2, attempts=2)
    try:
        with pytest.raises(TransientSendFailure):
            await provider.send(SmsMessage(to="+4915112345678", text="x", idempotency_key="k4"))
    finally:
        await provider.close()


async def test_order_confirmation_sms_through_the_webhook_is_sent_once(
        webhook: Any, sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any) -> None:
    hook, url = await webhook([502])
    settings = mail_settings(sink.port, sms_provider="webhook", sms_webhook_url=url, sms_webhook_token="t0k")
    n = make_notifications(settings)
    try:
        event_id = await catalog.event(title="Loud Band")
        [order_id] = await catalog.orders(event_id, ["fan@example.test"])
        env = envelope("OrderConfirmed", order_id,
                       {"order_id": order_id, "event_id": str(event_id), "phone": "+33612345678"})
        await on_order_confirmed(n, env)
        await on_order_confirmed(n, env)
    finally:
        await n.close()
    assert len(hook.requests) == 2  # one 502, then accepted; the redelivery sent nothing
    assert "Loud Band" in hook.requests[-1][1]["text"]
    assert metric(n, "notifications_sent_total", kind="order_confirmed", channel="sms") == 1


def test_sms_provider_settings_and_redaction(make_settings: Any) -> None:
    from stagedoor.settings import SettingsError

    with pytest.raises(SettingsError, match="STAGEDOOR_SMS_WEBHOOK_URL"):
        sms_provider(make_settings(sms_provider="webhook"))
    assert redact_phone("+4915112345678") == "+49*********78"


async def test_a_consumer_stopped_mid_send_gives_its_claim_back_and_the_redelivery_sends_once(
        sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any) -> None:
    async def mute(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await asyncio.sleep(30)  # accepts the connection, never greets: the client waits
        writer.close()

    server = await asyncio.start_server(mute, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        stuck = make_notifications(mail_settings(port, smtp_timeout_s=20))
        env = await _confirmed(catalog)
        task = asyncio.create_task(on_order_confirmed(stuck, env))
        for _ in range(200):
            row = await stuck.sent_log.status(env.event_id, "buyer@example.test", "order_confirmed")
            if row is not None:
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        task.cancel()  # the worker shuts down (or the bus's handler timeout fires)
        with pytest.raises(asyncio.CancelledError):
            await task
    finally:
        server.close()
    row = await stuck.sent_log.status(env.event_id, "buyer@example.test", "order_confirmed")
    assert row is not None and row.status == "failed" and row.error == "interrupted"

    healthy = make_notifications(mail_settings(sink.port))
    await on_order_confirmed(healthy, env)  # the redelivery, at once (no stale wait)
    await on_order_confirmed(healthy, env)
    assert sink.count == 1


async def test_a_claim_left_by_a_crashed_sender_is_taken_over_once_stale(
        sink: Any, mail_settings: Any, make_notifications: Any, catalog: Any, pool: Any) -> None:
    n = make_notifications(mail_settings(sink.port, notification_claim_stale_s=60))
    env = await _confirmed(catalog)
    # A sender claimed the row and died (process killed: no cleanup ran).
    await pool.execute("INSERT INTO notifications (event_id, recipient, kind, channel, status) "
                       "VALUES ($1::uuid, 'buyer@example.test', 'order_confirmed', 'email', 'sending')", env.event_id)
    with pytest.raises(NotificationsIncomplete):  # fresh claim: maybe still sending; retry later
        await on_order_confirmed(n, env)
    assert sink.count == 0
    await pool.execute("UPDATE notifications SET claimed_at = now() - interval '61 seconds'")
    await on_order_confirmed(n, env)
    assert sink.count == 1
    row = await n.sent_log.status(env.event_id, "buyer@example.test", "order_confirmed")
    assert row is not None and row.status == "sent" and row.attempts == 2


async def test_pooled_connections_are_reused_and_a_dropped_one_costs_no_attempt(
        start_smtp: Any, mail_settings: Any) -> None:
    from stagedoor.dev_mail import MailSink
    from ticketing.notifications.mailer import SmtpMailer

    class CountingSink(MailSink):
        def __init__(self) -> None:
            super().__init__()
            self.connections: set[int] = set()
            self.hang_up = False

        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
            self.connections.add(id(server))
            if self.hang_up:  # drop the client right after accepting (an idle-timeout in disguise)
                asyncio.get_running_loop().call_later(0.05, server.transport.close)
            return await super().handle_DATA(server, session, envelope)

    def message(i: int) -> Any:
        from email.message import EmailMessage

        msg = EmailMessage()
        msg["From"], msg["To"], msg["Subject"] = "a@example.test", f"r{i}@example.test", f"m{i}"
        msg.set_content("x")
        return msg

    sink = await start_smtp(CountingSink())
    mailer = SmtpMailer(mail_settings(sink.port, notification_retry_attempts=1))
    try:
        for i in range(5):
            await mailer.send(message(i))
        assert sink.count == 5 and len(sink.handler.connections) == 1  # one connection for all five

        sink.handler.hang_up = True
        await mailer.send(message(5))
        await asyncio.sleep(0.2)  # the server has hung up on the pooled connection
        await mailer.send(message(6))  # one attempt allowed: the dead connection must not spend it
        assert sink.count == 7 and len(sink.handler.connections) == 2
    finally:
        await mailer.close()
