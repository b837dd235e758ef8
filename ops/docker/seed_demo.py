"""One-shot demo seeding for the compose stack (the `seed` service).

Runs the same idempotent seeders as `stagedoor up` (``stagedoor.demo.seed_demo``) against
the configured Redis and PostgreSQL, prints the banner lines, exits. A second run finds the
demo already there. Used only until the CLI grows its own seed command.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

from stagedoor.demo import seed_demo
from stagedoor.keys import KeyRing
from stagedoor.settings import SettingsError, load_settings, require


async def _seed() -> list[str]:
    settings = load_settings()
    require(settings, "redis_url", "database_url", "signing_keys_dir")
    keyring = KeyRing.from_dir(Path(settings.signing_keys_dir or ""))
    return await seed_demo(settings, keyring)


def main() -> int:
    try:
        lines = asyncio.run(_seed())
    except SettingsError as exc:
        print(f"seed: {exc}", file=sys.stderr)
        return 2
    print("\n".join(lines) if lines else "seed: no demo seeders are installed yet")
    return 0


if __name__ == "__main__":
    sys.exit(main())
