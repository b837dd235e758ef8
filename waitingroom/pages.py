"""The minimal server-rendered queue page (templates/queue.html): works without JavaScript
(meta refresh), a small script upgrades it to live updates over SSE when available."""

from __future__ import annotations

from typing import Any

import jinja2

from rooms.store import Room, rfc3339
from stagedoor.settings import TEMPLATES_DIR
from stagedoor.static_files import static_files
from waitingroom.queue import StatusOut

REFRESH_S = 5


class QueuePages:
    def __init__(self, auto_reload: bool = True, test_mode: str | None = None) -> None:
        """``auto_reload``: look for edited templates on every render (development); off, each
        template is read once (no file-system check per page view). ``test_mode``: the banner
        saying no real money moves (stagedoor/payment_pages.py), or None."""
        self._env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                                       autoescape=jinja2.select_autoescape(("html",)), enable_async=False,
                                       auto_reload=auto_reload)
        self._env.globals["static_url"] = static_files(TEMPLATES_DIR / "static").url
        self._env.globals["test_mode"] = test_mode

    def render_queue(self, *, room: str, cfg: Room, status: StatusOut | None, shop_redirect: str | None,
                     now: float, error: str | None = None) -> str:
        context: dict[str, Any] = {
            "room": room, "status": status, "shop_redirect": shop_redirect, "refresh_s": REFRESH_S,
            "opens_at": rfc3339(cfg.opens_at_ms), "starts_at": rfc3339(cfg.starts_at_ms),
            "seconds_to_start": max(0, int(cfg.starts_at_ms / 1000 - now)),
            "is_open": now * 1000 >= cfg.opens_at_ms and cfg.mode != "closed", "mode": cfg.mode,
            "error": error, "title": cfg.title, "pow_difficulty": cfg.pow_difficulty,
            # a sold-out event's page in the shop, where signed-in fans join its waiting list
            "waitlist_url": cfg.shop_url if cfg.event_id else None,
        }
        if status is not None and status.state == "waiting" and status.position:
            total = max(status.waiting_total, status.position)
            context["progress_pct"] = max(1, min(100, round(100 * (total - status.position + 1) / total)))
        return self._env.get_template("queue.html").render(**context)
