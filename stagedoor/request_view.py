"""What the edge and the shared request helpers read of a request and of a response, as protocols.

A request reaches them as aiohttp's ``web.Request`` or, on a hot route, as the lean
:class:`stagedoor.hot_http.HotRequest`; a handler's response is aiohttp's ``web.StreamResponse``
or a :class:`stagedoor.hot_http.HotResponse`. Both kinds satisfy these protocols, so the edge,
the CSRF guard, problem rendering, bearer tokens and rate limits serve either way.
"""

from __future__ import annotations

from collections.abc import Mapping, MutableMapping
from typing import Protocol

from aiohttp import web
from multidict import MultiMapping


class RequestView(Protocol):
    """The parts of a request the shared helpers read (``web.Request`` has them all)."""

    @property
    def app(self) -> web.Application: ...

    @property
    def method(self) -> str: ...

    @property
    def path(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def remote(self) -> str | None: ...

    @property
    def headers(self) -> MultiMapping[str]: ...

    @property
    def cookies(self) -> Mapping[str, str]: ...

    @property
    def match_info(self) -> Mapping[str, str]: ...


class ResponseView(Protocol):
    """The parts of a handler's response the edge reads and adds headers to."""

    @property
    def status(self) -> int: ...

    @property
    def prepared(self) -> bool: ...

    @property
    def headers(self) -> MutableMapping[str, str]: ...
