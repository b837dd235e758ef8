"""Where a shop scenario's CPU went (not a scenario itself): a scenario's ``drive`` runs its load
inside loadtest.cpu_split.CpuDuring and its ``figures`` report each group's cores over the
measured window, and the CPU of one purchase (all groups, load generator included). On 2 shared
cores, purchases/s is 2 cores over that CPU."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from loadtest.cpu_split import CpuDuring
from loadtest.driver import RunResult, run_load
from loadtest.scenario import BenchEnv, Figure, LoadConfig

SHOP = (("ticketing", "serve ticketing"), ("postgres", "postgres"), ("redis", "redis-server"))


def drive_measuring_cpu(scenario: str, env: BenchEnv, ctx: dict[str, Any], config: LoadConfig,
                        groups: Sequence[tuple[str, str]] = SHOP) -> RunResult:
    """``run_load`` of ``scenario``, its groups' cores kept in ``ctx["cpu_cores"]`` for cpu_figures."""
    with CpuDuring(groups, config.warmup_s) as cpu:
        result = run_load(scenario, ctx, env, config)
    try:
        ctx["cpu_cores"] = cpu.cores()
    except RuntimeError:  # a run too short to sample: no CPU figures
        ctx["cpu_cores"] = {}
    return result


def cpu_figures(ctx: dict[str, Any], result: RunResult) -> list[Figure]:
    cores: dict[str, float] = ctx.get("cpu_cores", {})
    figures = [Figure(f"cpu_cores_{re.sub(r'[^a-z0-9]+', '_', group)}", value, "cores")
               for group, value in cores.items()]
    if cores and result.req_per_s > 0:
        figures.append(Figure("cpu_us_per_purchase", 1e6 * sum(cores.values()) / result.req_per_s, "us"))
    return figures
