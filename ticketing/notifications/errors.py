"""What can go wrong when handing a message to a transport (SMTP server, SMS provider)."""

from __future__ import annotations


class SendFailed(Exception):
    """The message was not accepted. ``reason`` is a bounded metric label."""

    reason = "error"

    def __init__(self, message: str, *, code: int | None = None) -> None:
        super().__init__(message)
        self.code = code


class TransientSendFailure(SendFailed):
    """Worth retrying: connection refused or dropped, timeout, a 4xx reply."""

    reason = "transient"


class PermanentSendFailure(SendFailed):
    """Retrying the same message will not help: a 5xx reply (recipient refused, auth failed)."""

    reason = "permanent"


class ChannelDisabled(SendFailed):
    """The channel is not configured (no SMTP host, SMS provider "none")."""

    reason = "disabled"


class NotificationsIncomplete(Exception):
    """Raised by a bus handler so the delivery is retried (and dead-lettered after N):
    some recipients failed in this delivery, or another consumer is still sending to some."""

    def __init__(self, kind: str, failed: int, pending: int) -> None:
        super().__init__(f"{kind}: {failed} failed, {pending} still being sent elsewhere")
        self.kind = kind
        self.failed = failed
        self.pending = pending
