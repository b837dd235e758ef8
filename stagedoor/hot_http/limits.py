"""The hot layer's limits and timeouts, and the header names it looks at."""

from __future__ import annotations

import re

MAX_HEAD_BYTES = 8000  # a longer head is handed off (aiohttp applies its own limits: 8190 per line)
MAX_HEADERS = 64  # more are handed off (aiohttp refuses more than 128)
# input held beyond the request in progress (pipelined requests) before reading pauses; one more
# read of the socket (up to 256 KiB with uvloop) can arrive on top of it
MAX_BUFFERED_BYTES = 64 * 1024
KEEPALIVE_S = 75.0  # an idle connection is closed after this
HEAD_TIMEOUT_S = 30.0  # a request's head, from its first byte to its blank line
BODY_TIMEOUT_S = 60.0  # a request's body, from the end of its head (16 MiB at the largest: ~280 KB/s)
SHUTDOWN_TIMEOUT_S = 10.0

_HOST = "Host"
_CONTENT_TYPE = "Content-Type"
_CONNECTION = "Connection"
_HANDED_OFF_HEADERS = frozenset({b"transfer-encoding", b"expect", b"upgrade", b"te", b"http2-settings"})
_DIGITS = re.compile(rb"^[0-9]{1,12}$")


# what a connection waits for, each with its deadline
_IDLE, _HEAD, _BODY = "idle", "head", "body"
