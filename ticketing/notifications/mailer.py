"""E-mail over SMTP (aiosmtplib), with retries and backoff (tenacity) for transient errors.

Classification: a refused connection, a dropped or timed-out session and any 4xx reply are
transient (retried ``notification_retry_attempts`` times with jittered exponential backoff);
a 5xx reply (recipient or sender refused, message refused, authentication failed) is
permanent. Either way the caller gets a :class:`SendFailed` and records it in the sent-log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from email.message import EmailMessage
from typing import Any, Protocol

import aiosmtplib
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt, wait_exponential, wait_random

from stagedoor.settings import Settings
from ticketing.notifications.errors import (
    ChannelDisabled,
    PermanentSendFailure,
    SendFailed,
    TransientSendFailure,
)

logger = logging.getLogger(__name__)

IDLE_S = 20.0  # pooled connections idle longer are closed (servers drop idle clients after 30-300 s)


def backoff(base_ms: int, max_ms: int) -> Any:
    """Exponential backoff from ``base_ms`` up to ``max_ms``, plus up to ``base_ms`` of jitter."""
    return wait_exponential(multiplier=base_ms / 1000, max=max_ms / 1000) + wait_random(0, base_ms / 1000)


class Mailer(Protocol):
    async def send(self, message: EmailMessage) -> None: ...


def classify(exc: Exception) -> SendFailed:
    """An aiosmtplib (or socket) error as a transient or permanent failure."""
    if isinstance(exc, aiosmtplib.SMTPRecipientsRefused):
        codes = [r.code for r in exc.recipients]
        if codes and all(c >= 500 for c in codes):
            return PermanentSendFailure(f"recipient refused ({codes[0]})", code=codes[0])
        return TransientSendFailure(f"recipient deferred ({codes[0] if codes else '?'})",
                                    code=codes[0] if codes else None)
    if isinstance(exc, aiosmtplib.SMTPResponseException) and not isinstance(exc, aiosmtplib.SMTPServerDisconnected):
        if exc.code >= 500:
            return PermanentSendFailure(f"smtp {exc.code}", code=exc.code)
        return TransientSendFailure(f"smtp {exc.code}", code=exc.code)
    if isinstance(exc, aiosmtplib.SMTPNotSupported):
        return PermanentSendFailure(f"smtp server lacks a required extension: {exc}")
    if isinstance(exc, (aiosmtplib.SMTPException, OSError, TimeoutError)):
        return TransientSendFailure(f"smtp unavailable: {type(exc).__name__}")
    return SendFailed(f"unexpected {type(exc).__name__}")


class SmtpMailer:
    """Sends over a small pool of open SMTP connections (one EHLO/STARTTLS/AUTH per connection,
    not per message: a fan-out of thousands pays the TLS handshake a few times). A connection is
    reused only after a clean send; any error closes it. A pooled connection the server dropped
    while idle is replaced at once, without spending one of the message's retry attempts."""

    def __init__(self, settings: Settings, idle_s: float = IDLE_S) -> None:
        self.settings = settings
        self.enabled = bool(settings.smtp_host)
        self.idle_s = idle_s
        self._idle: list[tuple[float, aiosmtplib.SMTP]] = []  # (returned at, monotonic), newest last
        self._max_idle = settings.notification_concurrency

    async def _connect(self) -> aiosmtplib.SMTP:
        s = self.settings
        client = aiosmtplib.SMTP(hostname=s.smtp_host, port=s.smtp_port, username=s.smtp_username or None,
                                 password=s.smtp_password or None, start_tls=s.smtp_starttls,
                                 timeout=s.smtp_timeout_s)
        await client.connect()
        return client

    def _take(self) -> aiosmtplib.SMTP | None:
        now = time.monotonic()
        while self._idle:
            returned_at, client = self._idle.pop()
            if now - returned_at < self.idle_s and client.is_connected:
                return client
            client.close()
        return None

    def _give_back(self, client: aiosmtplib.SMTP) -> None:
        if client.is_connected and len(self._idle) < self._max_idle:
            self._idle.append((time.monotonic(), client))
        else:
            client.close()

    async def close(self) -> None:
        while self._idle:
            _, client = self._idle.pop()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(client.quit(), 2)
            client.close()

    async def _send_on(self, client: aiosmtplib.SMTP | None, message: EmailMessage) -> None:
        fresh = client is None
        try:
            if client is None:
                client = await self._connect()
            await client.send_message(message)
        except Exception as exc:
            if client is not None:
                client.close()
            if not fresh and isinstance(exc, (aiosmtplib.SMTPServerDisconnected, ConnectionError)):
                await self._send_on(None, message)  # the server dropped the idle connection: a new one
                return
            raise classify(exc) from exc
        self._give_back(client)

    async def _send_once(self, message: EmailMessage) -> None:
        await self._send_on(self._take(), message)

    async def send(self, message: EmailMessage) -> None:
        if not self.enabled:
            raise ChannelDisabled("no SMTP host configured (STAGEDOOR_SMTP_HOST)")
        s = self.settings
        retrying = AsyncRetrying(
            stop=stop_after_attempt(s.notification_retry_attempts),
            wait=backoff(s.notification_retry_base_ms, s.notification_retry_max_ms),
            retry=retry_if_exception_type(TransientSendFailure),
            reraise=True,
            before_sleep=lambda state: logger.warning("smtp_retry", extra={
                "attempt": state.attempt_number, "error": str(state.outcome.exception()) if state.outcome else ""}),
        )
        async for attempt in retrying:
            with attempt:
                await self._send_once(message)
