"""A service app under test: ``await service_client("ticketing")`` starts that app (waitingroom,
ticketing, admission, worker) on pytest-aiohttp, served as stagedoor.cli serves it: through
stagedoor/hot_http.py's HotSite (the waiting room's status and join on the hot path, everything
else handed to aiohttp)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from stagedoor.cli import COMPONENTS
from stagedoor.hot_http import HotSite
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings


class HotTestServer(TestServer):
    """pytest-aiohttp's TestServer listening through HotSite, as the services do in production."""

    async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self._loop = loop
        self.runner = await self._make_runner(handler_cancellation=True, **kwargs)
        await self.runner.setup()
        self.site = HotSite(self.runner, self.host, self.port or 0)
        await self.site.start()
        self.port = self.site.port
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")


@pytest.fixture
def service_client(aiohttp_client: Any, settings: Settings, keyring: KeyRing) -> Callable[..., Any]:
    """``await service_client("ticketing")`` -> a pytest-aiohttp TestClient on that app (HotSite)."""

    async def start(name: str, settings_: Settings | None = None, keyring_: KeyRing | None = None) -> Any:
        app = COMPONENTS[name].create_app(settings_ or settings, keyring_ or keyring)
        return await aiohttp_client(HotTestServer(app))

    return start
