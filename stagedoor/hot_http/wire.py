"""The HTTP/1.1 wire of the hot layer: its limits, request heads planned (served hot, passed to
aiohttp or handed off for good) and responses encoded."""

from __future__ import annotations

import time
from collections.abc import Sequence
from email.utils import formatdate
from http import HTTPStatus
from typing import Any

import httptools
from aiohttp.http import SERVER_SOFTWARE
from multidict import CIMultiDict

from stagedoor.hot_http.limits import _CONNECTION, _CONTENT_TYPE, _DIGITS, _HANDED_OFF_HEADERS, _HOST, MAX_HEADERS
from stagedoor.hot_http.routes import HotRoute

# ---------------------------------------------------------------- responses on the wire

_STATUS_LINES: dict[tuple[int, bool], str] = {}
_date: tuple[str, int] = ("", -1)  # the Date header, formatted once a second, and that second


def _status_line(status: int, version11: bool = True) -> str:
    line = _STATUS_LINES.get((status, version11))
    if line is None:
        try:
            reason = HTTPStatus(status).phrase
        except ValueError:
            reason = ""
        line = _STATUS_LINES[status, version11] = f"HTTP/1.{int(version11)} {status} {reason}\r\n"
    return line


def _http_date() -> str:
    global _date
    now = int(time.time())
    if now != _date[1]:
        _date = formatdate(now, usegmt=True), now
    return _date[0]


_OURS = ("Content-Length", "Connection", "Transfer-Encoding")  # set here, never by a handler


def encode_response(response: Any, keep_alive: bool, version11: bool = True) -> bytes:
    """The bytes of a complete response (a HotResponse or a web.Response with a bytes body), in
    the request's HTTP version (1.1, or 1.0 as aiohttp answers it)."""
    body = response.body or b""
    if type(body) is not bytes:  # a web.Response built from a payload: never on our hot routes
        raise TypeError(f"a hot route answered with a {type(body).__name__} body")
    headers = response.headers
    for name in _OURS:
        if name in headers:
            raise ValueError(f"a hot route set {name}")
    block = "".join([f"{name}: {value}\r\n" for name, value in headers.items()])
    count = len(headers)
    if block.count("\n") != count or block.count("\r") != count or "\x00" in block:
        raise ValueError("a response header carries a line break")  # no header injection, ever
    if version11:
        connection = "" if keep_alive else "Connection: close\r\n"
    else:
        connection = "Connection: keep-alive\r\n" if keep_alive else ""
    return (f"{_status_line(response.status, version11)}{block}Content-Length: {len(body)}\r\n"
            f"Date: {_http_date()}\r\nServer: {SERVER_SOFTWARE}\r\n{connection}\r\n").encode() + body


# ---------------------------------------------------------------- the request head

class _Head:
    """httptools' callbacks for one request head."""

    __slots__ = ("complete", "headers", "url")

    def __init__(self) -> None:
        self.url = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.complete = True


class _Plan:
    """A request whose framing we know: served hot (``route`` set) or passed to aiohttp (``route``
    None), its body ``length`` bytes after the head."""

    __slots__ = ("headers", "keep_alive", "length", "match_info", "method", "path", "route", "version11")

    def __init__(self, length: int, route: HotRoute | None = None, match_info: dict[str, str] | None = None,
                 headers: CIMultiDict[str] | None = None, keep_alive: bool = True, method: str = "",
                 path: str = "", version11: bool = True) -> None:
        self.length, self.route, self.match_info, self.headers = length, route, match_info, headers
        self.keep_alive, self.method, self.path, self.version11 = keep_alive, method, path, version11


def plan_request(head_bytes: bytes, routes: Sequence[HotRoute], max_body: int) -> _Plan | None:
    """How to serve the request whose complete head (through its blank line) is ``head_bytes``:
    a plan to serve it hot or to pass it to aiohttp, or None when its framing is not plain enough
    to find where it ends (the connection is then handed to aiohttp for good). See the module
    docstring for what is served hot."""
    head = _Head()
    parser = httptools.HttpRequestParser(head)
    try:
        parser.feed_data(head_bytes)
    except (httptools.HttpParserError, httptools.HttpParserUpgrade):  # malformed, or an upgrade / CONNECT
        return None
    raw_headers = head.headers
    if not head.complete or len(raw_headers) > MAX_HEADERS:
        return None
    version = parser.get_http_version()
    if version not in ("1.1", "1.0"):
        return None
    length = 0
    content_lengths = 0
    for name, value in raw_headers:  # the framing, as llhttp (and so aiohttp) reads it
        lowered = name.lower()
        if lowered in _HANDED_OFF_HEADERS:
            return None
        if lowered == b"content-length":
            content_lengths += 1
            if content_lengths > 1 or not _DIGITS.match(value):
                return None
            length = int(value)
    method = parser.get_method().decode("ascii", "replace")
    path = head.url.decode("ascii", "replace")
    for route in routes:
        if route.method == method:
            match = route.pattern.match(path)
            if match is not None:
                break
    else:
        return _Plan(length)
    # a hot route: its headers as aiohttp decodes them
    headers: CIMultiDict[str] = CIMultiDict([(name.decode("utf-8", "surrogateescape"),
                                              value.decode("utf-8", "surrogateescape"))
                                             for name, value in raw_headers])
    if (length > max_body or len(headers.getall(_HOST, ())) != 1 or len(headers.getall(_CONNECTION, ())) > 1
            or (length and headers.get(_CONTENT_TYPE) != "application/json")):
        return _Plan(length)  # aiohttp's answers: 413, no Host, ...
    version11 = version == "1.1"
    keep_alive = version11
    connection = headers.get(_CONNECTION)
    if connection is not None:
        token = connection.strip().lower()
        if token not in ("close", "keep-alive"):
            return _Plan(length)
        keep_alive = token == "keep-alive"
    return _Plan(length, route, match.groupdict(), headers, keep_alive, method, path, version11)
