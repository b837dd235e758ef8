"""Server-rendered pages shared by the shop, the organizer dashboard and the admin console:
one Jinja2 environment over templates/, the English strings (templates/strings.json) as the
template global ``t`` and as JSON for the page scripts.

No inline script anywhere (the CSP forbids it): page behaviour lives in templates/static/*.js,
which reads its data from ``data-*`` attributes and the ``<script type="application/json">``
strings block (data, never executed).
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import jinja2

from stagedoor.settings import TEMPLATES_DIR
from stagedoor.static_files import static_files

STATIC_DIR = TEMPLATES_DIR / "static"
STRINGS_FILE = TEMPLATES_DIR / "strings.json"


@lru_cache(maxsize=1)
def strings() -> dict[str, str]:
    table: dict[str, str] = json.loads(STRINGS_FILE.read_text(encoding="utf-8"))
    return table


def money(amount: int | None, currency: str) -> str:
    if amount is None:
        return ""
    return f"{amount / 100:,.2f} {currency}"


def tr(key: str, **values: Any) -> str:
    text = strings().get(key, key)
    for name, value in values.items():
        text = text.replace("{" + name + "}", str(value))
    return text


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                             autoescape=jinja2.select_autoescape(("html", "svg")), enable_async=False)
    env.globals["t"] = strings()
    env.globals["tr"] = tr
    env.globals["static_url"] = static_files(STATIC_DIR).url
    env.globals["strings_json"] = json.dumps(strings()).replace("<", "\\u003c")
    env.filters["money"] = money
    return env


def render(template: str, **context: Any) -> str:
    return environment().get_template(template).render(**context)
