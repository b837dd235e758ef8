"""`stagedoor up` as a newcomer runs it: embedded stores, every service answering, clean Ctrl-C."""

from __future__ import annotations

import time
import urllib.request
from pathlib import Path

import psutil
import pytest

from stagedoor.dev_stripe import STAND_IN_COMPLETION
from stagedoor.embedded import free_port
from tests.support.up_process import running_up

pytestmark = pytest.mark.slow


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read()


def _processes_using(path: Path) -> list[psutil.Process]:
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        cmdline = " ".join(proc.info["cmdline"] or [])
        if str(path) in cmdline:
            found.append(proc)
    return found


def test_up_serves_every_service_on_embedded_stores_and_stops_cleanly(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    ports = {name: free_port() for name in ("WAITINGROOM", "TICKETING", "ADMISSION", "WORKER")}
    env = {f"STAGEDOOR_{name}_PORT": str(port) for name, port in ports.items()}
    with running_up(data_dir, env) as up:
        banner = up.banner
        assert "stagedoor is up" in banner, banner
        for port in ports.values():
            assert f"http://127.0.0.1:{port}" in banner
        assert "admin API key: sd_admin_" in banner
        pages = {"shop": f"http://127.0.0.1:{ports['TICKETING']}/",
                 "organizer": f"http://127.0.0.1:{ports['TICKETING']}/organizer",
                 "admin console": f"http://127.0.0.1:{ports['ADMISSION']}/console"}
        for label, url in pages.items():
            assert url in banner, label
            status, body = _get(url)
            assert status == 200 and b"<html" in body.lower(), (label, status, body[:300])

        for name, port in ports.items():
            base = f"http://127.0.0.1:{port}"
            for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
                status, body = _get(base + path)
                assert status == 200, (name, path, body[:300])
        status, body = _get(f"http://127.0.0.1:{ports['WAITINGROOM']}/.well-known/jwks.json")
        assert status == 200 and b'"Ed25519"' in body
    assert up.returncode == 0, banner + up.rest
    assert "data kept" in up.rest
    time.sleep(0.5)
    assert _processes_using(data_dir) == [], "embedded servers survived Ctrl-C"
    # Data and laptop secrets are kept for the next run.
    assert (data_dir / "postgres" / "PG_VERSION").exists()
    assert (data_dir / "secrets.json").exists()
    assert oct((data_dir / "secrets.json").stat().st_mode & 0o777) == "0o600"


def test_up_with_stripe_and_no_api_base_runs_a_local_stripe_test_server_and_stops_it(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    env = {f"STAGEDOOR_{name}_PORT": str(free_port()) for name in ("WAITINGROOM", "TICKETING", "ADMISSION", "WORKER")}
    env["STAGEDOOR_PAYMENT_GATEWAY"] = "stripe"
    with running_up(data_dir, env) as up:
        banner = up.banner
        assert "stagedoor is up" in banner, banner
        [line] = [line for line in banner.splitlines() if line.strip().startswith("stripe (dev):")]
        assert "local Stripe test server" in line and "no real money" in line
        url = line.split()[2]
        assert url.startswith("http://127.0.0.1:")
        request = urllib.request.Request(url + "/v1/balance", headers={"Authorization": "Bearer sk_test_probe"})
        with urllib.request.urlopen(request, timeout=5) as resp:
            assert resp.status == 200
        status, stand_in = _get(url + "/js.stripe.com/v3/")  # what the checkout page loads, made payable
        assert status == 200 and stand_in.decode().endswith(STAND_IN_COMPLETION)
        status, _ = _get(f"http://127.0.0.1:{env['STAGEDOOR_TICKETING_PORT']}/readyz")
        assert status == 200
    assert up.returncode == 0, banner + up.rest
    time.sleep(0.5)
    assert _processes_using(data_dir) == [], "the local Stripe server survived Ctrl-C"
    assert (data_dir / "stripe" / "localstripe.log").exists()
