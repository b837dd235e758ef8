"""Messages: Jinja2 templates (templates/email/<kind>.html and .txt) turned into MIME e-mail.

Every e-mail is multipart/alternative (text + HTML). The order confirmation nests the HTML
in multipart/related with one PNG QR code per ticket (``cid:`` references; PNG because
mail clients do not show SVG) and attaches ``event.ics``; the event update attaches the
refreshed ``event.ics``. The ``Message-ID`` is derived from (event id, recipient, kind), so a
copy sent again in the sent-log's at-most-twice window carries the same id and mail
clients that dedupe by Message-ID show it once.

Building a message is CPU work (templates, QR codes): callers run it in an executor.
"""

from __future__ import annotations

import datetime as dt
import io
import uuid
from collections.abc import Sequence
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid

import jinja2
import msgspec
import segno

from stagedoor.settings import TEMPLATES_DIR, Settings
from ticketing.notifications.calendar import event_ics
from ticketing.notifications.recipients import EventInfo, FlagInfo, OfferInfo, OrderInfo, TicketInfo
from ticketing.tickets.qr import QR_BORDER

MESSAGE_NAMESPACE = uuid.UUID("5d0c3f4e-2f0b-4d0e-9a56-7a1c0f6b7e10")
QR_PNG_SCALE = 5  # ~300 px for a 250-character code (version 10-11); scanners read it off a phone

SUBJECTS = {
    "order_confirmed": "Your tickets for {title}",
    "event_updated": "Changed: {title}",
    "event_cancelled": "Cancelled: {title} (you will be refunded)",
    "reminder": "Reminder: {title} starts {when}",
    "your_turn": "It is your turn: the shop is open for you",
    "payment_flagged": "Payment needs your attention: {title}",
    "waitlist_offer": "Tickets for you: {title}",
}

FLAG_LABELS = {"dispute": "A fan disputed a payment with their bank (chargeback)",
               "amount_mismatch": "The payment gateway charged another amount or currency than the order's",
               "refund_missing": "A refund stagedoor made does not show at the payment gateway (it was asked again)"}


class QrTicket(msgspec.Struct, frozen=True):
    info: TicketInfo
    cid: str  # without angle brackets
    png: bytes


def render_qr_png(code: str) -> bytes:
    """The ticket code as a PNG QR (error correction M, as on the ticket page's SVG)."""
    buffer = io.BytesIO()
    segno.make(code, error="m", micro=False).save(buffer, kind="png", scale=QR_PNG_SCALE, border=QR_BORDER)
    return buffer.getvalue()


def _when(value: dt.datetime | int) -> str:
    if isinstance(value, int):  # epoch ms
        value = dt.datetime.fromtimestamp(value / 1000, dt.UTC)
    return value.astimezone(dt.UTC).strftime("%a %d %b %Y, %H:%M UTC")


def _money(minor: int, currency: str) -> str:
    return f"{minor / 100:,.2f} {currency}"


def message_id(event_id: uuid.UUID | str, recipient_key: str, kind: str) -> str:
    return f"<{uuid.uuid5(MESSAGE_NAMESPACE, f'{event_id}|{recipient_key}|{kind}')}@stagedoor>"


class Composer:
    """Builds the messages of every kind from the settings' sender and public URLs."""

    def __init__(self, settings: Settings) -> None:
        self.sender = settings.smtp_from
        self.ticketing_url = settings.url_of("ticketing")
        self.waitingroom_url = settings.url_of("waitingroom")
        env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
                                 autoescape=jinja2.select_autoescape(("html",)), undefined=jinja2.StrictUndefined,
                                 keep_trailing_newline=True)
        env.filters["when"] = _when
        env.filters["money"] = _money
        self.env = env

    # -- building blocks
    def _render(self, kind: str, **context: object) -> tuple[str, str]:
        text = self.env.get_template(f"email/{kind}.txt").render(**context)
        html = self.env.get_template(f"email/{kind}.html").render(**context)
        return text, html

    def _message(self, kind: str, to: str, subject: str, text: str, html: str, msgid: str) -> EmailMessage:
        msg = EmailMessage()
        msg["Subject"] = subject
        msg["From"] = self.sender
        msg["To"] = to
        msg["Date"] = format_datetime(dt.datetime.now(dt.UTC))
        msg["Message-ID"] = msgid
        msg["X-Stagedoor-Kind"] = kind
        msg.set_content(text)
        msg.add_alternative(html, subtype="html")
        return msg

    def _subject(self, kind: str, event: EventInfo | None = None) -> str:
        if event is None:
            return SUBJECTS[kind]
        return SUBJECTS[kind].format(title=event.title, when=_when(event.starts_at))

    # -- the kinds
    def order_confirmed(self, order: OrderInfo, event: EventInfo, msgid: str) -> EmailMessage:
        tickets = [QrTicket(info=t, cid=make_msgid(domain="stagedoor")[1:-1], png=render_qr_png(t.code))
                   for t in order.tickets]
        subject = self._subject("order_confirmed", event)
        text, html = self._render("order_confirmed", subject=subject, order=order, event=event, tickets=tickets,
                                  orders_url=f"{self.ticketing_url}/me/orders")
        msg = self._message("order_confirmed", order.email, subject, text, html, msgid)
        html_part = msg.get_body(("html",))
        assert isinstance(html_part, EmailMessage)
        for i, ticket in enumerate(tickets, 1):
            html_part.add_related(ticket.png, maintype="image", subtype="png", cid=f"<{ticket.cid}>",
                                  filename=f"ticket-{i}.png", disposition="inline")
        self._attach_ics(msg, event, sequence=0)
        return msg

    def event_updated(self, event: EventInfo, to: str, changes: Sequence[str], msgid: str,
                      sequence: int) -> EmailMessage:
        subject = self._subject("event_updated", event)
        text, html = self._render("event_updated", subject=subject, event=event, changes=list(changes))
        msg = self._message("event_updated", to, subject, text, html, msgid)
        self._attach_ics(msg, event, sequence=sequence)
        return msg

    def event_cancelled(self, event: EventInfo, to: str, msgid: str) -> EmailMessage:
        subject = self._subject("event_cancelled", event)
        text, html = self._render("event_cancelled", subject=subject, event=event)
        return self._message("event_cancelled", to, subject, text, html, msgid)

    def reminder(self, event: EventInfo, to: str, msgid: str) -> EmailMessage:
        subject = self._subject("reminder", event)
        text, html = self._render("reminder", subject=subject, event=event,
                                  orders_url=f"{self.ticketing_url}/me/orders")
        return self._message("reminder", to, subject, text, html, msgid)

    def your_turn(self, room: str, to: str, expires_ms: int, msgid: str) -> EmailMessage:
        subject = self._subject("your_turn")
        text, html = self._render("your_turn", subject=subject, expires_at=expires_ms,
                                  queue_url=f"{self.waitingroom_url}/rooms/{room}")
        return self._message("your_turn", to, subject, text, html, msgid)

    def payment_flagged(self, flag: FlagInfo, event: EventInfo, msgid: str) -> EmailMessage:
        subject = self._subject("payment_flagged", event)
        order_url = f"{self.ticketing_url}/orders/{flag.order_id}" if flag.order_id else None
        text, html = self._render("payment_flagged", subject=subject, flag=flag, event=event,
                                  label=FLAG_LABELS.get(flag.kind, flag.kind), order_url=order_url)
        return self._message("payment_flagged", flag.organizer_email, subject, text, html, msgid)

    def waitlist_offer(self, offer: OfferInfo, event: EventInfo, msgid: str) -> EmailMessage:
        subject = self._subject("waitlist_offer", event)
        text, html = self._render("waitlist_offer", subject=subject, offer=offer, event=event,
                                  offers_url=f"{self.ticketing_url}/me/offers")
        return self._message("waitlist_offer", offer.email, subject, text, html, msgid)

    def _attach_ics(self, msg: EmailMessage, event: EventInfo, sequence: int) -> None:
        ics = event_ics(event, url=f"{self.ticketing_url}/events/{event.id}", sequence=sequence)
        msg.add_attachment(ics, maintype="text", subtype="calendar", filename="event.ics",
                           params={"method": "PUBLISH"})
