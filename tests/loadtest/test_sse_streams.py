"""loadtest/sse_streams.py: the CPU of open event streams (a short real run)."""

from __future__ import annotations

import pytest

from loadtest.sse_streams import main, measure


async def test_open_streams_are_measured_and_each_got_its_first_status() -> None:
    figures = await measure(streams=20, seconds=1.0, kind="paused", ahead=50)
    assert figures["streams"] == 20 and 1.0 <= figures["seconds"] < 3.0  # the window asked for, give or take
    # 20 streams keeping watch on a paused room cost a sliver of a core (about 10 us per
    # stream-second in the benchmarks): a stream that polled in a loop or spun would show here
    assert 0 <= figures["server_cores"] < 0.25 and 0 <= figures["redis_cores"] < 0.25, figures
    assert figures["server_us_per_stream_s"] == pytest.approx(figures["server_cores"] / 20 * 1e6)
    assert figures["redis_us_per_stream_s"] == pytest.approx(figures["redis_cores"] / 20 * 1e6)
    assert figures["bytes_per_stream_at_start"] > 300  # a 200 head and the first status event each
    # nothing changes in a paused room: no status event is pushed in the window (a keep-alive
    # comment at most), so under 64 bytes a stream, where one status event is over 100
    assert 0 <= figures["bytes_per_stream_s"] * figures["seconds"] < 64, figures


def test_bounds_are_refused(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--streams", "0"], ["--streams", "20001"], ["--seconds", "500"], ["--room", "busy"]):
        with pytest.raises(SystemExit):
            main(argv)
    assert "usage" in capsys.readouterr().err
