"""The `stagedoor up` mail sink and its /dev/mail page on the ticketing service: received mail is
listed, its HTML is shown in a sandboxed iframe with its own strict CSP and its cid: images
served as parts; nothing is scriptable."""

from __future__ import annotations

import re
from typing import Any

from stagedoor.cli import COMPONENTS
from stagedoor.dev_mail import MailSink, add_dev_mail
from tests.support.notifications import envelope
from ticketing.notifications.handlers import on_order_confirmed


async def test_dev_mail_page_lists_and_shows_received_mail_safely(
        tmp_path: Any, start_smtp: Any, mail_settings: Any, make_notifications: Any, catalog: Any,
        aiohttp_client: Any, keyring: Any) -> None:
    maildir = tmp_path / "mail"
    sink = await start_smtp(MailSink(maildir))
    settings = mail_settings(sink.port)
    n = make_notifications(settings)
    event_id = await catalog.event(title="Sink <Show>")
    [order_id] = await catalog.orders(event_id, ["dev@example.test"], tickets_per_order=2)
    await on_order_confirmed(n, envelope("OrderConfirmed", order_id, {"order_id": order_id,
                                                                      "event_id": str(event_id)}))

    app = COMPONENTS["ticketing"].create_app(settings, keyring)
    add_dev_mail(app, maildir)
    client = await aiohttp_client(app)

    listing = await client.get("/dev/mail/")
    assert listing.status == 200
    page = await listing.text()
    assert "Your tickets for Sink &lt;Show&gt;" in page  # escaped
    assert "<script" not in page
    key = re.search(r'<a href="([^"/]+)">Your tickets', page).group(1)  # type: ignore[union-attr]

    shown = await client.get(f"/dev/mail/{key}")
    assert shown.status == 200
    body = await shown.text()
    assert f'<iframe class="mail-frame" sandbox src="{key}/html"' in body
    assert "dev@example.test" in body and "event.ics" in body
    assert "default-src 'self'" in shown.headers["Content-Security-Policy"]

    html = await client.get(f"/dev/mail/{key}/html")
    assert html.status == 200
    csp = html.headers["Content-Security-Policy"]
    assert "sandbox" in csp and "script" not in csp and "frame-ancestors 'self'" in csp
    assert html.headers["X-Frame-Options"] == "SAMEORIGIN"
    doc = await html.text()
    assert "cid:" not in doc
    images = re.findall(rf'src="(/dev/mail/{re.escape(key)}/part/\d+)"', doc)
    assert len(images) == 2
    image = await client.get(images[0])
    assert image.status == 200 and image.content_type == "image/png"
    assert (await image.read()).startswith(b"\x89PNG")

    parts = re.findall(rf'href="{re.escape(key)}/part/(\d+)">event.ics', body)
    ics = await client.get(f"/dev/mail/{key}/part/{parts[0]}")
    assert ics.status == 200 and ics.headers["Content-Disposition"].startswith("attachment")
    assert b"BEGIN:VCALENDAR" in await ics.read()

    for missing in ("/dev/mail/nope", "/dev/mail/..%2Fsecrets.json", f"/dev/mail/{key}/part/99"):
        resp = await client.get(missing)
        assert resp.status == 404, missing
