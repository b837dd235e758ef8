"""Background loops log a failed turn by what it was: an outage (Redis that cannot serve for now)
is a warning with the reason; a bug keeps its traceback at ERROR."""

from __future__ import annotations

import logging
from typing import Any

from redis import exceptions as rx

from stagedoor.logs import log_failure

logger = logging.getLogger("tests.loop")


def test_an_outage_is_a_warning_with_its_reason_and_no_traceback(caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="tests.loop")
    try:
        raise rx.ReadOnlyError("You can't write against a read only replica.")
    except rx.RedisError as exc:
        log_failure(logger, "sweep_failed", exc, loop="sweep")
    (record,) = caplog.records
    assert (record.getMessage(), record.levelno, record.exc_info) == ("sweep_failed", logging.WARNING, None)
    assert (record.reason, record.loop) == ("read-only", "sweep")  # type: ignore[attr-defined]
    assert "read only replica" in record.error  # type: ignore[attr-defined]


def test_a_bug_is_an_error_with_its_traceback(caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="tests.loop")
    for exc in (KeyError("x"), rx.ResponseError("WRONGTYPE Operation against a key holding the wrong kind of value")):
        try:
            raise exc
        except Exception as caught:
            log_failure(logger, "sweep_failed", caught, loop="sweep")
    assert [(r.levelno, r.exc_info is not None) for r in caplog.records] == [(logging.ERROR, True)] * 2
    assert all(r.loop == "sweep" for r in caplog.records)  # type: ignore[attr-defined]
