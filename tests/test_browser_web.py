"""The subscription pages in a real browser: Chromium (Debian's) driven by Playwright.

A person subscribes on the form, the confirmation email goes over SMTP with STARTTLS to a
real aiosmtpd server (a throwaway certificate made with openssl, verified by the client),
the link in it is opened and confirmed, the store shows the subscriber, and the personal
unsubscribe link unsubscribes with one click.  A screenshot of the front page is saved.

The ``browser`` fixture (tests/browser.py) skips with the reason when Chromium or
Playwright is missing, unless AGGREGATOR_REQUIRE_BROWSER=1 (CI) makes that a failure.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import socket
import ssl
import subprocess
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from aiosmtpd.controller import Controller

from aggregator import mail, newsletters
from aggregator.clock import SystemClock
from aggregator.publish import PublishSettings, publish_feeds
from aggregator.snapshot import build_snapshot
from aggregator.store import Store
from aggregator.web import NewsletterInfo, WebSettings, create_app
from tests.test_web import TITLES, sample_entries

KEY = b"browser-test-key-0123456789abcdef"


# ------------------------------------------------------------------- a real SMTP server with STARTTLS


class Captured:
    """aiosmtpd handler keeping every message it accepts."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.arrived = threading.Event()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=default_policy))  # type: ignore[arg-type]
        self.arrived.set()
        return "250 OK"


def _free_port() -> int:
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


@pytest.fixture
def smtp(certificate: tuple[Path, Path]) -> Iterator[tuple[Captured, mail.SmtpSettings]]:
    cert, key = certificate
    server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_tls.load_cert_chain(cert, key)
    handler = Captured()
    port = _free_port()
    controller = Controller(
        handler, hostname="127.0.0.1", port=port, tls_context=server_tls, require_starttls=True
    )
    controller.start()
    settings = mail.SmtpSettings(
        host="127.0.0.1",
        port=port,
        security="starttls",
        username=None,
        password=None,
        rate_per_minute=6000,
        timeout=10,
        ssl_context=mail.smtp_ssl_context(str(cert)),
    )
    try:
        yield handler, settings
    finally:
        controller.stop()


# ------------------------------------------------------------------- the site


@pytest.fixture
def site(
    tmp_path: Path, sqlite_url: str, smtp: tuple[Captured, mail.SmtpSettings]
) -> Iterator[tuple[str, Store, Captured]]:
    handler, smtp_settings = smtp
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    base = f"http://127.0.0.1:{sock.getsockname()[1]}/"
    publish_feeds(
        build_snapshot(sample_entries(), TITLES, datetime(2025, 8, 18, tzinfo=UTC)),
        tmp_path / "public",
        PublishSettings(title="Test News", base_url=base),
    )
    settings = WebSettings(
        public_dir=tmp_path / "public",
        archive_dir=tmp_path / "archive",
        title="Test News",
        base_url=base,
        secret_key=KEY,
        newsletters=(NewsletterInfo("daily", "The Daily", "digest@news.example", base),),
    )
    with Store.open(sqlite_url) as store:
        app = create_app(settings, store, lambda: mail.SmtpTransport(smtp_settings), SystemClock())
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
        thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
        thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            assert time.monotonic() < deadline, "uvicorn did not start"
            time.sleep(0.01)
        try:
            yield base, store, handler
        finally:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()


def _link(message: EmailMessage) -> str:
    part = message.get_body(("plain",))
    assert part is not None
    found = re.search(r"https?://\S+", part.get_content())
    assert found is not None
    return found.group(0)


def test_subscribe_confirm_by_email_then_unsubscribe_with_one_click(
    browser: Any, site: tuple[str, Store, Captured]
) -> None:
    base, store, smtp = site
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)

    page.goto(base + "subscribe?list=daily")
    page.get_by_label("Your email address").fill("Reader@Example.org")
    page.get_by_role("button", name="Subscribe").click()
    page.wait_for_selector("text=Check your inbox")
    assert "reader@example.org" in page.inner_text("main")

    assert smtp.arrived.wait(10), "no confirmation email reached the SMTP server"
    (message,) = smtp.messages
    assert message["To"] == "reader@example.org"
    assert message["Subject"] == "Confirm your subscription to The Daily"
    link = _link(message)
    assert link.startswith(base + "subscribe/confirm/")
    assert store.subscribers("daily") == {}

    page.goto(link)
    assert store.subscribers("daily") == {}  # opening the link alone changes nothing
    page.get_by_role("button", name="Confirm subscription").click()
    page.wait_for_selector("text=You are subscribed")
    assert store.subscribers("daily") == {"reader@example.org": True}

    token = newsletters.make_unsubscribe_token(KEY, "daily", "reader@example.org")
    page.goto(base + f"unsubscribe/{token}")
    assert "reader@example.org" in page.inner_text("main")
    assert store.subscribers("daily") == {"reader@example.org": True}
    page.get_by_role("button", name="Unsubscribe").click()
    page.wait_for_selector("text=You are unsubscribed")
    assert store.subscribers("daily") == {"reader@example.org": False}
    assert errors == []  # no CSP violation or script error on any page


def test_the_front_page_renders_and_is_captured(
    browser: Any, site: tuple[str, Store, Captured], tmp_path: Path
) -> None:
    base, _, _ = site
    page = browser.new_page(viewport={"width": 1100, "height": 900})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    response = page.goto(base)
    assert response is not None
    assert response.status == 200
    assert page.title() == "Test News"
    assert page.locator("section h2").first.inner_text().startswith("Russia")
    assert page.locator("p.also a").count() == 2
    # The stylesheet loaded under the Content-Security-Policy: the header bar is laid out as flex.
    assert page.eval_on_selector("header.site", "e => getComputedStyle(e).display") == "flex"
    shot = tmp_path / "front.png"
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    if target := os.environ.get("AGGREGATOR_SCREENSHOT_DIR"):
        shutil.copy(shot, Path(target) / "front.png")
    assert errors == []
