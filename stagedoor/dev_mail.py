"""Development mail: a local SMTP sink (aiosmtpd) that keeps every message in a Maildir, and a
page listing them (``/dev/mail/`` on the ticketing service, added by ``stagedoor up`` only,
when no STAGEDOOR_SMTP_HOST is configured).

The page is plain HTML with no script (the CSP forbids inline script anyway). An e-mail's HTML
is shown in an ``<iframe sandbox>`` whose document has its own strict CSP (no script, images
from this page only, framed by this origin only); its ``cid:`` images are rewritten to part URLs.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import mailbox
import re
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web
from aiosmtpd.smtp import SMTP, Envelope, Session

from stagedoor.edge import add_route
from stagedoor.errors import NotFound
from stagedoor.settings import TEMPLATES_DIR
from stagedoor.static_files import static_files

MAX_MESSAGE_BYTES = 10 * 1024 * 1024
LIST_LIMIT = 200
_KEY = re.compile(r"^[A-Za-z0-9._:,-]{1,200}$")
_CID = re.compile(r"""(["'(])cid:([^"')\s>]+)""")
MAIL_HTML_CSP = ("default-src 'none'; img-src 'self' data:; style-src 'unsafe-inline'; "
                 "frame-ancestors 'self'; base-uri 'none'; form-action 'none'; sandbox")


class MailNotFound(NotFound):
    code = "mail-not-found"
    title = "No such message"


class MailSink:
    """An aiosmtpd handler: accepts every message and keeps it (in a Maildir, and in memory)."""

    def __init__(self, maildir: Path | None = None) -> None:
        self.maildir = mailbox.Maildir(maildir, create=True) if maildir is not None else None
        self.messages: list[tuple[list[str], bytes]] = []  # (envelope recipients, raw bytes)
        self.received = asyncio.Condition()

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        if self.maildir is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.maildir.add, raw)
        async with self.received:
            if self.maildir is None:  # tests read them here; `stagedoor up` reads the Maildir
                self.messages.append(([str(r) for r in envelope.rcpt_tos], raw))
            self.received.notify_all()
        return "250 Message accepted for delivery"

    async def wait_for(self, count: int, timeout_s: float = 30.0) -> None:
        """Until at least ``count`` messages arrived (tests)."""
        async with self.received:
            await asyncio.wait_for(self.received.wait_for(lambda: len(self.messages) >= count), timeout_s)

    def parsed(self) -> list[EmailMessage]:
        return [email.message_from_bytes(raw, policy=email.policy.default) for _, raw in self.messages]


async def start_sink(handler: Any, host: str = "127.0.0.1", port: int = 0) -> asyncio.Server:
    """An SMTP server on this event loop (``port=0``: any free port; read it from the server)."""
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: SMTP(handler, data_size_limit=MAX_MESSAGE_BYTES, enable_SMTPUTF8=True, hostname="stagedoor-sink"),
        host=host, port=port)


def sink_port(server: asyncio.Server) -> int:
    return int(server.sockets[0].getsockname()[1])


# ---------------------------------------------------------------- the dev page

MAILDIR = web.AppKey("dev_maildir", mailbox.Maildir)
JINJA = web.AppKey("dev_mail_jinja", jinja2.Environment)


def _load(box: mailbox.Maildir, key: str) -> EmailMessage:
    if not _KEY.match(key):
        raise MailNotFound(f"no message {key[:60]!r}")
    try:
        with box.get_file(key) as fh:
            # typeshed's mailbox._ProxyFile lacks members (name, fileno...) its _WrappedBuffer protocol
            # asks for and the parser never uses
            msg: EmailMessage = email.message_from_binary_file(fh, policy=email.policy.default)  # type: ignore[call-overload]
            return msg
    except (KeyError, FileNotFoundError):
        raise MailNotFound(f"no message {key[:60]!r}") from None


def _parts(msg: EmailMessage) -> list[EmailMessage]:
    return [p for p in msg.walk() if not p.is_multipart()]


def _summary(key: str, msg: EmailMessage) -> dict[str, str]:
    return {"key": key, "subject": str(msg.get("Subject", "")), "to": str(msg.get("To", "")),
            "from": str(msg.get("From", "")), "date": str(msg.get("Date", "")),
            "kind": str(msg.get("X-Stagedoor-Kind", ""))}


def _html(request: web.Request, template: str, **context: Any) -> web.Response:
    text = request.app[JINJA].get_template(template).render(**context)
    return web.Response(text=text, content_type="text/html", headers={"Cache-Control": "no-store"})


async def list_mail(request: web.Request) -> web.Response:
    box = request.app[MAILDIR]
    loop = asyncio.get_running_loop()

    def read() -> list[dict[str, str]]:
        rows = []
        keys = sorted(box.keys(), reverse=True)[:LIST_LIMIT]  # Maildir keys start with the arrival time
        for key in keys:
            try:
                rows.append(_summary(key, _load(box, key)))
            except MailNotFound:
                continue
        return rows

    rows = await loop.run_in_executor(None, read)
    return _html(request, "dev_mail.html", messages=rows, message=None)


async def show_mail(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    msg = await asyncio.get_running_loop().run_in_executor(None, _load, request.app[MAILDIR], key)
    text_part = msg.get_body(("plain",))
    html_part = msg.get_body(("html",))
    parts = [{"index": i, "type": p.get_content_type(), "filename": p.get_filename() or "",
              "size": len(p.get_payload(decode=True) or b"")} for i, p in enumerate(_parts(msg))]
    return _html(request, "dev_mail.html", messages=None, message=_summary(key, msg),
                 text=text_part.get_content() if text_part is not None else "",
                 has_html=html_part is not None, parts=parts)


async def mail_html(request: web.Request) -> web.Response:
    """The e-mail's HTML for the sandboxed iframe, with ``cid:`` images pointing at part URLs."""
    key = request.match_info["key"]
    msg = await asyncio.get_running_loop().run_in_executor(None, _load, request.app[MAILDIR], key)
    html_part = msg.get_body(("html",))
    if html_part is None:
        raise MailNotFound("this message has no HTML part")
    by_cid = {str(p.get("Content-ID", "")).strip("<>"): i for i, p in enumerate(_parts(msg)) if p.get("Content-ID")}
    base = request.app.router["dev-mail-part"]

    def rewrite(match: re.Match[str]) -> str:
        index = by_cid.get(match.group(2))
        if index is None:
            return match.group(0)
        return match.group(1) + str(base.url_for(key=key, index=str(index)))

    html = _CID.sub(rewrite, html_part.get_content())
    return web.Response(text=html, content_type="text/html", headers={
        "Content-Security-Policy": MAIL_HTML_CSP, "X-Frame-Options": "SAMEORIGIN", "Cache-Control": "no-store"})


async def mail_part(request: web.Request) -> web.Response:
    key = request.match_info["key"]
    msg = await asyncio.get_running_loop().run_in_executor(None, _load, request.app[MAILDIR], key)
    parts = _parts(msg)
    try:
        part = parts[int(request.match_info["index"])]
    except (ValueError, IndexError):
        raise MailNotFound("no such part") from None
    body = part.get_payload(decode=True) or b""
    ctype = part.get_content_type()
    headers = {"Cache-Control": "no-store"}
    if not ctype.startswith("image/") or ctype == "image/svg+xml":
        # Only raster images are shown inline; anything else (text, calendar, SVG) is a download.
        headers["Content-Disposition"] = f'attachment; filename="{_safe_name(part.get_filename())}"'
        ctype = "application/octet-stream" if ctype in ("text/html", "image/svg+xml") else ctype
    return web.Response(body=body, content_type=ctype, headers=headers)


def _safe_name(name: str | None) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", name or "part")[:100] or "part"


def add_dev_mail(app: web.Application, maildir: Path) -> None:
    """Add the /dev/mail pages to a stagedoor app (the ticketing service, before it starts),
    behind its edge like every other route."""
    app[MAILDIR] = mailbox.Maildir(maildir, create=True)
    app[JINJA] = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                                    autoescape=jinja2.select_autoescape(("html",)))
    app[JINJA].globals["static_url"] = static_files(TEMPLATES_DIR / "static").url
    add_route(app, "GET", "/dev/mail/", list_mail, name="dev-mail-list")
    add_route(app, "GET", "/dev/mail/{key}", show_mail, name="dev-mail-show")
    add_route(app, "GET", "/dev/mail/{key}/html", mail_html, name="dev-mail-html")
    add_route(app, "GET", "/dev/mail/{key}/part/{index}", mail_part, name="dev-mail-part")
