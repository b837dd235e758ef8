"""What a connection passed to aiohttp sees of the socket (:class:`_TransportView`: its reading and
writing go through the protocol's one owner of flow control) and the framing tracker of
requests handed off for good."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

import httptools

from stagedoor.hot_http.limits import _BODY, _HEAD

if TYPE_CHECKING:  # the protocol owns these; they only call back into it
    from stagedoor.hot_http.protocol import HotProtocol


class _TransportView(asyncio.Transport):
    """The connection's transport as aiohttp's protocol sees it: the socket's own, except that
    pausing and resuming reading are requests to the :class:`HotProtocol`, which alone decides
    (aiohttp pauses when a body buffer or its queue of pipelined requests is full)."""

    __slots__ = ("__weakref__", "_transport", "owner")  # a loop's sendfile keeps it in a weak mapping

    def __init__(self, owner: HotProtocol, transport: asyncio.Transport) -> None:
        super().__init__()
        self.owner = owner
        self._transport = transport

    def pause_reading(self) -> None:
        self.owner.aiohttp_reading(False)

    def resume_reading(self) -> None:
        self.owner.aiohttp_reading(True)

    def is_reading(self) -> bool:
        return self.owner.aiohttp_wants_reading

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._transport.write(data)

    def writelines(self, list_of_data: Any) -> None:
        self._transport.writelines(list_of_data)

    def write_eof(self) -> None:
        self._transport.write_eof()

    def can_write_eof(self) -> bool:
        return self._transport.can_write_eof()

    def close(self) -> None:
        self._transport.close()

    def abort(self) -> None:
        self._transport.abort()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return self._transport.get_extra_info(name, default)

    def set_protocol(self, protocol: asyncio.BaseProtocol) -> None:
        self._transport.set_protocol(protocol)

    def get_protocol(self) -> asyncio.BaseProtocol:
        return self._transport.get_protocol()

    def get_write_buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def get_write_buffer_limits(self) -> tuple[int, int]:
        return self._transport.get_write_buffer_limits()

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self._transport.set_write_buffer_limits(high, low)

    def __getattr__(self, name: str) -> Any:  # what else a loop reads of its transport (sendfile's)
        return getattr(self._transport, name)


# what a connection waits for from the client (None: the server's turn), each with its deadline


class _Frames:
    """httptools' callbacks following the requests of a handed-off connection as they go by to
    aiohttp, for their deadlines only (aiohttp reads them)."""

    __slots__ = ("owner", "parser")

    def __init__(self, owner: HotProtocol) -> None:
        self.owner = owner
        self.parser = httptools.HttpRequestParser(self)

    def on_message_begin(self) -> None:
        self.owner._expect(_HEAD)

    def on_headers_complete(self) -> None:
        self.owner._expect(_BODY)

    def on_message_complete(self) -> None:
        self.owner._expect(None)
