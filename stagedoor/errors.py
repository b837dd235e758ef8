"""The one error tree. Domain code raises these; ``problems.py`` renders them as problem+json.

Each class has a stable ``code`` slug (the problem ``type`` is ``/problems/<code>``) and a
human ``title``; instances carry the facts a client needs in ``extra``.
"""

from __future__ import annotations

from typing import Any, ClassVar

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

# Redis refused, lost, silent or still loading after a restart (redis-py and our pipelining
# client wrap socket errors in these): the edge answers RedisUnavailable, a 503 to retry
REDIS_UNREACHABLE = (RedisConnectionError, RedisTimeoutError)


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
    """What the edge answers for a request that met an unreachable Redis (REDIS_UNREACHABLE)."""

    code = "redis-unavailable"
    title = "Redis is unavailable"
    RETRY_AFTER_S = 2  # a queue page polls every 2 s anyway

    def __init__(self) -> None:
        super().__init__("Redis is unreachable; try again in a moment", retry_after_s=self.RETRY_AFTER_S)


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
