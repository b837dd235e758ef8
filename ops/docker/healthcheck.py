"""Container health check without curl: exit 0 when GET http://127.0.0.1:PORT/PATH answers 2xx.

    python /app/ops/docker/healthcheck.py 8080 /readyz
"""

from __future__ import annotations

import sys
import urllib.error
import urllib.request


def main(argv: list[str]) -> int:
    port = int(argv[1]) if len(argv) > 1 else 8080
    path = argv[2] if len(argv) > 2 else "/readyz"
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=2) as response:
            return 0 if 200 <= response.status < 300 else 1
    except (urllib.error.URLError, OSError, ValueError):
        return 1


if __name__ == "__main__":
    sys.exit(main(sys.argv))
