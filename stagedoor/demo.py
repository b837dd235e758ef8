"""Demo data for `stagedoor up`: an arena event with a seat map and its waiting room.

Each service package contributes its part through a ``seed_demo`` coroutine in its
``demo`` module (``ticketing.demo``, ``admission.demo``), called in that order; each
returns lines for the start-up banner. Seeding is idempotent: a second `up` finds the
demo already there.
"""

from __future__ import annotations

import importlib
from typing import Any

from stagedoor.keys import KeyRing
from stagedoor.settings import Settings

SEEDERS = ("ticketing.demo", "admission.demo")


async def seed_demo(settings: Settings, keyring: KeyRing) -> list[str]:
    lines: list[str] = []
    context: dict[str, Any] = {}
    for module_name in SEEDERS:
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        lines += await module.seed_demo(settings, keyring, context)
    return lines
