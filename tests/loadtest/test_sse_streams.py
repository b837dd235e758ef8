"""loadtest/sse_streams.py: the CPU of open event streams (a short real run)."""

from __future__ import annotations

import pytest

from loadtest.sse_streams import main, measure


async def test_open_streams_are_measured_and_each_got_its_first_status() -> None:
    figures = await measure(streams=20, seconds=1.0, kind="paused", ahead=50)
    assert figures["streams"] == 20 and figures["seconds"] >= 1.0
    assert figures["server_cores"] >= 0 and figures["redis_cores"] >= 0
    assert figures["server_us_per_stream_s"] == pytest.approx(figures["server_cores"] / 20 * 1e6)
    assert figures["bytes_per_stream_at_start"] > 300  # a 200 head and the first status event each
    assert figures["bytes_per_stream_s"] >= 0


def test_bounds_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--streams", "0"], ["--streams", "20001"], ["--seconds", "500"], ["--room", "busy"]):
        with pytest.raises(SystemExit):
            main(argv)
    assert "usage" in capsys.readouterr().err
