"""Real-browser tests: Debian's Chromium driven by Playwright, against the three services
started in-process on free ports with real Redis and PostgreSQL (``start_stack(worker=True)``
adds the background worker: outbox relay, bus consumers such as the dashboard counters).

Skipped (with the reason) only when /usr/bin/chromium or the playwright package is missing.
Screenshots of key steps go to test-artifacts/browser/ (gitignored).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stagedoor.cli import COMPONENTS
from stagedoor.keys import KeyRing
from tests.support.settings import ADMIN_KEY

CHROMIUM = Path("/usr/bin/chromium")
HAS_CHROMIUM = CHROMIUM.exists()
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
LAUNCH_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking"]

try:
    from playwright.async_api import Browser, Page, async_playwright
except ImportError:  # pragma: no cover - the dev extra installs it
    async_playwright = None  # type: ignore[assignment]
    Browser = Page = Any  # type: ignore[misc,assignment]



def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Stack:
    """The three services on 127.0.0.1, plus API helpers for seeding."""

    def __init__(self, urls: dict[str, str], admin_headers: dict[str, str]) -> None:
        self.urls = urls
        self.admin_headers = admin_headers
        self.http = aiohttp.ClientSession()

    @property
    def shop(self) -> str:
        return self.urls["ticketing"]

    @property
    def queue(self) -> str:
        return self.urls["waitingroom"]

    @property
    def admission(self) -> str:
        return self.urls["admission"]

    async def call(self, method: str, url: str, *, expect: int | tuple[int, ...] = (200, 201),
                   **kwargs: Any) -> Any:
        async with self.http.request(method, url, **kwargs) as res:
            body = await res.json(content_type=None) if res.status != 204 else None
            expected = (expect,) if isinstance(expect, int) else expect
            assert res.status in expected, f"{method} {url} -> {res.status} {body}"
            return body

    async def create_event(self, organizer_headers: dict[str, str], *, title: str = "Browser Test Night",
                           sections: int = 1, rows: int = 2, seats: int = 6, per_order: int = 4) -> dict[str, Any]:
        starts = datetime.now(UTC) + timedelta(days=30)
        seat_map = {"sections": [
            {"name": f"S{s + 1}", "rows": [
                {"label": chr(ord("A") + r), "seats": [
                    {"number": str(n + 1), "tier": "front" if r == 0 else "back"} for n in range(seats)]}
                for r in range(rows)]}
            for s in range(sections)]}
        body = {
            "title": title, "description": "A test event", "category": "concert",
            "venue": {"name": "Hall", "city": "Lyon", "address": "1 rue de la Paix"},
            "starts_at": starts.isoformat(), "ends_at": (starts + timedelta(hours=3)).isoformat(),
            "currency": "EUR", "max_tickets_per_order": per_order,
            "tiers": [{"code": "front", "name": "Front", "price": 8000},
                      {"code": "back", "name": "Back", "price": 4500}],
            "seat_map": seat_map,
        }
        return await self.call("POST", f"{self.shop}/api/events", json=body, headers=organizer_headers, expect=201)

    async def put_room(self, room: str, **config: Any) -> dict[str, Any]:
        return await self.call("PUT", f"{self.admission}/admin/rooms/{room}", json=config,
                               headers=self.admin_headers)

    async def close(self) -> None:
        await self.http.close()


@pytest.fixture
async def start_stack(make_settings: Callable[..., Any], keyring: KeyRing,
                      admin_headers: dict[str, str]) -> AsyncIterator[Callable[..., Any]]:
    runners: list[web.AppRunner] = []
    stacks: list[Stack] = []

    async def start(*, run_controller: bool = True, worker: bool = False, **overrides: Any) -> Stack:
        names = ("waitingroom", "ticketing", "admission") + (("worker",) if worker else ())
        ports = {name: free_port() for name in names}
        urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
        settings = make_settings(
            public_waitingroom_url=urls["waitingroom"], public_ticketing_url=urls["ticketing"],
            public_admission_url=urls["admission"], **overrides)
        for name, port in ports.items():
            if name == "admission":
                from admission.app import create_app as create_admission
                app = create_admission(settings, keyring, run_controller=run_controller)
            else:
                app = COMPONENTS[name].create_app(settings, keyring)
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            runners.append(runner)
            await web.TCPSite(runner, "127.0.0.1", port).start()
        stack = Stack(urls, admin_headers)
        stacks.append(stack)
        return stack

    yield start
    for stack in stacks:
        await stack.close()
    for runner in reversed(runners):
        await runner.cleanup()


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    if not HAS_CHROMIUM:
        pytest.skip("browser tests need Debian's Chromium at /usr/bin/chromium (apt-get install chromium)")
    if async_playwright is None:
        pytest.skip("browser tests need the playwright package (pip install -e '.[dev]')")
    async with async_playwright() as pw:
        b = await pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            await b.close()


@pytest.fixture
def shot(request: pytest.FixtureRequest) -> Callable[..., Any]:
    """``await shot(page, "step")`` saves test-artifacts/browser/<test>-NN-step.png."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for old in ARTIFACTS.glob(f"{request.node.name}-*.png"):  # no stale steps from an earlier run
        old.unlink()
    counter = {"n": 0}

    async def take(page: Page, step: str) -> Path:
        counter["n"] += 1
        path = ARTIFACTS / f"{request.node.name}-{counter['n']:02d}-{step}.png"
        await page.screenshot(path=str(path), full_page=True)
        return path

    return take


def signed_in_script(token: str, user: dict[str, Any]) -> str:
    """An init script that puts a signed-in session in sessionStorage on every origin."""
    import json

    return (f"try {{ sessionStorage.setItem('sd_access_token', {json.dumps(token)});"
            f" sessionStorage.setItem('sd_user', {json.dumps(json.dumps(user))}); }} catch (e) {{}}")


__all__ = ["ADMIN_KEY", "Stack", "signed_in_script"]
