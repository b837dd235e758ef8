"""A minimal HTTP/1.1 keep-alive client on an asyncio Protocol, for the load driver.

The aiohttp client costs about as much CPU per request as an aiohttp server handler does; on
2 shared cores it then caps what we can measure. This client does the least possible: one
connection per task, one request in flight on it, a prebuilt request head, a response read by
Content-Length (or chunked). It is for load generation against our own loopback servers only,
not a general client: no redirects, no cookies jar, no TLS, no compression.

    resp = await state.http.get(url, headers={"Authorization": "Bearer ..."})
    resp = await state.http.post(url, json_body={"seat_ids": [...]})
    resp.status, resp.headers["content-type"], resp.body, resp.json()
"""

from __future__ import annotations

import asyncio
from functools import lru_cache
from typing import Any
from urllib.parse import urlsplit

import msgspec

from loadtest.scenario import NotLoopback, is_loopback_host

MAX_HEAD_BYTES = 64 * 1024
MAX_BODY_BYTES = 64 * 1024 * 1024
_json_encode = msgspec.json.Encoder().encode
_json_decode = msgspec.json.Decoder().decode


class RawHttpError(Exception):
    """The server answered something this client cannot parse, or closed mid-response."""


class RawResponse:
    __slots__ = ("body", "headers", "status")

    def __init__(self, status: int, headers: dict[str, str], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    def json(self) -> Any:
        return _json_decode(self.body)


@lru_cache(maxsize=4096)
def _target(url: str) -> tuple[str, int, str]:
    parts = urlsplit(url)
    if parts.scheme != "http":
        raise ValueError(f"rawhttp speaks plain http only: {url!r}")
    if not is_loopback_host(parts.hostname):
        raise NotLoopback(f"refusing to connect to {parts.hostname}: loopback targets only")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname or "127.0.0.1", parts.port or 80, path


def build_request(method: str, host: str, port: int, path: str, headers: dict[str, str] | None,
                  body: bytes) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", f"Host: {host}:{port}"]
    if headers:
        lines += [f"{k}: {v}" for k, v in headers.items()]
    if body or method not in ("GET", "HEAD", "DELETE"):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


def parse_head(head: bytes) -> tuple[int, dict[str, str]]:
    """Status and lower-cased headers of a response head (without the blank line)."""
    lines = head.split(b"\r\n")
    status_line = lines[0]
    if not status_line.startswith(b"HTTP/1.") or len(status_line) < 12:
        raise RawHttpError(f"bad status line {status_line[:80]!r}")
    status = int(status_line[9:12])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if not sep:
            raise RawHttpError(f"bad header line {line[:80]!r}")
        key = name.strip().lower().decode("latin-1")
        val = value.strip().decode("latin-1")
        headers[key] = f"{headers[key]}, {val}" if key in headers and key != "set-cookie" else val
    return status, headers


def _dechunk(data: bytearray) -> tuple[bytes, int] | None:
    """Decode a complete chunked body at the start of ``data``: (body, bytes consumed) or None if incomplete."""
    out = bytearray()
    pos = 0
    while True:
        eol = data.find(b"\r\n", pos)
        if eol < 0:
            return None
        size = int(bytes(data[pos:eol]).split(b";", 1)[0], 16)
        pos = eol + 2
        if size == 0:
            end = data.find(b"\r\n\r\n", pos - 2)
            if end < 0:
                return None
            return bytes(out), end + 4
        if len(data) < pos + size + 2:
            return None
        out += data[pos:pos + size]
        pos += size + 2


class _Protocol(asyncio.Protocol):
    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.waiter: asyncio.Future[RawResponse] | None = None
        self.head: tuple[int, dict[str, str]] | None = None
        self.head_len = 0
        self.closed = False
        self.keep_alive = True

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's TCPTransport is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_exception(RawHttpError(f"connection closed mid-response ({exc})"))

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        if self.waiter is None or self.waiter.done():
            return
        try:
            response = self._parse()
        except Exception as exc:
            self.waiter.set_exception(exc)
            return
        if response is not None:
            self.waiter.set_result(response)

    def _parse(self) -> RawResponse | None:
        buf = self.buffer
        if self.head is None:
            end = buf.find(b"\r\n\r\n")
            if end < 0:
                if len(buf) > MAX_HEAD_BYTES:
                    raise RawHttpError("response head too large")
                return None
            self.head = parse_head(bytes(buf[:end]))
            self.head_len = end + 4
        status, headers = self.head
        if headers.get("connection", "").lower() == "close":
            self.keep_alive = False
        length_text = headers.get("content-length")
        if length_text is not None:
            length = int(length_text)
            if length > MAX_BODY_BYTES:
                raise RawHttpError("response body too large")
            if len(buf) < self.head_len + length:
                return None
            body = bytes(buf[self.head_len:self.head_len + length])
            consumed = self.head_len + length
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            decoded = _dechunk(buf[self.head_len:])
            if decoded is None:
                return None
            body, used = decoded
            consumed = self.head_len + used
        elif status in (204, 304) or 100 <= status < 200:
            body, consumed = b"", self.head_len
        else:
            raise RawHttpError("response without Content-Length or chunked encoding (streaming is not supported)")
        del buf[:consumed]
        self.head = None
        return RawResponse(status, headers, body)


class RawClient:
    """One keep-alive connection (re-opened when the server closes it), one request at a time."""

    def __init__(self, timeout_s: float = 10.0) -> None:
        self.timeout_s = timeout_s
        self._protocol: _Protocol | None = None
        self._address: tuple[str, int] | None = None

    async def _connection(self, host: str, port: int) -> _Protocol:
        proto = self._protocol
        if proto is not None and not proto.closed and proto.keep_alive and self._address == (host, port):
            return proto
        self.close()
        loop = asyncio.get_running_loop()
        _, proto = await loop.create_connection(_Protocol, host, port)
        self._protocol, self._address = proto, (host, port)
        return proto

    async def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                      body: bytes = b"") -> RawResponse:
        host, port, path = _target(url)
        proto = await self._connection(host, port)
        waiter: asyncio.Future[RawResponse] = asyncio.get_running_loop().create_future()
        proto.waiter = waiter
        assert proto.transport is not None
        proto.transport.write(build_request(method, host, port, path, headers, body))
        try:
            async with asyncio.timeout(self.timeout_s):
                response = await waiter
        except BaseException:
            self.close()  # a half-read response leaves the connection unusable
            raise
        finally:
            proto.waiter = None
        if not proto.keep_alive:
            self.close()
        return response

    async def get(self, url: str, headers: dict[str, str] | None = None) -> RawResponse:
        return await self.request("GET", url, headers)

    async def post(self, url: str, json_body: Any = None, headers: dict[str, str] | None = None,
                   body: bytes | None = None) -> RawResponse:
        if body is None:
            body = _json_encode(json_body if json_body is not None else {})
            headers = {"Content-Type": "application/json", **(headers or {})}
        return await self.request("POST", url, headers, body)

    def close(self) -> None:
        if self._protocol is not None and self._protocol.transport is not None:
            self._protocol.transport.close()
        self._protocol = None
        self._address = None
