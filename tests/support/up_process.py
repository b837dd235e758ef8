"""Running `stagedoor up` as a real process in a test: start it with a clean STAGEDOOR_*
environment, read its banner, stop it with Ctrl-C (SIGINT) as a newcomer would."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

BANNER_END = "Ctrl-C stops everything"


@dataclass
class UpProcess:
    proc: subprocess.Popen[str]
    banner: str = ""
    rest: str = field(default="")  # what it printed after Ctrl-C

    @property
    def returncode(self) -> int | None:
        return self.proc.returncode


@contextlib.contextmanager
def running_up(data_dir: Path, env: Mapping[str, str], args: Sequence[str] = ("--no-demo",),
               banner_timeout_s: float = 90.0) -> Iterator[UpProcess]:
    """``stagedoor up --data-dir DATA_DIR *args`` with ``env`` on top of the caller's environment
    minus every STAGEDOOR_* variable; yields once the banner is printed (or the process ended)."""
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("STAGEDOOR_")}
    full_env.update(env)
    proc = subprocess.Popen([sys.executable, "-m", "stagedoor.cli", "up", "--data-dir", str(data_dir), *args],
                            env=full_env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    up = UpProcess(proc)
    try:
        output: list[str] = []
        deadline = time.monotonic() + banner_timeout_s
        assert proc.stdout is not None
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if BANNER_END in line:
                break
        up.banner = "".join(output)
        yield up
    finally:
        proc.send_signal(signal.SIGINT)
        try:
            up.rest, _ = proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            up.rest, _ = proc.communicate()
