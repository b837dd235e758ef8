"""SMS through a provider interface.

- :class:`LoggingSmsProvider` (default, development): logs one line with the number
  redacted and the text's length, sends nothing.
- :class:`WebhookSmsProvider`: POSTs ``{"to", "text", "idempotency_key"}`` as JSON to
  ``STAGEDOOR_SMS_WEBHOOK_URL`` (an SMS gateway or a small adapter in front of one), with
  ``Authorization: Bearer STAGEDOOR_SMS_WEBHOOK_TOKEN`` when set, a timeout, and retries with
  backoff (tenacity) on connection errors, timeouts, 429 and 5xx. Other 4xx are permanent.
  The idempotency key is the sent-log row's identity, so a provider that dedupes by it
  closes the sent-log's at-most-twice window for SMS.
"""

from __future__ import annotations

import logging
import re
from typing import Protocol

import aiohttp
import msgspec
from tenacity import AsyncRetrying, retry_if_exception_type, stop_after_attempt

from stagedoor.settings import Settings, SettingsError
from ticketing.notifications.errors import ChannelDisabled, PermanentSendFailure, TransientSendFailure
from ticketing.notifications.mailer import backoff

logger = logging.getLogger(__name__)

E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")
MAX_SMS_CHARS = 480  # three concatenated GSM-7 segments at most


class SmsMessage(msgspec.Struct, frozen=True):
    to: str
    text: str
    idempotency_key: str


def valid_phone(value: object) -> str | None:
    """The number when it is E.164 (``+`` and 7-15 digits), else None."""
    if isinstance(value, str) and E164.match(value):
        return value
    return None


def redact_phone(number: str) -> str:
    return number[:3] + "*" * max(0, len(number) - 5) + number[-2:]


class SmsProvider(Protocol):
    async def send(self, message: SmsMessage) -> None: ...


class DisabledSmsProvider:
    async def send(self, message: SmsMessage) -> None:
        raise ChannelDisabled("SMS provider is 'none'")


class LoggingSmsProvider:
    def __init__(self) -> None:
        self.sent: list[SmsMessage] = []  # the last few, for a developer's debugger

    async def send(self, message: SmsMessage) -> None:
        logger.info("sms_logged", extra={"to": redact_phone(message.to), "chars": len(message.text)})
        self.sent = [*self.sent[-99:], message]


class WebhookSmsProvider:
    def __init__(self, url: str, *, token: str | None, timeout_s: float, attempts: int, base_ms: int,
                 max_ms: int) -> None:
        self.url = url
        self.token = token
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.attempts = attempts
        self.base_ms = base_ms
        self.max_ms = max_ms
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        return self._session

    async def _post(self, message: SmsMessage) -> None:
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.idempotency_key}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            async with self._client().post(self.url, data=msgspec.json.encode(message), headers=headers) as resp:
                status = resp.status
                await resp.read()
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise TransientSendFailure(f"sms webhook unavailable: {type(exc).__name__}") from exc
        if status == 429 or status >= 500:
            raise TransientSendFailure(f"sms webhook {status}", code=status)
        if status >= 300:
            raise PermanentSendFailure(f"sms webhook refused ({status})", code=status)

    async def send(self, message: SmsMessage) -> None:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.attempts),
            wait=backoff(self.base_ms, self.max_ms),
            retry=retry_if_exception_type(TransientSendFailure),
            reraise=True,
        )
        async for attempt in retrying:
            with attempt:
                await self._post(message)


def sms_provider(settings: Settings) -> SmsProvider:
    """The provider the settings name (webhook without a URL fails at start)."""
    if settings.sms_provider == "none":
        return DisabledSmsProvider()
    if settings.sms_provider == "log":
        return LoggingSmsProvider()
    if not settings.sms_webhook_url:
        raise SettingsError("STAGEDOOR_SMS_PROVIDER=webhook needs STAGEDOOR_SMS_WEBHOOK_URL")
    return WebhookSmsProvider(settings.sms_webhook_url, token=settings.sms_webhook_token,
                              timeout_s=settings.sms_timeout_s, attempts=settings.notification_retry_attempts,
                              base_ms=settings.notification_retry_base_ms, max_ms=settings.notification_retry_max_ms)
