"""Static files (templates/static) under versioned URLs that browsers cache for good.

Pages name a file through ``static_url("queue.js")`` (a Jinja global), which gives
``/static/queue.js?v=<first 12 hex digits of the content's SHA-256>``. A request carrying the
file's current version is answered ``Cache-Control: public, max-age=31536000, immutable``: a
browser never asks again, so a fan reloading the queue page at an on-sale's peak costs one
request (the page), not one per script revalidated. Any other request for the file (no ``v``,
or the version of an earlier deploy) is answered ``no-cache`` as before: it still gets the
current file, and revalidates next time.

A version is the content's, recomputed when the file's modification time or size changes, so a
file edited under a running dev stack gets a new URL on the next page render.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from pathlib import Path

VERSION_HEX_DIGITS = 12
IMMUTABLE = "public, max-age=31536000, immutable"
REVALIDATE = "no-cache"


class StaticFiles:
    """The files of one directory (not its subdirectories), listed once: a request or a template
    names one of them, or gets a 404 (a request) or a LookupError (a template: a typo fails the
    render instead of shipping a dead link)."""

    def __init__(self, directory: Path, prefix: str = "/static") -> None:
        self.prefix = prefix.rstrip("/")
        self.files = {path.name: path for path in sorted(directory.iterdir()) if path.is_file()}
        self._versions: dict[str, tuple[tuple[int, int], str]] = {}

    def path(self, name: str) -> Path | None:
        return self.files.get(name)

    def version(self, name: str) -> str:
        path = self.files.get(name)
        if path is None:
            raise LookupError(f"no static file {name!r}")
        stat = path.stat()
        key = (stat.st_mtime_ns, stat.st_size)
        known = self._versions.get(name)
        if known is not None and known[0] == key:
            return known[1]
        digest = hashlib.sha256(path.read_bytes()).hexdigest()[:VERSION_HEX_DIGITS]
        self._versions[name] = (key, digest)
        return digest

    def url(self, name: str) -> str:
        return f"{self.prefix}/{name}?v={self.version(name)}"

    def cache_control(self, name: str, requested_version: str | None) -> str:
        """How long a browser may keep this answer: for good when it asked for the current version."""
        return IMMUTABLE if requested_version == self.version(name) else REVALIDATE


@lru_cache(maxsize=8)
def static_files(directory: Path, prefix: str = "/static") -> StaticFiles:
    """One StaticFiles per directory and prefix in a process (pages and routes share it)."""
    return StaticFiles(directory, prefix)
