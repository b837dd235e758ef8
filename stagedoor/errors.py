"""The one error tree. Domain code raises these; ``problems.py`` renders them as problem+json.

Each class has a stable ``code`` slug (the problem ``type`` is ``/problems/<code>``) and a
human ``title``; instances carry the facts a client needs in ``extra``.
"""

from __future__ import annotations

import re
from typing import Any, ClassVar

from redis import exceptions as rx
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Redis that cannot serve for now: refused, lost or silent (redis-py and our pipelining client
# wrap socket errors in ConnectionError and TimeoutError), or answering but refusing, by the error
# reply's code: out of memory (maxmemory with noeviction: every write fails), a replica (READONLY:
# a failover in progress or a misrouted client), a cluster slot down or moving (CLUSTERDOWN,
# MASTERDOWN, TRYAGAIN), a script running too long (BUSY). A refused command changed nothing (a
# script meets the refusal at its first write, before any effect): all are 503s to retry, not 500s.
_REFUSAL_REASONS = {"OOM": "out-of-memory", "READONLY": "read-only", "CLUSTERDOWN": "cluster-down",
                    "MASTERDOWN": "master-down", "TRYAGAIN": "try-again", "BUSY": "busy", "LOADING": "loading"}
_REFUSAL_CLASSES: tuple[tuple[type[Exception], str], ...] = (
    (rx.BusyLoadingError, "loading"), (rx.OutOfMemoryError, "out-of-memory"), (rx.ReadOnlyError, "read-only"),
    (rx.MasterDownError, "master-down"), (rx.ClusterDownError, "cluster-down"), (rx.TryAgainError, "try-again"))
# Redis 6 wraps the error of a command inside a script: "Error running script (call to f_...):
# @user_script:12: @user_script: 12: -OOM command not allowed ..." (Redis 7 keeps the code).
_SCRIPT_ERROR_CODE = re.compile(r"^Error running script .*?: -([A-Z]+) ")


def redis_unavailable_reason(exc: BaseException) -> str | None:
    """Why Redis could not serve a command, when that is a passing state worth a 503 and a retry
    (``unreachable``, ``timeout``, ``loading``, ``out-of-memory``, ``read-only``, ``cluster-down``,
    ``master-down``, ``try-again``, ``busy``); None for anything else (a bug: a 500)."""
    for cls, reason in _REFUSAL_CLASSES:
        if isinstance(exc, cls):
            return reason
    if isinstance(exc, RedisTimeoutError):
        return "timeout"
    if isinstance(exc, RedisConnectionError):
        return "unreachable"
    if isinstance(exc, rx.ResponseError):
        message = str(exc)
        wrapped = _SCRIPT_ERROR_CODE.match(message)
        code = wrapped.group(1) if wrapped else message.partition(" ")[0]
        return _REFUSAL_REASONS.get(code)
    return None


class StagedoorError(Exception):
    code: ClassVar[str] = "error"
    title: ClassVar[str] = "Error"

    def __init__(self, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or self.title)
        self.detail = detail or self.title
        self.extra: dict[str, Any] = extra


# Categories. problems.STATUS_BY_CATEGORY maps each to its HTTP status.
class BadRequest(StagedoorError):
    code = "bad-request"
    title = "Bad request"


class InvalidInput(StagedoorError):
    """Well-formed but semantically invalid input (422)."""

    code = "invalid-input"
    title = "Invalid input"

    def __init__(self, detail: str | None = None, errors: list[dict[str, str]] | None = None, **extra: Any):
        if errors is not None:
            extra["errors"] = errors
        super().__init__(detail, **extra)


class Unauthorized(StagedoorError):
    code = "unauthorized"
    title = "Authentication required"


class Forbidden(StagedoorError):
    code = "forbidden"
    title = "Not allowed"


class NotFound(StagedoorError):
    code = "not-found"
    title = "Not found"


class Conflict(StagedoorError):
    code = "conflict"
    title = "Conflict"


class Gone(StagedoorError):
    code = "gone"
    title = "Gone"


class PaymentRequired(StagedoorError):
    code = "payment-required"
    title = "Payment required"


class PayloadTooLarge(StagedoorError):
    code = "payload-too-large"
    title = "Request body too large"


class UnsupportedMediaType(StagedoorError):
    code = "unsupported-media-type"
    title = "Unsupported media type"


class RateLimited(StagedoorError):
    code = "rate-limited"
    title = "Too many requests"

    def __init__(self, retry_after_s: int, detail: str | None = None, **extra: Any) -> None:
        super().__init__(detail or "slow down and retry later", **extra)
        self.retry_after_s = max(1, int(retry_after_s))


class BadGateway(StagedoorError):
    code = "bad-gateway"
    title = "Upstream failure"


class Unavailable(StagedoorError):
    code = "unavailable"
    title = "Service unavailable"

    def __init__(self, detail: str | None = None, retry_after_s: int | None = None, **extra: Any) -> None:
        super().__init__(detail, **extra)
        self.retry_after_s = retry_after_s


class RedisUnavailable(Unavailable):
    """What the edge answers for a request that met a Redis it could not use for now
    (:func:`redis_unavailable_reason`); the reason is in the problem as ``reason``."""

    code = "redis-unavailable"
    title = "Redis is unavailable"
    RETRY_AFTER_S = 2  # a queue page polls every 2 s anyway
    DETAILS = {
        "unreachable": "Redis is unreachable",
        "timeout": "Redis did not answer in time",
        "loading": "Redis is loading its data after a restart",
        "out-of-memory": "Redis is out of memory and refuses writes",
        "read-only": "Redis is a read-only replica (a failover may be in progress)",
        "cluster-down": "a Redis Cluster slot has no master",
        "master-down": "the Redis replica lost its master",
        "try-again": "a Redis Cluster slot is being moved",
        "busy": "Redis is busy running a script",
    }

    def __init__(self, reason: str = "unreachable") -> None:
        detail = self.DETAILS.get(reason, "Redis is unavailable")
        super().__init__(f"{detail}; try again in a moment", retry_after_s=self.RETRY_AFTER_S, reason=reason)


# Shared concrete errors used by the HTTP plumbing.
class MalformedJson(BadRequest):
    code = "malformed-json"
    title = "Malformed JSON body"


class ValidationFailed(InvalidInput):
    code = "validation-failed"
    title = "Request failed validation"


class DependencyUnavailable(Unavailable):
    code = "dependency-unavailable"
    title = "A dependency is unavailable"
