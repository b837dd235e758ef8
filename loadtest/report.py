"""The bench report: every figure beside its raw limit, the machine, and the exact command.

Written to ``loadtest/results/<UTC timestamp>.md`` (and ``.json`` with the same data) and stdout.
"""

from __future__ import annotations

import json
import os
import platform
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from loadtest.limits import Limit
from loadtest.scenario import Figure, LoadConfig, Target

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BUSY_CORES = 0.25  # others using this much CPU during a measurement makes the report warn


@dataclass
class ScenarioOutcome:
    """What happened to one scenario in a bench run."""

    name: str
    description: str = ""
    status: str = "ran"                 # ran | skipped | failed
    note: str = ""                      # why skipped / what failed
    summary: dict[str, Any] | None = None
    figures: list[Figure] = field(default_factory=list)
    targets: tuple[Target, ...] = ()
    load: LoadConfig | None = None
    servers: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0
    others_cores: float | None = None  # CPU used by processes not ours during the run (loadtest.machine)
    # limits measured in rounds interleaved with this scenario's load: its ratio targets use these
    interleaved: dict[str, Limit] = field(default_factory=dict)

    def value_of(self, figure: str) -> float | None:
        for f in self.figures:
            if f.name == figure:
                return f.value
        if self.summary is not None and isinstance(self.summary.get(figure), int | float):
            return float(self.summary[figure])
        return None


@dataclass(frozen=True)
class Row:
    figure: str
    value: float | None
    unit: str
    limit_name: str | None
    limit_value: float | None
    limit_unit: str
    ratio: float | None
    target: str
    met: bool | None


UNITS = {"req_per_s": "req/s", "p50_ms": "ms", "p90_ms": "ms", "p99_ms": "ms", "max_ms": "ms", "error_rate": ""}


def evaluate(outcome: ScenarioOutcome, limits: dict[str, Limit]) -> list[Row]:
    rows: list[Row] = []
    units = {f.name: f.unit for f in outcome.figures}
    for target in outcome.targets:
        value = outcome.value_of(target.figure) if outcome.status == "ran" else None
        limit = None
        if target.limit:
            limit = outcome.interleaved.get(target.limit) or limits.get(target.limit)
        ratio = value / limit.value if value is not None and limit is not None and limit.value else None
        checks: list[bool] = []
        if target.min_ratio is not None and limit is not None:  # a limit not measured in this run: no verdict
            checks.append(ratio is not None and ratio >= target.min_ratio)
        if target.min_value is not None:
            checks.append(value is not None and value >= target.min_value)
        if target.max_value is not None:
            checks.append(value is not None and value <= target.max_value)
        met = (value is not None and all(checks)) if checks else None
        rows.append(Row(
            figure=target.label or f"{outcome.name} {target.figure}",
            value=value, unit=units.get(target.figure, UNITS.get(target.figure, "")),
            limit_name=(f"{target.limit} (interleaved)" if target.limit in outcome.interleaved else target.limit),
            limit_value=limit.value if limit else None,
            limit_unit=limit.unit if limit else "", ratio=ratio, target=target.describe(), met=met,
        ))
    return rows


# ----------------------------------------------------------------------------- machine

def _first_line(argv: list[str]) -> str:
    if shutil.which(argv[0]) is None:
        return "not installed"
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({exc})"
    return (out.stdout or out.stderr).strip().splitlines()[0] if (out.stdout or out.stderr).strip() else "unknown"


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_description(postgres_version: str = "") -> dict[str, str]:
    cpuinfo = _read("/proc/cpuinfo")
    model = re.search(r"^model name\s*:\s*(.+)$", cpuinfo, re.M)
    mem = re.search(r"^MemTotal:\s*(\d+) kB", _read("/proc/meminfo"), re.M)
    os_name = re.search(r'^PRETTY_NAME="?([^"\n]+)', _read("/etc/os-release"), re.M)
    load = _read("/proc/loadavg").split()[:3]
    return {
        "cpus (nproc)": str(os.cpu_count()),
        "cpu model": model.group(1).strip() if model else platform.processor() or "unknown",
        "ram": f"{int(mem.group(1)) / 1024 / 1024:.1f} GiB" if mem else "unknown",
        "os": os_name.group(1) if os_name else platform.platform(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "aiohttp / uvloop / redis-py / hiredis / asyncpg": " / ".join(
            _version(p) for p in ("aiohttp", "uvloop", "redis", "hiredis", "asyncpg")),
        "redis-server": _first_line(["redis-server", "--version"]),
        "postgresql": postgres_version or "not measured",
        "load average at start": " ".join(load) if load else "unknown",
    }


# ----------------------------------------------------------------------------- markdown

def _num(value: float | None, unit: str = "") -> str:
    if value is None:
        return "-"
    if unit == "ms" or abs(value) < 100:
        text = f"{value:,.2f}" if abs(value) < 100 else f"{value:,.1f}"
    else:
        text = f"{value:,.0f}"
    return f"{text} {unit}".strip()


def _met(met: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "-"}[met]


def render_markdown(*, started_at: datetime, command: str, machine: dict[str, str], limits: list[Limit],
                    outcomes: list[ScenarioOutcome], problems: list[str], elapsed_s: float) -> str:
    by_name = {limit.name: limit for limit in limits}
    lines = [f"# stagedoor bench {started_at.strftime('%Y-%m-%d %H:%M:%S UTC')}", "",
             f"Command: `{command}` (total {elapsed_s:.0f} s; loopback only; load generator on the same cores)", ""]
    busiest = max([x for x in [*(o.others_cores for o in outcomes), *(li.others_cores for li in limits)]
                   if x is not None], default=0.0)
    if busiest >= BUSY_CORES:
        lines += [f"**Machine busy:** other processes used up to {busiest:.2f} of {os.cpu_count()} cores during "
                  "some measurements (column \"others' cores\"); those figures and their ratios are unreliable. "
                  "Re-run on a quiet machine for figures to record.", ""]

    lines += ["## Figures against targets", "",
              "| figure | ours | limit (same run) | ratio | target | met? |", "|---|---|---|---|---|---|"]
    any_rows = False
    for outcome in outcomes:
        for row in evaluate(outcome, by_name):
            any_rows = True
            limit = "-"
            if row.limit_name:
                measured = _num(row.limit_value, row.limit_unit) if row.limit_value is not None else "(not measured)"
                limit = f"{row.limit_name} {measured}"
            ratio = f"{row.ratio:.3f}" if row.ratio is not None else "-"
            value = _num(row.value, row.unit) if outcome.status == "ran" else f"({outcome.status})"
            lines.append(f"| {row.figure} | {value} | {limit} | {ratio} | {row.target} | {_met(row.met)} |")
    if not any_rows:
        lines.append("| (no scenario with targets ran) | | | | | |")
    lines.append("")

    lines += ["## Scenarios", "",
              "| scenario | status | req/s | p50 ms | p90 ms | p99 ms | max ms | requests | errors | load "
              "| others' cores |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for o in outcomes:
        s = o.summary or {}
        load = f"{o.load.processes}x{o.load.concurrency}, {o.load.duration_s:g}s" if o.load else "-"
        errors = s.get("errors", "-")
        if s.get("errors_by_status"):
            errors = f"{errors} {json.dumps(s['errors_by_status'])}"
        status = o.status if not o.note else f"{o.status}: {o.note}"
        if s:
            lines.append(f"| {o.name} | {status} | {_num(s['req_per_s'])} | {s['p50_ms']:.2f} | {s['p90_ms']:.2f} | "
                         f"{s['p99_ms']:.2f} | {s['max_ms']:.1f} | {s['requests']:,} | {errors} | {load} | "
                         f"{_num(o.others_cores)} |")
        else:
            lines.append(f"| {o.name} | {status} | - | - | - | - | - | - | - | {load} | - |")
    extra = [(o.name, f) for o in outcomes for f in o.figures]
    if extra:
        lines += ["", "| scenario | figure | value |", "|---|---|---|"]
        lines += [f"| {name} | {f.name} | {_num(f.value, f.unit)} |" for name, f in extra]
    servers = [(o.name, s) for o in outcomes for s in o.servers]
    if servers:
        lines += ["", "Servers: " + "; ".join(f"{name}: `{s}`" for name, s in servers)]
    lines.append("")

    lines += ["## Raw limits (same run)", "", "| limit | what | value | p50 ms | p99 ms | others' cores |",
              "|---|---|---|---|---|---|"]
    interleaved = [(f"{limit.name} (interleaved with {o.name})", limit)
                   for o in outcomes for limit in o.interleaved.values()]
    for name, limit in [*((limit.name, limit) for limit in limits), *interleaved]:
        lines.append(f"| {name} | {limit.label} | {_num(limit.value, limit.unit)} | "
                     f"{_num(limit.p50_ms)} | {_num(limit.p99_ms)} | {_num(limit.others_cores)} |")
    if not limits and not interleaved:
        lines.append("| (not measured in this run) | | | | | |")
    lines += ["", "<details><summary>Raw-limit commands</summary>", ""]
    lines += [f"- `{name}`: `{limit.command}`" for name, limit in [*((li.name, li) for li in limits), *interleaved]]
    lines += ["", "</details>", ""]

    lines += ["## Machine", "", "| | |", "|---|---|"]
    lines += [f"| {k} | {v} |" for k, v in machine.items()]
    lines.append("")
    if problems:
        lines += ["## Problems in this run", ""] + [f"- {p}" for p in problems] + [""]
    return "\n".join(lines)


def to_json(*, started_at: datetime, command: str, machine: dict[str, str], limits: list[Limit],
            outcomes: list[ScenarioOutcome], problems: list[str], elapsed_s: float) -> dict[str, Any]:
    by_name = {limit.name: limit for limit in limits}
    return {
        "started_at": started_at.isoformat(), "command": command, "elapsed_s": round(elapsed_s, 1),
        "machine": machine, "limits": [asdict(limit) for limit in limits], "problems": problems,
        "scenarios": [{
            "name": o.name, "status": o.status, "note": o.note, "summary": o.summary,
            "figures": [asdict(f) for f in o.figures], "load": asdict(o.load) if o.load else None,
            "servers": o.servers, "rows": [asdict(r) for r in evaluate(o, by_name)],
            "interleaved_limits": [asdict(limit) for limit in o.interleaved.values()],
        } for o in outcomes],
    }


def write_report(markdown: str, data: dict[str, Any], started_at: datetime,
                 results_dir: Path = RESULTS_DIR) -> Path:
    results_dir.mkdir(parents=True, exist_ok=True)
    stem = started_at.strftime("%Y%m%dT%H%M%SZ")
    path = results_dir / f"{stem}.md"
    path.write_text(markdown)
    (results_dir / f"{stem}.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
    return path


def now_utc() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)
