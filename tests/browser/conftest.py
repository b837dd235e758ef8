"""Real-browser tests: Debian's Chromium driven by Playwright, against the three services
started in-process on free ports with real Redis and PostgreSQL (``start_stack(worker=True)``
adds the background worker: outbox relay, bus consumers such as the dashboard counters).

Skipped (with the reason) only when /usr/bin/chromium or the playwright package is missing.
Screenshots of key steps go to test-artifacts/browser/ (gitignored).
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from stagedoor.cli import COMPONENTS
from stagedoor.keys import KeyRing
from tests.support.browser import Stack

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
