"""The Locust on-sale (loadtest/locustfile.py) run headless for a few seconds against a started
stack: no 5xx, fans bought tickets, bots were refused, the SRE raised the rate."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.stack import running_stack

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]
ROOT = Path(__file__).resolve().parents[2]


def test_a_short_headless_on_sale_sells_tickets_without_server_errors(redis_url: str, database_url: str,
                                                                      redis_prefix: str, tmp_path: Path) -> None:
    with running_stack(("admission", "waitingroom", "ticketing", "worker"), redis_url=redis_url,
                       database_url=database_url, prefix=redis_prefix, workdir=tmp_path) as env:
        argv = [str(Path(sys.executable).parent / "locust"), "-f", str(ROOT / "loadtest" / "locustfile.py"),
                "--headless", "-u", "30", "-r", "10", "-t", "14s", "--only-summary", "--stop-timeout", "5",
                "--stagedoor-waitingroom", env.url("waitingroom"), "--stagedoor-ticketing", env.url("ticketing"),
                "--stagedoor-admission", env.url("admission"), "--stagedoor-admin-key", env.admin_api_key,
                "--stagedoor-seats", "200", "--stagedoor-rate", "4", "--stagedoor-pre-start-s", "2",
                "--stagedoor-raise-after-s", "3", "--stagedoor-pow", "6"]
        proc = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=120)
    output = proc.stdout + proc.stderr
    line = next((ln for ln in output.splitlines() if ln.startswith("stagedoor-locust-summary ")), None)
    assert line is not None, output[-3000:]
    summary = json.loads(line.split(" ", 1)[1])
    print(line)
    assert summary["http_5xx"] == 0, (summary, output[-3000:])
    assert summary.get("no_response", 0) == 0, summary
    # an order holds 1 to 4 tickets, out of the 200 seats on sale, bought by admitted fans only
    assert 0 < summary.get("orders", 0) <= summary["tickets_bought"] <= 200, (summary, output[-4000:])
    assert summary.get("joined_before_start", 0) > 0 and summary.get("admitted", 0) >= summary["orders"], summary
    assert summary.get("bot_join_refused", 0) > 0, summary
    assert summary.get("bot_join_let_through", 0) == 0 and summary.get("bot_hold_let_through", 0) == 0, summary
    assert summary.get("rate_raised") == 1, summary
