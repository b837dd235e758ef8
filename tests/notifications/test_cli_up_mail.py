"""`stagedoor up` without an SMTP host runs the mail sink and serves /dev/mail on the ticketing
service; a taken sink port falls back to a free one (printed in the banner)."""

from __future__ import annotations

import contextlib
import re
import smtplib
import socket
import urllib.request
from email.message import EmailMessage
from pathlib import Path

import pytest

from stagedoor.embedded import free_port
from tests.support.up_process import running_up

pytestmark = pytest.mark.slow


def test_up_runs_a_mail_sink_and_shows_received_mail_at_dev_mail(tmp_path: Path) -> None:
    ports = {name: free_port() for name in ("WAITINGROOM", "TICKETING", "ADMISSION", "WORKER")}
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    env = {f"STAGEDOOR_{name}_PORT": str(port) for name, port in ports.items()}
    env["STAGEDOOR_DEV_SMTP_PORT"] = str(taken.getsockname()[1])
    with contextlib.closing(taken), running_up(tmp_path / "data", env) as up:
        banner = up.banner
        match = re.search(r"mail \(dev\):\s+(http://\S+/dev/mail/)\s+\(SMTP sink on 127\.0\.0\.1:(\d+)", banner)
        assert match, banner
        page_url, smtp_port = match.group(1), int(match.group(2))
        assert page_url == f"http://127.0.0.1:{ports['TICKETING']}/dev/mail/"
        assert smtp_port != taken.getsockname()[1]

        msg = EmailMessage()
        msg["Subject"], msg["From"], msg["To"] = "Hello from the sink test", "a@example.test", "b@example.test"
        msg.set_content("text body")
        with smtplib.SMTP("127.0.0.1", smtp_port, timeout=10) as smtp:
            smtp.send_message(msg)
        with urllib.request.urlopen(page_url, timeout=10) as resp:
            assert resp.status == 200
            assert "Hello from the sink test" in resp.read().decode()
    assert up.returncode == 0
