"""Notifications: e-mail over SMTP and SMS through a provider, driven by the event bus.

- ``handlers``   the bus consumer: OrderConfirmed, EventUpdated, EventCancelled, PaymentFlagged -> messages
- ``reminders``  a worker loop: events starting within the lead time -> one reminder per holder
- ``your_turn``  a worker loop: waiting visitors admitted by the controller who left an address
- ``notifier``   the exactly-once core: claim in the sent-log, send, mark sent (or failed)
- ``sent_log``   the PostgreSQL sent-log (migration 0006), ``recipients`` the reads it needs
- ``messages``   Jinja2 templates (templates/email/) -> MIME messages, QR codes, the .ics
- ``mailer``     SMTP with aiosmtplib (retries with tenacity), ``sms`` the SMS providers
- ``dev_mail``   the local SMTP sink and the /dev/mail page `stagedoor up` runs
- ``context``    the worker's cleanup context wiring all of it

Failed notifications never undo anything: they are recorded, counted and retried.
"""
