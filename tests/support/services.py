"""A service app under test: ``await service_client("ticketing")`` starts that app (waitingroom,
ticketing, admission, worker) on pytest-aiohttp, served as stagedoor.cli serves it: through
stagedoor/hot_http/'s HotSite (the waiting room's status and join on the hot path, everything
else handed to aiohttp), or through aiohttp's own TCPSite when the settings say ``hot_http=False``
(``STAGEDOOR_TEST_HOT_HTTP=false`` makes that the default of ``make_settings``, to run the suite
without the hot layer)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from yarl import URL

from stagedoor.cli import COMPONENTS
from stagedoor.hot_http import make_site
from stagedoor.keys import KeyRing
from stagedoor.settings import Settings


class HotTestServer(TestServer):
    """pytest-aiohttp's TestServer listening as the services do in production: through HotSite,
    or with ``hot=False`` through aiohttp's own TCPSite (stagedoor.hot_http.make_site)."""

    def __init__(self, app: Any, *, hot: bool = True, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._hot = hot

    async def start_server(self, loop: asyncio.AbstractEventLoop | None = None, **kwargs: Any) -> None:
        if self.runner:
            return
        self._loop = loop
        self.runner = await self._make_runner(handler_cancellation=True, **kwargs)
        await self.runner.setup()
        self.site = make_site(self.runner, self.host, self.port or 0, hot=self._hot)
        await self.site.start()
        self.port = self.site.port
        self.scheme = "http"
        self._root = URL(f"http://{self.host}:{self.port}")


@pytest.fixture
def service_client(aiohttp_client: Any, settings: Settings, keyring: KeyRing) -> Callable[..., Any]:
    """``await service_client("ticketing")`` -> a pytest-aiohttp TestClient on that app, served
    through HotSite unless the settings say ``hot_http=False``."""

    async def start(name: str, settings_: Settings | None = None, keyring_: KeyRing | None = None) -> Any:
        chosen = settings_ or settings
        app = COMPONENTS[name].create_app(chosen, keyring_ or keyring)
        return await aiohttp_client(HotTestServer(app, hot=chosen.hot_http))

    return start
