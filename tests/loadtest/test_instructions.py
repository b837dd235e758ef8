"""loadtest/instructions.py: instructions per request under callgrind (a short real run)."""

from __future__ import annotations

import shutil

import pytest

from loadtest.instructions import main, measure

pytestmark = pytest.mark.skipif(shutil.which("valgrind") is None, reason="needs valgrind")


async def test_counts_are_per_request_and_ordered_as_the_work_is() -> None:
    counts = await measure(["hello", "status", "hello"], requests=64, ahead=100)
    assert set(counts) == {"hello", "status"}
    # a hello-world request is tens of thousands of instructions; a status poll does strictly more
    # (token check, one Redis script, a JSON answer with its headers)
    assert 20_000 < counts["hello"] < counts["status"] < 50 * counts["hello"]


def test_unknown_kinds_and_bounds_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["statuz"])
    assert "unknown kind" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["--requests", "1"])
