"""Subscription limits when the mail cannot be sent, and what ``serve`` says about the outbox.

Real parts: the web side on uvicorn (127.0.0.1), a real SQLite store, feeds.yaml read by
``load_config``, the SMTP transport ``serve`` makes from its ``smtp:`` (STARTTLS, the
server's certificate verified), pointed first at a port where nothing listens, then at
an aiosmtpd server started on that very port (or one refusing some addresses at RCPT TO);
``aggregator serve`` in its own process.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller

from aggregator import newsletters
from aggregator.clock import ManualClock
from aggregator.config import load_config
from aggregator.store import Store
from aggregator.web import RateLimit, WebSettings, create_app, settings_from_config
from tests.test_web import KEY, LiveServer, csrf_of

MAIL_FAILED = "The message could not be sent just now; please try again in a few minutes."


class Captured:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        with self.lock:
            self.messages.append(message_from_bytes(envelope.content, policy=default_policy))
        return "250 OK"

    def to(self) -> list[str]:
        with self.lock:
            return [str(m["To"]) for m in self.messages]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def certificate(tmp_path: Path) -> tuple[Path, Path]:
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is needed to make the SMTP server's certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost", "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


class Refusing(Captured):
    """Captured, but answering ``550`` to RCPT TO for the addresses starting with ``bounce``
    (a mailbox the relay does not know); counts every RCPT TO it was asked."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[str] = []

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, rcpt_options: list[str]
    ) -> str:
        with self.lock:
            self.asked.append(address)
        if address.startswith("bounce"):
            return "550 5.1.1 no such mailbox here"
        envelope.rcpt_tos.append(address)
        return "250 OK"


def start_smtp(
    port: int, certificate: tuple[Path, Path], handler: Captured | None = None
) -> tuple[Controller, Captured]:
    """aiosmtpd on 127.0.0.1:``port`` with STARTTLS required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(*certificate)
    handler = handler or Captured()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=context, require_starttls=True
    )
    controller.start()
    return controller, handler


def write_config(folder: Path, smtp: str) -> Path:
    config = folder / "feeds.yaml"
    config.write_text(
        "feeds: [{url: https://a.example/feed}]\n"
        "newsletters:\n"
        "  - {name: daily, title: The Daily, sender: digest@news.example}\n"
        "output: {dir: public, title: Test News, base_url: 'https://news.example/'}\n" + smtp,
        encoding="utf-8",
    )
    return config


@pytest.fixture
def smtp_port() -> int:
    return free_port()  # nothing listens there until a test starts a server on it


@pytest.fixture
def site_config(tmp_path: Path, smtp_port: int, certificate: tuple[Path, Path]) -> Path:
    return write_config(
        tmp_path,
        f"smtp: {{host: 127.0.0.1, port: {smtp_port}, security: starttls, username_env: null,"
        f" password_env: null, rate_per_minute: 6000, timeout: 5s, ca_file: '{certificate[0]}'}}\n",
    )


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    with Store.open(sqlite_url) as opened:
        yield opened


@pytest.fixture
def clock(now: datetime) -> ManualClock:
    return ManualClock(now)


@pytest.fixture
def serve_site(site_config: Path, store: Store, clock: ManualClock) -> Callable[..., LiveServer]:
    """``serve``'s app on uvicorn: the settings and mail transport from feeds.yaml."""
    loaded = load_config(site_config)

    def start(change: Callable[[WebSettings], WebSettings] = lambda s: s) -> LiveServer:
        settings = change(settings_from_config(loaded, secret_key=KEY))
        return LiveServer(create_app(settings, store, lambda: newsletters.default_transport(loaded), clock))

    return start


def subscribe(http: httpx.Client, address: str) -> httpx.Response:
    token = csrf_of(http.get("/subscribe"))
    return http.post("/subscribe", data={"csrf": token, "newsletter": "daily", "email": address})


def wait_for(condition: Callable[[], bool], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)
    return True


# ------------------------------------------------------------------- a mail-server outage


def test_an_outage_uses_up_no_limit_and_the_visitor_subscribes_once_the_server_is_back(
    serve_site: Callable[..., LiveServer],
    smtp_port: int,
    certificate: tuple[Path, Path],
) -> None:
    with serve_site() as url, httpx.Client(base_url=url, timeout=20) as http:
        # More tries than the client's limit (5 in 10 minutes) and the mailbox's (3 a day).
        failed = [subscribe(http, "erin@example.org") for _ in range(6)]
        assert [r.status_code for r in failed] == [503] * 6
        assert {r.headers["retry-after"] for r in failed} == {"300"}
        assert all(MAIL_FAILED in r.text for r in failed)

        controller, smtp = start_smtp(smtp_port, certificate)
        try:
            back = subscribe(http, "erin@example.org")
            assert back.status_code == 200, back.text
            assert "Check your inbox" in back.text
            assert smtp.to() == ["erin@example.org"]  # exactly one confirmation
            (message,) = smtp.messages
            assert message["Subject"] == "Confirm your subscription to The Daily"

            # Mail bombing stays impossible: sends that got through count, three a day a mailbox.
            codes = [subscribe(http, "Erin+x@example.org").status_code for _ in range(3)]
            assert codes == [200, 200, 429]
            refused = subscribe(http, "erin@example.org")
            assert refused.status_code == 429
            assert "Too many subscription requests; try again in " in refused.text
            assert smtp.to() == ["erin@example.org", "erin+x@example.org", "erin+x@example.org"]
        finally:
            controller.stop()


def test_sends_that_fail_do_not_use_the_clients_or_the_sites_hourly_cap(
    serve_site: Callable[..., LiveServer],
    smtp_port: int,
    certificate: tuple[Path, Path],
) -> None:
    def small(settings: WebSettings) -> WebSettings:
        return replace(
            settings,
            subscribe_per_client=RateLimit(3, timedelta(minutes=10)),
            confirm_mails=RateLimit(2, timedelta(hours=1)),
        )

    with serve_site(small) as url, httpx.Client(base_url=url, timeout=20) as http:
        failed = [subscribe(http, f"reader{n}@example.org").status_code for n in range(4)]
        assert failed == [503] * 4
        controller, smtp = start_smtp(smtp_port, certificate)
        try:
            answers = [subscribe(http, f"new{n}@example.org") for n in range(3)]
            assert [a.status_code for a in answers] == [200, 200, 429]  # the two mails sent count
            assert "as many confirmation emails as it may in an hour" in answers[2].text
            assert smtp.to() == ["new0@example.org", "new1@example.org"]
        finally:
            controller.stop()


def test_an_outage_uses_up_no_unsubscribe_link_requests_and_still_tells_nobody_who_subscribes(
    serve_site: Callable[..., LiveServer], store: Store, now: datetime, caplog: pytest.LogCaptureFixture
) -> None:
    store.set_subscriber("daily", "reader@example.org", True, now)
    caplog.set_level(logging.WARNING, logger="aggregator.web")

    def failures() -> int:
        return sum("sending email_unsubscribe" in r.getMessage() for r in caplog.records)

    def one_more_failure() -> Callable[[], bool]:
        count = failures()
        return lambda: failures() > count

    with serve_site() as url, httpx.Client(base_url=url, timeout=20) as http:
        form = http.get("/unsubscribe?list=daily")
        codes = []
        for _ in range(4):
            data = {"csrf": csrf_of(form), "newsletter": "daily", "email": "reader@example.org"}
            failed = one_more_failure()
            codes.append(http.post("/unsubscribe", data=data).status_code)
            if codes[-1] == 200:  # the mail goes out after the answer: go on once it failed
                assert wait_for(failed)
        assert codes == [200] * 4  # three requests a day an address, and none was mailed
        # An address that subscribes to nothing gets nothing mailed, and the same answers.
        stranger = [
            http.post(
                "/unsubscribe",
                data={"csrf": csrf_of(form), "newsletter": "daily", "email": "stranger@example.org"},
            ).status_code
            for _ in range(4)
        ]
        assert stranger == [200] * 4


# ------------------------------------------------------------------- one address refused


def test_an_address_the_server_refuses_still_counts_against_the_mailboxs_cap(
    serve_site: Callable[..., LiveServer], smtp_port: int, certificate: tuple[Path, Path]
) -> None:
    # A 550 to RCPT TO is about that address, not an outage: given back, every try was free,
    # and each one opened a session with the mail server.
    controller, smtp = start_smtp(smtp_port, certificate, Refusing())
    try:
        with serve_site() as url, httpx.Client(base_url=url, timeout=20) as http:
            answers = [subscribe(http, "bounce@example.org") for _ in range(4)]
        assert [a.status_code for a in answers] == [503, 503, 503, 429]
        assert "Too many subscription requests; try again in " in answers[3].text
        assert isinstance(smtp, Refusing)
        assert smtp.asked == ["bounce@example.org"] * 3  # the 429 reached no mail server
        assert smtp.messages == []
    finally:
        controller.stop()


def test_addresses_the_server_refuses_still_count_against_the_clients_limit(
    serve_site: Callable[..., LiveServer], smtp_port: int, certificate: tuple[Path, Path]
) -> None:
    # Another address each time gets round the mailbox's cap: the client's limit is what
    # bounds the sessions one visitor opens with the mail server.
    def small(settings: WebSettings) -> WebSettings:
        return replace(settings, subscribe_per_client=RateLimit(3, timedelta(minutes=10)))

    controller, smtp = start_smtp(smtp_port, certificate, Refusing())
    try:
        with serve_site(small) as url, httpx.Client(base_url=url, timeout=20) as http:
            codes = [subscribe(http, f"bounce{n}@example.org").status_code for n in range(4)]
        assert codes == [503, 503, 503, 429]
        assert isinstance(smtp, Refusing)
        assert smtp.asked == [f"bounce{n}@example.org" for n in range(3)]
    finally:
        controller.stop()


# ------------------------------------------------------------------- no smtp: the outbox


def test_serve_without_smtp_warns_at_start_and_logs_each_outbox_message_by_its_file(tmp_path: Path) -> None:
    config = write_config(tmp_path, "")
    port = free_port()
    environ = {**os.environ, "AGGREGATOR_SECRET_KEY": "k" * 40}
    environ.pop("AGGREGATOR_ADMIN_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(config), "serve", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=environ,
    )
    outbox = tmp_path / "newsletters" / "outbox"
    try:
        url = f"http://127.0.0.1:{port}"

        def up() -> bool:
            assert process.poll() is None, "serve exited"
            try:
                return httpx.get(f"{url}/favicon.svg", timeout=2).status_code == 200
            except httpx.TransportError:
                return False

        assert wait_for(up, 30), "serve did not start"
        with httpx.Client(base_url=url, timeout=10) as http:
            answer = subscribe(http, "bob@example.org")
        assert answer.status_code == 200
        assert "Check your inbox" in answer.text
        assert wait_for(lambda: len(list(outbox.glob("*.eml"))) == 1)
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    log = err.decode()
    assert (
        f"no smtp: in feeds.yaml: confirmation and unsubscribe mails are written to {outbox}, not sent" in log
    )
    (written,) = outbox.glob("*.eml")
    lines = [line for line in log.splitlines() if written.name in line]
    assert len(lines) == 1, log
    assert "not sent" in lines[0]
    assert "bob@" not in log  # the address is personal data: the file names the message
    assert re.search(r"Traceback", log) is None
