"""``stagedoor up --prometheus``: the real Prometheus (Debian package ``prometheus``) beside the
local services, scraping all four with the repository's alert rules, data under the up data dir.

The configuration is written as JSON (YAML is a superset of JSON, so Prometheus reads it as is).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

RULES = Path(__file__).resolve().parent.parent / "ops" / "prometheus" / "alerts.yml"


class PrometheusMissing(RuntimeError):
    pass


def scrape_config(targets: Mapping[str, str], self_target: str, rules: Path = RULES,
                  interval_s: int = 5) -> dict[str, Any]:
    """``targets``: job name -> "host:port" of each service's /metrics."""
    return {
        "global": {"scrape_interval": f"{interval_s}s", "evaluation_interval": f"{interval_s}s"},
        "rule_files": [str(rules)],
        "scrape_configs": [
            *({"job_name": name, "static_configs": [{"targets": [target], "labels": {"service": name}}]}
              for name, target in targets.items()),
            {"job_name": "prometheus", "static_configs": [{"targets": [self_target]}]},
        ],
    }


class DevPrometheus:
    def __init__(self, data_dir: Path, port: int, targets: Mapping[str, str], host: str = "127.0.0.1",
                 binary: str | None = None) -> None:
        self.binary = binary or shutil.which("prometheus")
        self.data_dir = data_dir
        self.host, self.port = host, port
        self.targets = dict(targets)
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self) -> DevPrometheus:
        if not self.binary:
            raise PrometheusMissing("no `prometheus` binary on PATH (Debian: apt-get install prometheus)")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self.data_dir / "prometheus.yml"
        config.write_text(json.dumps(scrape_config(self.targets, f"{self.host}:{self.port}"), indent=2))
        log = (self.data_dir / "prometheus.log").open("ab")
        self.process = subprocess.Popen(
            [self.binary, f"--config.file={config}", f"--storage.tsdb.path={self.data_dir / 'tsdb'}",
             f"--web.listen-address={self.host}:{self.port}", "--log.level=warn"],
            stdout=log, stderr=log, start_new_session=True)
        log.close()
        return self

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
