"""The web side on a real uvicorn (127.0.0.1, port 0), a real SQLite store and the mail outbox."""

from __future__ import annotations

import asyncio
import contextlib
import email
import http.client as http_client
import logging
import os
import re
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
import uvicorn
from lxml import html as lxml_html
from starlette.applications import Starlette

from aggregator import mail, newsletters, web, web_admin
from aggregator.clock import ManualClock
from aggregator.config import load_config, load_config_text
from aggregator.publish import PublishSettings, publish_feeds
from aggregator.snapshot import build_snapshot
from aggregator.store import Store
from aggregator.types import Entry, StoredEntry
from aggregator.web import (
    NewsletterInfo,
    RateLimit,
    WebSettings,
    create_app,
    front_topics,
    settings_from_config,
    valid_address,
)

KEY = b"test-key-0123456789abcdef0123456789"
# The CLI with ``serve`` registered the way cli.py does it (one line).
SERVE_SCRIPT = """
from aggregator.cli import app, main
from aggregator import cli_serve
if "serve" not in [c.name for c in app.registered_commands]:
    app.command("serve")(cli_serve.serve)
main()
"""
BASE = "https://news.example/"


class LiveServer:
    """uvicorn serving an app on 127.0.0.1 at a free port, in a thread with its own event loop."""

    def __init__(self, app: object) -> None:
        self.config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")  # type: ignore[arg-type]
        self.server = uvicorn.Server(self.config)
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)

    def __enter__(self) -> str:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline or not self.thread.is_alive():
                raise RuntimeError("uvicorn did not start")
            time.sleep(0.01)
        sock: socket.socket = self.server.servers[0].sockets[0]
        host, port = sock.getsockname()[:2]
        return f"http://{host}:{port}"

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)


def sample_entries() -> list[StoredEntry]:
    moment = datetime(2025, 8, 15, 9, tzinfo=UTC)

    def one(
        id: str, feed: str, title: str, story: str, *, topics: tuple[str, ...] = (), dup: str | None = None
    ) -> StoredEntry:
        return StoredEntry(
            id=id,
            feed_url=feed,
            entry=Entry(
                guid=id,
                url=f"https://{id}.example/a",
                canonical_url=None,
                title=title,
                published=moment,
                content_html="<p>" + "Text of the article. " * 80 + "</p>",
            ),
            first_seen=moment,
            last_updated=moment,
            duplicate_of=dup,
            story=story,
            topics=topics,
        )

    return [
        one("w1", "https://wire.example/feed", "Leaders meet in Alaska", "s1", topics=("Russia",)),
        one(
            "l1", "https://ledger.example/feed", "Leaders meet in Alaska", "s1", topics=("Russia",), dup="w1"
        ),
        one("d1", "https://dispatch.example/feed", "Why Alaska?", "s1", topics=("Russia",)),
        one("x1", "https://ledger.example/feed", "<script>alert('x')</script> & markets", "s2"),
    ]


TITLES = {
    "https://wire.example/feed": "Wire",
    "https://ledger.example/feed": "The Ledger",
    "https://dispatch.example/feed": "Dispatch",
}


@pytest.fixture
def site(tmp_path: Path) -> Path:
    publish_feeds(
        build_snapshot(sample_entries(), TITLES, datetime(2025, 8, 18, tzinfo=UTC)),
        tmp_path / "public",
        PublishSettings(title="Test News", base_url=BASE),
    )
    archive = tmp_path / "archive" / "daily"
    archive.mkdir(parents=True)
    (archive / "index.html").write_text("<!doctype html><title>Daily</title><a href='0001.html'>1</a>")
    (archive / "0001.html").write_text("<!doctype html><title>Issue 1</title><p style='color:red'>Hi</p>")
    (archive / "0001.txt").write_text("Issue 1\n")
    return tmp_path


@pytest.fixture
def settings(site: Path) -> WebSettings:
    return WebSettings(
        public_dir=site / "public",
        archive_dir=site / "archive",
        title="Test News",
        base_url=BASE,
        secret_key=KEY,
        newsletters=(NewsletterInfo("daily", "The Daily", "digest@news.example", BASE),),
    )


@pytest.fixture
def store(sqlite_url: str) -> Iterator[Store]:
    with Store.open(sqlite_url) as opened:
        yield opened


@pytest.fixture
def clock(now: datetime) -> ManualClock:
    return ManualClock(now)


@pytest.fixture
def outbox(tmp_path: Path) -> Path:
    return tmp_path / "outbox"


def serve(settings: WebSettings, store: Store, outbox: Path, clock: ManualClock) -> LiveServer:
    return LiveServer(create_app(settings, store, lambda: mail.Outbox(outbox), clock))


@pytest.fixture
def client(settings: WebSettings, store: Store, outbox: Path, clock: ManualClock) -> Iterator[httpx.Client]:
    with serve(settings, store, outbox, clock) as url, httpx.Client(base_url=url, timeout=10) as http:
        yield http


def messages(outbox: Path) -> list[EmailMessage]:
    return [
        email.message_from_bytes(p.read_bytes(), policy=default_policy)  # type: ignore[misc]
        for p in sorted(outbox.glob("*.eml"), key=lambda p: p.stat().st_mtime_ns)
    ]


def messages_soon(outbox: Path, count: int, timeout: float = 5.0) -> list[EmailMessage]:
    """The outbox once it holds ``count`` messages (mail sent after the answer arrives late)."""
    deadline = time.monotonic() + timeout
    while len(found := messages(outbox)) < count and time.monotonic() < deadline:
        time.sleep(0.02)
    return found


def link_in(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = re.search(r"https?://\S+", body.get_content())
    assert found is not None
    return found.group(0)


def csrf_of(page: httpx.Response) -> str:
    return str(lxml_html.fromstring(page.text).xpath("//input[@name='csrf']/@value")[0])


# ------------------------------------------------------------------- feeds


@pytest.mark.parametrize(
    ("path", "media_type"),
    [
        ("/feed.atom", "application/atom+xml; charset=utf-8"),
        ("/feed.rss", "application/rss+xml; charset=utf-8"),
        ("/feed.json", "application/feed+json; charset=utf-8"),
        ("/topics/russia.atom", "application/atom+xml; charset=utf-8"),
    ],
)
def test_feeds_are_served_with_their_media_type_and_validators(
    client: httpx.Client, site: Path, path: str, media_type: str
) -> None:
    response = client.get(path, headers={"accept-encoding": "identity"})
    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert response.content == (site / "public" / path.lstrip("/")).read_bytes()
    assert re.fullmatch(r'"[0-9a-f]{32}"', response.headers["etag"])
    assert response.headers["last-modified"].endswith(" GMT")
    assert response.headers["cache-control"] == "public, max-age=300"
    assert response.headers["access-control-allow-origin"] == "*"


def test_a_repeat_request_gets_304_by_etag_or_date_and_a_changed_feed_gets_200(
    client: httpx.Client, site: Path
) -> None:
    first = client.get("/feed.atom", headers={"accept-encoding": "identity"})
    etag, modified = first.headers["etag"], first.headers["last-modified"]
    again = client.get("/feed.atom", headers={"if-none-match": etag})
    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"]  # the 304 repeats the validators
    assert client.get("/feed.atom", headers={"if-modified-since": modified}).status_code == 304
    assert client.get("/feed.atom", headers={"if-none-match": '"other"'}).status_code == 200
    # If-None-Match wins over If-Modified-Since (RFC 9110): a stale tag means a full answer.
    both = client.get("/feed.atom", headers={"if-none-match": '"other"', "if-modified-since": modified})
    assert both.status_code == 200

    path = site / "public" / "feed.atom"
    path.write_bytes(path.read_bytes().replace(b"Test News", b"Test News!"))
    changed = client.get("/feed.atom", headers={"if-none-match": etag})
    assert changed.status_code == 200
    assert b"Test News!" in changed.content
    assert changed.headers["etag"] != etag


@pytest.mark.parametrize(
    "since",
    [
        "Mon, 01 Jan 2024 00:00:00 +99999999999999999999",  # an offset no datetime can hold
        "Mon, 01 Jan 99999999999999999999 00:00:00 GMT",  # nor a year
        "yesterday",
    ],
)
@pytest.mark.parametrize("path", ["/feed.atom", "/style.css"])
def test_an_if_modified_since_that_is_no_date_is_ignored(client: httpx.Client, path: str, since: str) -> None:
    response = client.get(path, headers={"if-modified-since": since})
    assert response.status_code == 200
    assert response.headers["etag"]


def test_gzip_is_served_to_clients_that_take_it_with_its_own_etag(client: httpx.Client, site: Path) -> None:
    raw = client.get("/feed.atom", headers={"accept-encoding": "gzip"})
    assert raw.headers["content-encoding"] == "gzip"
    assert raw.headers["vary"] == "Accept-Encoding"
    assert raw.content == (site / "public" / "feed.atom").read_bytes()  # httpx decoded it
    assert raw.headers["etag"].endswith('-gzip"')
    assert int(raw.headers["content-length"]) < len(raw.content) / 3
    assert client.get("/feed.atom", headers={"if-none-match": raw.headers["etag"]}).status_code == 304
    refused = client.get("/feed.atom", headers={"accept-encoding": "gzip;q=0, identity"})
    assert "content-encoding" not in refused.headers


def test_head_answers_headers_only(client: httpx.Client) -> None:
    response = client.head("/feed.rss")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["etag"]


@pytest.mark.parametrize(
    "path",
    ["/topics/gone.atom", "/topics/russia.xml", "/feed.html", "/topics/..%2F..%2Fsecret.atom", "/nothing"],
)
def test_unknown_feeds_get_a_plain_404_page(client: httpx.Client, path: str) -> None:
    response = client.get(path)
    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "Not found" in response.text
    assert "Traceback" not in response.text


def test_every_response_carries_the_security_headers(client: httpx.Client) -> None:
    for path in ("/", "/feed.atom", "/nothing", "/subscribe"):
        headers = client.get(path).headers
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
        assert "frame-ancestors 'none'" in headers["content-security-policy"]
    assert "script-src" not in client.get("/").headers["content-security-policy"]  # default-src 'none'


def test_a_wrong_method_gets_405_and_a_crash_gets_a_page_without_a_trace(
    settings: WebSettings, outbox: Path, clock: ManualClock
) -> None:
    class Broken:
        def subscribers(self, newsletter: str) -> dict[str, bool]:
            raise RuntimeError("secret internals")

        def subscriber(self, newsletter: str, address: str) -> tuple[bool, datetime] | None:
            raise RuntimeError("secret internals")

        def set_subscriber(self, newsletter: str, address: str, active: bool, now: datetime) -> None:
            raise RuntimeError("secret internals")

    token = newsletters.make_unsubscribe_token(KEY, "daily", "a@b.example")
    app = create_app(settings, Broken(), lambda: mail.Outbox(outbox), clock)
    with LiveServer(app) as url, httpx.Client(base_url=url) as http:
        assert http.delete("/feed.atom").status_code == 405
        crashed = http.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"})
    assert crashed.status_code == 500
    assert "Something went wrong" in crashed.text
    # The crash page comes from outside the middleware, yet carries the same headers.
    assert crashed.headers["x-content-type-options"] == "nosniff"
    assert "frame-ancestors 'none'" in crashed.headers["content-security-policy"]
    assert "secret internals" not in crashed.text
    assert "Traceback" not in crashed.text


def test_a_crash_is_logged_with_its_route_never_the_token_in_its_path(
    settings: WebSettings, outbox: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    class Broken:  # the database is down for a moment
        def subscribers(self, newsletter: str) -> dict[str, bool]:
            raise RuntimeError("db down")

        def subscriber(self, newsletter: str, address: str) -> tuple[bool, datetime] | None:
            raise RuntimeError("db down")

        def set_subscriber(self, newsletter: str, address: str, active: bool, now: datetime) -> None:
            raise RuntimeError("db down")

    app = create_app(settings, Broken(), lambda: mail.Outbox(outbox), clock)
    unsubscribe = newsletters.make_unsubscribe_token(KEY, "daily", "alice@example.org")
    confirm = app.state.web.confirm_tokens.dumps({"n": "daily", "a": "bob@example.org"})

    async def crash() -> list[int]:
        transport = httpx.ASGITransport(app=app, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            return [
                (await http.post(f"/unsubscribe/{unsubscribe}")).status_code,
                (await http.get(f"/subscribe/confirm/{confirm}")).status_code,
            ]

    caplog.set_level(logging.ERROR, logger="aggregator.web")
    assert asyncio.run(crash()) == [500, 500]
    assert "POST /unsubscribe/{token} failed" in caplog.text
    assert "GET /subscribe/confirm/{token} failed" in caplog.text
    # The path is the credential: whoever reads the log could unsubscribe alice or confirm bob.
    assert unsubscribe not in caplog.text
    assert confirm not in caplog.text

    class FailsBeforeRouting:  # no route matched yet: the path is all there is
        def __init__(self, app: object) -> None:
            self.app = app

        async def __call__(self, scope: object, receive: object, send: object) -> None:
            raise RuntimeError("broken middleware")

    app = create_app(settings, Broken(), lambda: mail.Outbox(outbox), clock)
    app.add_middleware(FailsBeforeRouting)
    caplog.clear()
    assert asyncio.run(crash()) == [500, 500]
    assert "POST /unsubscribe/{redacted} failed" in caplog.text
    assert unsubscribe not in caplog.text


# ------------------------------------------------------------------- front page & archive


def test_the_front_page_lists_stories_by_topic_and_advertises_every_feed(client: httpx.Client) -> None:
    page = client.get("/", headers={"accept-encoding": "gzip"})
    assert page.status_code == 200
    doc = lxml_html.fromstring(page.text)
    alternates = {(a.get("type"), a.get("href")) for a in doc.xpath("//head/link[@rel='alternate']")}
    assert alternates == {
        ("application/atom+xml", "/feed.atom"),
        ("application/rss+xml", "/feed.rss"),
        ("application/feed+json", "/feed.json"),
        ("application/atom+xml", "/topics/russia.atom"),
        ("application/rss+xml", "/topics/russia.rss"),
        ("application/feed+json", "/topics/russia.json"),
    }
    sections = [s.xpath("string(h2/text())").strip() for s in doc.xpath("//section")]
    assert sections == ["Russia", "Other stories"]
    russia = doc.xpath("//section")[0]
    assert russia.xpath(".//h3/a/text()") == ["Leaders meet in Alaska"]
    # Each outlet name isolated (<bdi>): a right-to-left one pulled the date's day into it
    # ("7 · היום חדשות Dec 2026"), as the digest already guards against.
    assert russia.xpath(".//p[@class='meta']/bdi/text()") == ["Wire"]
    assert sorted(russia.xpath(".//p[@class='also']/a/bdi/text()")) == ["Dispatch", "The Ledger"]
    # Feed titles are data, never markup.
    assert "<script>alert" not in page.text
    assert "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; markets" in page.text


def test_the_front_page_says_so_before_anything_is_published(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock, tmp_path: Path
) -> None:
    empty = replace(settings, public_dir=tmp_path / "nothing")
    with serve(empty, store, outbox, clock) as url:
        page = httpx.get(url + "/")
        feed = httpx.get(url + "/feed.atom")
    assert page.status_code == 200
    assert "Nothing has been published yet" in page.text
    assert feed.status_code == 404
    assert "not been published yet" in feed.text


def test_the_archive_lists_newsletters_and_serves_issues_under_a_strict_policy(client: httpx.Client) -> None:
    index = client.get("/archive/")
    assert index.status_code == 200
    assert lxml_html.fromstring(index.text).xpath("//ul[@class='archive']//a/@href")[0] == "/archive/daily/"
    letter = client.get("/archive/daily/")
    assert letter.status_code == 200
    assert "0001.html" in letter.text
    issue = client.get("/archive/daily/0001.html")
    assert issue.status_code == 200
    assert issue.headers["content-type"] == "text/html; charset=utf-8"
    policy = issue.headers["content-security-policy"]
    assert "sandbox" in policy
    assert "script-src" not in policy
    assert client.get("/archive/daily/0001.txt").headers["content-type"] == "text/plain; charset=utf-8"
    assert (
        client.get("/archive/daily/0001.html", headers={"if-none-match": issue.headers["etag"]}).status_code
        == 304
    )
    for bad in (
        "/archive/daily/0002.html",
        "/archive/daily/..%2F..%2Fpublic%2Ffeed.atom",
        "/archive/Daily/",
        "/archive/x/index.php",
    ):
        assert client.get(bad).status_code == 404, bad


# ------------------------------------------------------------------- subscribe


def test_double_opt_in_subscribes_only_after_the_confirmation_post(
    client: httpx.Client, store: Store, outbox: Path
) -> None:
    form = client.get("/subscribe?list=daily")
    assert form.status_code == 200
    assert "no-store" in form.headers["cache-control"]
    cookie = form.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Secure" not in cookie  # served over plain http here; Secure comes with https
    sent = client.post(
        "/subscribe",
        data={"csrf": csrf_of(form), "newsletter": "daily", "email": "Reader@Example.org"},
        headers={"host": "evil.example"},
    )
    assert sent.status_code == 200, sent.text
    assert "Check your inbox" in sent.text
    assert store.subscribers("daily") == {}  # nothing until confirmed

    (message,) = messages(outbox)
    assert message["To"] == "reader@example.org"
    assert message["From"] == "The Daily <digest@news.example>"
    assert message["Auto-Submitted"] == "auto-generated"
    link = link_in(message)
    assert link.startswith(BASE + "subscribe/confirm/")  # from the configured URL, not the Host header

    path = link.removeprefix(BASE.rstrip("/"))
    page = client.get(path)  # a link scanner does this too
    assert page.status_code == 200
    assert "reader@example.org" in page.text
    assert store.subscribers("daily") == {}
    done = client.post(path, data={"csrf": csrf_of(page)})
    assert done.status_code == 200
    assert "You are subscribed" in done.text
    assert store.subscribers("daily") == {"reader@example.org": True}


def confirmation_path(client: httpx.Client, form: httpx.Response, outbox: Path, address: str) -> str:
    """Subscribe ``address`` to daily with the page ``form``; the path of the link mailed."""
    client.post("/subscribe", data={"csrf": csrf_of(form), "newsletter": "daily", "email": address})
    return link_in(messages(outbox)[-1]).removeprefix(BASE.rstrip("/"))


def one_click_unsubscribe(client: httpx.Client, address: str) -> None:
    token = newsletters.make_unsubscribe_token(KEY, "daily", address)
    assert client.post(f"/unsubscribe/{token}", data={"List-Unsubscribe": "One-Click"}).status_code == 200


def test_a_confirmation_link_expires_and_a_tampered_one_is_refused(
    client: httpx.Client, store: Store, outbox: Path, clock: ManualClock
) -> None:
    form = client.get("/subscribe")
    path = confirmation_path(client, form, outbox, "a@example.org")
    tampered = client.get(path[:-3] + ("AAA" if not path.endswith("AAA") else "BBB"))
    assert tampered.status_code == 400
    assert "not valid" in tampered.text
    clock.advance(timedelta(hours=49))
    expired = client.get(path)
    assert expired.status_code == 410
    assert "expired" in expired.text
    assert client.post(path, data={"csrf": csrf_of(form)}).status_code == 410
    assert store.subscribers("daily") == {}


def test_a_confirmation_link_sent_before_an_unsubscribe_does_not_subscribe_again(
    client: httpx.Client, store: Store, outbox: Path, clock: ManualClock
) -> None:
    form = client.get("/subscribe")
    path = confirmation_path(client, form, outbox, "a@example.org")
    assert client.post(path, data={"csrf": csrf_of(client.get(path))}).status_code == 200
    clock.advance(timedelta(hours=1))
    one_click_unsubscribe(client, "a@example.org")
    clock.advance(timedelta(hours=1))
    # The old link, still within its 48 hours, is opened again from the mailbox.
    replay = client.get(path)
    assert replay.status_code == 410
    assert "before you unsubscribed" in replay.text
    assert client.post(path, data={"csrf": csrf_of(form)}).status_code == 410
    assert store.subscribers("daily") == {"a@example.org": False}

    # Subscribing again, within the same second, sends a new link, and that one works.
    clock.advance(timedelta(milliseconds=300))
    one_click_unsubscribe(client, "a@example.org")
    clock.advance(timedelta(milliseconds=500))
    fresh = confirmation_path(client, form, outbox, "a@example.org")
    assert client.post(fresh, data={"csrf": csrf_of(client.get(fresh))}).status_code == 200
    assert store.subscribers("daily") == {"a@example.org": True}


@pytest.mark.parametrize(
    ("data", "headers"),
    [
        ({"newsletter": "daily", "email": "a@example.org"}, {}),  # no token
        ({"csrf": "0" * 64, "newsletter": "daily", "email": "a@example.org"}, {}),  # a forged token
        ({"csrf": "\xff" * 64, "newsletter": "daily", "email": "a@example.org"}, {}),  # not even ASCII
        ("VALID", {"origin": "https://evil.example"}),  # a cross-site form
    ],
)
def test_forms_without_a_valid_csrf_token_or_from_another_origin_are_refused(
    client: httpx.Client, outbox: Path, data: dict[str, str] | str, headers: dict[str, str]
) -> None:
    form = client.get("/subscribe")
    if data == "VALID":
        data = {"csrf": csrf_of(form), "newsletter": "daily", "email": "a@example.org"}
    response = client.post("/subscribe", data=data, headers=headers)
    assert response.status_code == 403
    assert "Form expired" in response.text
    assert messages(outbox) == []


def test_a_bad_address_or_newsletter_gets_the_form_again_with_the_problem(
    client: httpx.Client, outbox: Path
) -> None:
    form = client.get("/subscribe")
    bad = client.post(
        "/subscribe", data={"csrf": csrf_of(form), "newsletter": "daily", "email": "<b>not an address</b>"}
    )
    assert bad.status_code == 422
    assert "does not look like an email address" in bad.text
    assert "<b>not an address</b>" not in bad.text  # echoed back escaped
    other = client.post(
        "/subscribe", data={"csrf": csrf_of(form), "newsletter": "weekly", "email": "a@example.org"}
    )
    assert other.status_code == 422
    assert messages(outbox) == []


def test_subscribing_is_rate_limited_per_client_and_per_address(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock
) -> None:
    limited = replace(
        settings,
        subscribe_per_client=RateLimit(3, timedelta(minutes=10)),
        mails_per_address=RateLimit(2, timedelta(days=1)),
    )
    with serve(limited, store, outbox, clock) as url, httpx.Client(base_url=url) as http:
        token = csrf_of(http.get("/subscribe"))
        codes = [
            http.post(
                "/subscribe", data={"csrf": token, "newsletter": "daily", "email": "same@example.org"}
            ).status_code
            for _ in range(3)
        ]
        assert codes == [200, 200, 429]  # the third mail to the same address is refused
        fourth = http.post(
            "/subscribe", data={"csrf": token, "newsletter": "daily", "email": "b@example.org"}
        )
        assert fourth.status_code == 429  # the client's fourth request in ten minutes
        assert 0 < int(fourth.headers["retry-after"]) <= 600
        clock.advance(timedelta(minutes=11))
        fifth = http.post("/subscribe", data={"csrf": token, "newsletter": "daily", "email": "b@example.org"})
        assert fifth.status_code == 200
    assert len(messages(outbox)) == 3


def subscribe_from(app: object, client: str, address: str) -> httpx.Response:
    """One subscription request from the client address ``client``, over ASGI."""

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app, client=(client, 40000))  # type: ignore[arg-type]
        async with httpx.AsyncClient(transport=transport, base_url=BASE) as http:
            token = csrf_of(await http.get("/subscribe"))
            return await http.post(
                "/subscribe", data={"csrf": token, "newsletter": "daily", "email": address}
            )

    return asyncio.run(go())


def test_sub_addresses_count_as_their_mailbox_and_get_the_mail_as_typed(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock
) -> None:
    limited = replace(settings, mails_per_address=RateLimit(2, timedelta(days=1)))
    app = create_app(limited, store, lambda: mail.Outbox(outbox), clock)
    codes = [
        subscribe_from(app, f"192.0.2.{n}", address).status_code
        for n, address in enumerate(["victim+1@example.org", "Victim+2@example.org", "victim@example.org"])
    ]
    assert codes == [200, 200, 429]  # one mailbox, whatever the +tag
    assert subscribe_from(app, "192.0.2.9", "other+1@example.org").status_code == 200
    assert [m["To"] for m in messages(outbox)] == [
        "victim+1@example.org",
        "victim+2@example.org",
        "other+1@example.org",
    ]


def test_dotted_spellings_of_one_mailbox_count_as_it(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock
) -> None:
    # Gmail ignores dots in the local part and answers for googlemail.com too: without
    # this, v.ictim@, vi.ctim@ ... each got the three confirmation mails a day.
    limited = replace(settings, mails_per_address=RateLimit(2, timedelta(days=1)))
    app = create_app(limited, store, lambda: mail.Outbox(outbox), clock)
    spellings = ["v.ictim.name@gmail.com", "VictimName@GoogleMail.com", "vi.ctim.na.me+x@gmail.com"]
    codes = [subscribe_from(app, f"192.0.2.{n}", address).status_code for n, address in enumerate(spellings)]
    assert codes == [200, 200, 429]
    assert [m["To"] for m in messages(outbox)] == ["v.ictim.name@gmail.com", "victimname@googlemail.com"]


def test_an_ipv6_client_is_its_64_network(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock
) -> None:
    limited = replace(settings, subscribe_per_client=RateLimit(3, timedelta(minutes=10)))
    app = create_app(limited, store, lambda: mail.Outbox(outbox), clock)
    codes = [
        subscribe_from(app, f"2001:db8:1:2::{n:x}", f"a{n}@example.org").status_code for n in range(1, 5)
    ]
    assert codes == [200, 200, 200, 429]  # four addresses of one /64: one client
    assert subscribe_from(app, "2001:db8:1:3::1", "b@example.org").status_code == 200  # the next /64
    assert subscribe_from(app, "192.0.2.1", "c@example.org").status_code == 200


def test_the_site_sends_at_most_so_many_confirmation_mails_an_hour(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock
) -> None:
    assert settings.confirm_mails == RateLimit(web.CONFIRM_MAILS_PER_HOUR, timedelta(hours=1))
    limited = replace(settings, confirm_mails=RateLimit(3, timedelta(hours=1)))
    app = create_app(limited, store, lambda: mail.Outbox(outbox), clock)
    codes = [subscribe_from(app, f"2001:db8:{n}::1", f"x{n}@example.org").status_code for n in range(3)]
    assert codes == [200, 200, 200]
    refused = subscribe_from(app, "2001:db8:9::1", "y@example.org")
    assert refused.status_code == 429
    assert "as many confirmation emails as it may in an hour" in refused.text
    assert 0 < int(refused.headers["retry-after"]) <= 3600
    assert len(messages(outbox)) == 3
    clock.advance(timedelta(hours=1))
    assert subscribe_from(app, "2001:db8:9::1", "y@example.org").status_code == 200


def test_oversized_or_foreign_forms_get_a_4xx(client: httpx.Client) -> None:
    assert (
        client.post(
            "/subscribe", content=b"x" * 10_000, headers={"content-type": "application/x-www-form-urlencoded"}
        ).status_code
        == 413
    )
    assert client.post("/subscribe", json={"email": "a@example.org"}).status_code == 415


# ------------------------------------------------------------------- unsubscribe


def test_unsubscribe_get_only_asks_and_the_one_click_post_acts_at_once(
    client: httpx.Client, store: Store, now: datetime
) -> None:
    store.set_subscriber("daily", "reader@example.org", True, now)
    token = newsletters.make_unsubscribe_token(KEY, "daily", "reader@example.org")
    page = client.get(f"/unsubscribe/{token}")
    assert page.status_code == 200
    assert "reader@example.org" in page.text
    assert store.subscribers("daily") == {"reader@example.org": True}  # a GET changes nothing
    # What a mail provider sends (RFC 8058): no cookie, no CSRF token, just this body.
    fresh = httpx.post(
        str(client.base_url) + f"/unsubscribe/{token}",
        content=b"List-Unsubscribe=One-Click",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert fresh.status_code == 200
    assert "You are unsubscribed" in fresh.text
    assert store.subscribers("daily") == {"reader@example.org": False}
    assert (
        client.post(f"/unsubscribe/{token[:-2]}xx", data={"List-Unsubscribe": "One-Click"}).status_code == 400
    )


def test_the_generic_unsubscribe_link_mails_the_personal_link_only_to_subscribers(
    client: httpx.Client, store: Store, outbox: Path, now: datetime
) -> None:
    store.set_subscriber("daily", "reader@example.org", True, now)
    form = client.get("/unsubscribe?list=daily")
    assert form.status_code == 200
    answers = [
        client.post(
            "/unsubscribe", data={"csrf": csrf_of(form), "newsletter": "daily", "email": address}
        ).text
        for address in ("reader@example.org", "stranger@example.org")
    ]
    assert all("Check your inbox" in a for a in answers)
    (message,) = messages_soon(outbox, 1)  # sent after the answer
    assert message["To"] == "reader@example.org"
    link = link_in(message)
    assert newsletters.read_unsubscribe_token(KEY, link.rsplit("/", 1)[1]) == ("daily", "reader@example.org")


def test_the_generic_unsubscribe_link_reaches_subscribers_listed_in_feeds_yaml(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock
) -> None:
    (daily,) = settings.newsletters
    listed = replace(settings, newsletters=(replace(daily, subscribers=frozenset({"listed@example.org"})),))
    with serve(listed, store, outbox, clock) as url, httpx.Client(base_url=url, timeout=10) as http:
        form = http.get("/unsubscribe?list=daily")
        sent = {"csrf": csrf_of(form), "newsletter": "daily", "email": "Listed@example.org"}
        assert "Check your inbox" in http.post("/unsubscribe", data=sent).text
    (message,) = messages_soon(outbox, 1)
    assert message["To"] == "listed@example.org"


def test_asking_too_often_for_an_unsubscribe_link_is_refused_in_those_words(
    client: httpx.Client, store: Store, now: datetime
) -> None:
    store.set_subscriber("daily", "reader@example.org", True, now)
    form = client.get("/unsubscribe")
    data = {"csrf": csrf_of(form), "newsletter": "daily", "email": "reader@example.org"}
    codes = [client.post("/unsubscribe", data=data).status_code for _ in range(4)]
    assert codes == [200, 200, 200, 429]  # three mails a day to one address
    refused = client.post("/unsubscribe", data=data)
    assert refused.status_code == 429
    message = lxml_html.fromstring(refused.text).xpath("string(//p[@class='message'])")
    assert message.startswith("Too many requests for an unsubscribe link; try again in ")
    assert "subscription" not in message
    # Subscribing keeps its own words.
    subscribe = client.get("/subscribe")
    again = client.post(
        "/subscribe", data={"csrf": csrf_of(subscribe), "newsletter": "daily", "email": "reader@example.org"}
    )
    assert again.status_code == 429
    assert "Too many subscription requests" in again.text


def test_asking_for_an_unsubscribe_link_tells_nothing_even_when_mail_fails(
    settings: WebSettings, store: Store, tmp_path: Path, clock: ManualClock, now: datetime
) -> None:
    store.set_subscriber("daily", "reader@example.org", True, now)
    broken = tmp_path / "not-a-folder"
    broken.write_text("a file where the outbox folder should be: every delivery fails")
    with serve(settings, store, broken, clock) as url, httpx.Client(base_url=url, timeout=10) as http:
        form = http.get("/unsubscribe?list=daily")
        answers = [
            http.post("/unsubscribe", data={"csrf": csrf_of(form), "newsletter": "daily", "email": address})
            for address in ("reader@example.org", "stranger@example.org")
        ]
    assert [a.status_code for a in answers] == [200, 200]
    assert answers[0].text.replace("reader@", "stranger@") == answers[1].text


# ------------------------------------------------------------------- private feeds & settings


def test_private_feeds_are_served_only_under_their_token(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock
) -> None:
    token = "s3cret-token-of-32-characters-xx"
    private = replace(settings, feed_tokens=(token, "another-token-1234"))
    with serve(private, store, outbox, clock) as url, httpx.Client(base_url=url) as http:
        assert http.get("/feed.atom").status_code == 404
        assert http.get("/topics/russia.atom").status_code == 404
        assert http.get("/private/wrong-token-0000000000/feed.atom").status_code == 404
        feed = http.get(f"/private/{token}/feed.atom")
        assert feed.status_code == 200
        assert feed.headers["cache-control"].startswith("private")
        assert "access-control-allow-origin" not in feed.headers
        assert http.get(f"/private/{token}/topics/russia.json").status_code == 200
        front = http.get("/")
        assert "private" in front.text
        assert "feed.atom" not in front.text
        own = http.get(f"/private/{token}/")
        hrefs = lxml_html.fromstring(own.text).xpath("//head/link[@rel='alternate']/@href")
        assert f"/private/{token}/feed.atom" in hrefs


def test_a_private_feed_links_to_itself_under_its_token(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock
) -> None:
    # A reader that follows a private feed's self link (or its other formats, or its home
    # page) must stay under the token; the articles' links stay as the outlets wrote them.
    token = "s3cret-token-of-32-characters-xx"
    private = replace(settings, feed_tokens=(token,))
    under = f"{BASE}private/{token}/"
    with serve(settings, store, outbox, clock) as url, httpx.Client(base_url=url) as http:
        public_atom = http.get("/feed.atom").text
    with serve(private, store, outbox, clock) as url, httpx.Client(base_url=url) as http:
        atom = lxml_html.etree.fromstring(http.get(f"/private/{token}/feed.atom").content)
        ns = {"a": "http://www.w3.org/2005/Atom"}
        assert atom.xpath("a:link[@rel='self']/@href", namespaces=ns) == [f"{under}feed.atom"]
        assert atom.xpath("a:id/text()", namespaces=ns) == [f"{BASE}feed.atom"]  # a name, not a place
        assert set(atom.xpath("a:link[@rel='alternate']/@href", namespaces=ns)) == {
            under,
            f"{under}feed.json",
        }
        entry_links = atom.xpath("a:entry/a:link/@href", namespaces=ns)
        assert entry_links
        assert not any("/private/" in link for link in entry_links)
        assert entry_links == lxml_html.etree.fromstring(public_atom.encode()).xpath(
            "a:entry/a:link/@href", namespaces=ns
        )

        rss = lxml_html.etree.fromstring(http.get(f"/private/{token}/topics/russia.rss").content)
        assert rss.xpath("channel/*[local-name()='link' and @rel='self']/@href") == [
            f"{under}topics/russia.rss"
        ]
        assert rss.xpath("channel/link/text()") == [under]

        response = http.get(f"/private/{token}/feed.json")
        document = response.json()
        assert (document["feed_url"], document["home_page_url"]) == (f"{under}feed.json", under)
        # The rewritten body has validators of its own, and they work.
        again = http.get(f"/private/{token}/feed.json", headers={"if-none-match": response.headers["etag"]})
        assert again.status_code == 304


def test_settings_come_from_feeds_yaml_and_the_environment(tmp_path: Path) -> None:
    text = (
        "feeds: [{url: https://a.example/feed}]\n"
        "newsletters: [{name: daily, title: Daily, sender: d@news.example,\n"
        "               subscribers: [' Ed@news.example']}]\n"
        "output: {base_url: 'https://news.example/sub', dir: out}\n"
    )
    loaded = load_config_text(text, tmp_path / "feeds.yaml")
    env = {
        "AGGREGATOR_SECRET_KEY": "k" * 40,
        "AGGREGATOR_FEED_TOKENS": " first-token-123456 , second-token-123456 ",
    }
    settings = settings_from_config(loaded, env)
    assert settings.public_dir == tmp_path / "out"
    assert settings.archive_dir == tmp_path / "newsletters" / "archive"
    assert settings.base_url == "https://news.example/sub/"
    assert settings.feed_tokens == ("first-token-123456", "second-token-123456")
    assert settings.newsletters[0].base_url == "https://news.example/sub/"
    assert settings.newsletters[0].subscribers == {"ed@news.example"}
    with pytest.raises(ValueError, match="shorter than 16 characters"):
        settings_from_config(loaded, {"AGGREGATOR_FEED_TOKENS": "short"})


FOLLOWED_CONFIG = (
    "feeds: [{url: https://a.example/feed}]\n"
    "output: {base_url: 'https://news.example/', dir: public, title: Test News}\n"
    "newsletters:\n"
)


def letter_yaml(name: str, title: str) -> str:
    return f"  - {{name: {name}, title: {title}, sender: d@news.example}}\n"


def test_the_site_follows_feeds_yaml_while_it_runs(
    site: Path, store: Store, outbox: Path, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    config = site / "feeds.yaml"
    config.write_text(FOLLOWED_CONFIG + letter_yaml("morning", "Morning Digest"), encoding="utf-8")
    settings = settings_from_config(load_config(config), secret_key=KEY)
    app = create_app(settings, store, lambda: mail.Outbox(outbox), clock, config_path=config)
    with LiveServer(app) as url, httpx.Client(base_url=url) as http:
        assert "Morning Digest" in http.get("/subscribe").text
        # The editor (or a person) swaps the newsletter for another one.
        config.write_text(FOLLOWED_CONFIG + letter_yaml("evening", "Evening Digest"), encoding="utf-8")
        page = http.get("/subscribe")
        assert "Evening Digest" in page.text
        assert "Morning Digest" not in page.text
        gone = http.post(
            "/subscribe", data={"csrf": csrf_of(page), "newsletter": "morning", "email": "a@example.org"}
        )
        assert gone.status_code == 422
        added = http.post(
            "/subscribe", data={"csrf": csrf_of(page), "newsletter": "evening", "email": "a@example.org"}
        )
        assert added.status_code == 200
        (message,) = messages(outbox)
        # The signing key is the one the server started with: links already mailed keep working.
        path = link_in(message).removeprefix(BASE.rstrip("/"))
        assert http.get(path).status_code == 200

        # A file that no longer loads leaves the last good settings in force, and says so.
        config.write_text(FOLLOWED_CONFIG + "  - {name: Not A Name}\n", encoding="utf-8")
        caplog.set_level(logging.WARNING, logger="aggregator.web")
        assert "Evening Digest" in http.get("/subscribe").text
        assert "keeping the settings loaded before" in caplog.text


@pytest.mark.parametrize(
    ("address", "ok"),
    [
        ("reader@example.org", True),
        ("first.last+tag@sub.example.co.uk", True),
        ("no-at-sign.example.org", False),
        ("a@b", False),
        ("Name <a@example.org>", False),
        ("a@example.org\r\nBcc: victim@example.org", False),
        ("a@example.org, b@example.org", False),
        ("x" * 250 + "@example.org", False),
    ],
)
def test_only_a_single_plain_address_is_accepted(address: str, ok: bool) -> None:
    assert valid_address(address) is ok


def test_outbox_message_is_plain_mime(outbox: Path, client: httpx.Client) -> None:
    form = client.get("/subscribe")
    client.post("/subscribe", data={"csrf": csrf_of(form), "newsletter": "daily", "email": "m@example.org"})
    (path,) = outbox.glob("*.eml")
    raw = path.read_bytes()
    assert b"\r\n" in raw  # SMTP line endings
    message = messages(outbox)[0]
    assert message.get_content_type() == "multipart/alternative"
    html_part = message.get_body(("html",))
    assert html_part is not None
    assert "Confirm my subscription" in html_part.get_content()


@contextlib.contextmanager
def running_serve(config: Path, *options: str, **env: str) -> Iterator[str]:
    """``aggregator serve`` as the CLI registers it, in its own process, on a port of its
    choosing, with ``env`` added (no admin token unless given); yields its URL.  Its stderr
    must show no traceback and no request (no access log: URLs may carry tokens)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    environ = {**os.environ, "AGGREGATOR_SECRET_KEY": "k" * 40}
    environ.pop("AGGREGATOR_ADMIN_TOKEN", None)
    process = subprocess.Popen(
        [sys.executable, "-c", SERVE_SCRIPT, "--config", str(config), "serve", "--port", str(port), *options],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**environ, **env},
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{url}/favicon.svg", timeout=2)
                break
            except httpx.TransportError:
                assert process.poll() is None, process.stderr.read().decode() if process.stderr else ""
                assert time.monotonic() < deadline, "serve did not start"
                time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        _, err = process.communicate(timeout=10)
    assert b"Traceback" not in err
    assert "/feed.atom" not in err.decode()
    assert "/favicon.svg" not in err.decode()


def test_the_serve_command_runs_the_site_from_feeds_yaml(tmp_path: Path, site: Path) -> None:
    """``serve`` as the CLI registers it, in its own process, on a port of its choosing."""
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds: [{url: https://a.example/feed}]\nnewsletters: []\noutput: {dir: public, title: Test News}\n",
        encoding="utf-8",
    )
    with running_serve(config) as url:
        response = httpx.get(f"{url}/feed.atom", timeout=5)
        assert response.status_code == 200
        assert response.content == (site / "public" / "feed.atom").read_bytes()
        editor = httpx.get(f"{url}/admin/", timeout=5)
        assert editor.status_code == 503  # mounted, and off without $AGGREGATOR_ADMIN_TOKEN
        assert httpx.get(f"{url}/subscribe", timeout=5).status_code == 404
        config.write_text(  # as the editor would: a newsletter is added while the site runs
            config.read_text().replace(
                "newsletters: []", "newsletters: [{name: daily, title: Fresh Daily, sender: d@news.example}]"
            ),
            encoding="utf-8",
        )
        assert "Fresh Daily" in httpx.get(f"{url}/subscribe", timeout=5).text


def test_behind_a_local_proxy_one_visitors_wrong_tokens_lock_out_that_visitor_alone(tmp_path: Path) -> None:
    """A proxy on the same machine forwards every visitor from 127.0.0.1: ``serve`` takes the
    visitor's address from its X-Forwarded-For, so limits are per visitor, not per site."""
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: [{url: https://a.example/feed}]\nnewsletters: []\n", encoding="utf-8")
    token = "the-editors-token-0123456789abcdef"
    with running_serve(config, AGGREGATOR_ADMIN_TOKEN=token) as url:
        stranger = {"X-Forwarded-For": "203.0.113.7"}
        for _ in range(web_admin.SIGN_IN_FAILURES.count + 1):
            httpx.post(f"{url}/admin/login", data={"token": "a-wrong-guess"}, headers=stranger, timeout=5)
        locked = httpx.get(
            f"{url}/admin/", headers={**stranger, "Authorization": f"Bearer {token}"}, timeout=5
        )
        assert locked.status_code == 429  # the guesser is locked out...
        editor = {"X-Forwarded-For": "198.51.100.20", "Authorization": f"Bearer {token}"}
        assert (
            httpx.get(f"{url}/admin/", headers=editor, timeout=5).status_code == 200
        )  # ...the editor is not


def test_forwarded_allow_ips_empty_trusts_no_forwarded_header(tmp_path: Path) -> None:
    """A local forwarder that passes the client's own headers through (a Tor onion service,
    ssh -R): with ``--forwarded-allow-ips ''`` a visitor cannot claim a new address per try."""
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: [{url: https://a.example/feed}]\nnewsletters: []\n", encoding="utf-8")
    token = "the-editors-token-0123456789abcdef"
    with running_serve(config, "--forwarded-allow-ips", "", AGGREGATOR_ADMIN_TOKEN=token) as url:
        for n in range(web_admin.SIGN_IN_FAILURES.count + 1):
            claimed = {"X-Forwarded-For": f"203.0.113.{n + 1}"}
            httpx.post(f"{url}/admin/login", data={"token": "a-wrong-guess"}, headers=claimed, timeout=5)
        again = {"X-Forwarded-For": "198.51.100.20", "Authorization": f"Bearer {token}"}
        assert httpx.get(f"{url}/admin/", headers=again, timeout=5).status_code == 429


def _serve_with(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[bytes]:
    """``aggregator serve`` with ``env`` added to the environment (it is to refuse to start)."""
    config = tmp_path / "feeds.yaml"
    config.write_text("feeds: [{url: https://a.example/feed}]\nnewsletters: []\n", encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-c", SERVE_SCRIPT, "--config", str(config), "serve", "--port", "1"],
        capture_output=True,
        env={**os.environ, **env},
        timeout=60,
        check=False,
    )


def test_the_serve_command_refuses_short_feed_tokens(tmp_path: Path) -> None:
    done = _serve_with(tmp_path, AGGREGATOR_SECRET_KEY="k" * 40, AGGREGATOR_FEED_TOKENS="short")
    assert done.returncode == 2
    assert b"shorter than 16 characters" in done.stderr
    assert b"Traceback" not in done.stderr


def test_the_front_page_names_each_other_outlet_once() -> None:
    copies = [
        {"outlet": "Wire", "url": None},
        {"outlet": "Ledger", "url": "https://ledger.example/1"},
        {"outlet": "Wire", "url": "https://wire.example/2"},
        {"outlet": "Ledger", "url": "https://ledger.example/3"},
        {"outlet": "Dispatch", "url": "javascript:alert(1)"},
    ]
    document = {
        "items": [
            {"id": "x", "title": "T", "_aggregator": {"outlet": "Dispatch", "also_reported_by": copies}}
        ]
    }
    (topic,), slugs = front_topics(document)
    assert slugs == {}
    assert topic.name == "Other stories"
    assert topic.stories[0].also == (
        ("Wire", "https://wire.example/2"),
        ("Ledger", "https://ledger.example/1"),
    )


def test_the_serve_command_refuses_a_short_secret_key_with_a_message(tmp_path: Path) -> None:
    done = _serve_with(tmp_path, AGGREGATOR_SECRET_KEY="too-short-key")
    assert b"Traceback" not in done.stderr
    assert done.returncode == 2
    assert b"AGGREGATOR_SECRET_KEY" in done.stderr


@pytest.mark.parametrize(
    "moved",
    [
        ("/archive", "/archive/"),
        ("/archive/daily", "/archive/daily/"),
        ("/subscribe/?list=daily", "/subscribe?list=daily"),
        ("/admin", "/admin/"),
    ],
)
def test_a_missing_or_extra_slash_redirects_on_the_host_the_browser_used(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock, moved: tuple[str, str]
) -> None:
    # Starlette's own redirect is an absolute URL built from the Host header (any host a
    # client names: a poisoned cache) and the connection's scheme (http:// behind a TLS proxy).
    from aggregator.web_admin import admin_routes  # noqa: PLC0415 -- as cli_serve mounts it

    path, location = moved
    app = create_app(settings, store, lambda: mail.Outbox(outbox), clock)
    app.router.routes.append(admin_routes(settings.public_dir / "feeds.yaml", token="t" * 20))
    with LiveServer(app) as url, httpx.Client(base_url=url) as http:
        response = http.get(path, headers={"host": "evil.example"})
        assert response.status_code in (307, 308)
        assert response.headers["location"] == location
        # Never a protocol-relative Location ("//evil.example/archive/": another site).
        connection = http_client.HTTPConnection(url.removeprefix("http://"), timeout=10)
        try:
            connection.request("GET", "//evil.example/archive")
            assert connection.getresponse().status == 404
        finally:
            connection.close()


class SubPathProxy(httpx.BaseTransport):
    """A reverse proxy publishing ``upstream`` at ``prefixes`` (one or more), by default the
    usual way, as nginx's ``location /news/ { proxy_pass http://127.0.0.1:8000/; }`` does: a
    request for ``/news/x`` is forwarded as ``/x`` (Host and all else as sent), anything
    else is a 404.  ``strip=False`` forwards ``/news/x`` unchanged, as ``proxy_pass
    http://127.0.0.1:8000;`` (no path) does."""

    def __init__(self, upstream: str, *prefixes: str, strip: bool = True) -> None:
        self.upstream = httpx.URL(upstream)
        self.prefixes = [prefix.encode() for prefix in prefixes]
        self.strip = strip
        self.forward = httpx.HTTPTransport()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        path = request.url.raw_path
        prefix = next((p for p in self.prefixes if path.startswith(p + b"/")), None)
        if prefix is None:
            return httpx.Response(404, request=request)
        upstream = request.url.copy_with(
            scheme=self.upstream.scheme,
            host=self.upstream.host,
            port=self.upstream.port,
            raw_path=path[len(prefix) :] if self.strip else path,
        )
        # A request of its own: the client keeps its cookies by the URL it asked for.
        forwarded = httpx.Request(request.method, upstream, headers=request.headers, content=request.read())
        return self.forward.handle_request(forwarded)

    def close(self) -> None:
        self.forward.close()


def local_links(page: httpx.Response) -> list[str]:
    """Every link, stylesheet, icon and form action of a page that stays on the site."""
    tree = lxml_html.fromstring(page.text)
    found = [str(v) for v in tree.xpath("//a/@href | //link/@href | //form/@action | //img/@src")]
    return [v for v in found if not v.startswith(("http://", "https://", "#"))]


def site_under(  # noqa: PLR0917 -- the fixtures of the two tests that use it
    base: str, settings: WebSettings, store: Store, outbox: Path, clock: ManualClock, tmp_path: Path
) -> Starlette:
    """The site with the editor (token "t" * 20) as cli_serve mounts it, at ``base``."""
    from aggregator.web_admin import admin_routes  # noqa: PLC0415 -- as cli_serve mounts it

    config = tmp_path / "feeds.yaml"
    config.write_text((Path(__file__).parent / "golden" / "config" / "base.yaml").read_text())
    under = replace(
        settings, base_url=base, newsletters=(NewsletterInfo("daily", "The Daily", "d@example.org", base),)
    )
    app = create_app(under, store, lambda: mail.Outbox(outbox), clock)
    app.router.routes.append(admin_routes(config, token="t" * 20, public_url=base))
    return app


@pytest.mark.parametrize("strip", [True, False], ids=["proxy-strips-the-path", "proxy-forwards-it-whole"])
def test_under_a_sub_path_every_link_redirect_form_and_cookie_carries_it(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock, tmp_path: Path, *, strip: bool
) -> None:
    """output.base_url https://example.org/news/, behind a proxy that strips /news, or one
    that forwards /news/... as it is: a person following the pages' own links, forms and
    redirects never leaves /news/ (and never gets /news/news/)."""
    app = site_under("https://example.org/news/", settings, store, outbox, clock, tmp_path)
    with (
        LiveServer(app) as url,
        httpx.Client(
            base_url="http://example.org", transport=SubPathProxy(url, "/news", strip=strip), timeout=10
        ) as http,
    ):
        front = http.get("/news/")
        assert front.status_code == 200
        links = local_links(front)
        assert "/news/archive/" in links
        assert "/news/feed.atom" in links
        for link in links:
            assert link.startswith("/news/"), link
            assert http.get(link).status_code == 200, link
        for page in ("/news/archive/", "/news/subscribe", "/news/unsubscribe"):
            for link in local_links(http.get(page)):
                assert link.startswith("/news/"), (page, link)

        moved = http.get("/news/archive", follow_redirects=False)
        assert (moved.status_code, moved.headers["location"]) == (307, "/news/archive/")

        form = http.get("/news/subscribe")
        # The CSRF cookie was set for /news (it comes back to every page under it).
        assert [c.path for c in http.cookies.jar if c.name == web.CSRF_COOKIE] == ["/news"]
        (action,) = lxml_html.fromstring(form.text).xpath("//form/@action")
        assert action == "/news/subscribe"
        sent = http.post(
            action, data={"csrf": csrf_of(form), "newsletter": "daily", "email": "p@example.org"}
        )
        assert (sent.status_code, "Check your inbox" in sent.text) == (200, True)
        assert link_in(messages(outbox)[0]).startswith("https://example.org/news/subscribe/confirm/")

        # The editor under the same prefix: its redirects, forms and cookie.
        assert http.get("/news/admin", follow_redirects=False).headers["location"] == "/news/admin/"
        login = http.get("/news/admin/", follow_redirects=False)
        assert (login.status_code, login.headers["location"]) == (303, "/news/admin/login")
        (action,) = lxml_html.fromstring(http.get(login.headers["location"]).text).xpath("//form/@action")
        assert action == "/news/admin/login"
        signed_in = http.post(action, data={"token": "t" * 20}, follow_redirects=False)
        assert (signed_in.status_code, signed_in.headers["location"]) == (303, "/news/admin/?done=signed-in")
        assert "Path=/news/admin" in signed_in.headers["set-cookie"]
        editor = http.get(signed_in.headers["location"])
        assert editor.status_code == 200
        assert "Signed in" in editor.text
        for link in local_links(editor):
            assert link.startswith("/news/admin/"), link
        edit = http.get("/news/admin/feeds/edit", params={"url": "Example Wire"})
        assert edit.status_code == 200
        assert set(local_links(edit)) == {"/news/admin/feeds/edit", "/news/admin/"}


@pytest.mark.parametrize("strip", [True, False], ids=["proxy-strips-the-path", "proxy-forwards-it-whole"])
@pytest.mark.parametrize("encoded", ["actualit%C3%A9s", "%E6%96%B0%E9%97%BB", "my%20news"])
def test_a_path_with_spaces_or_non_latin_letters_sets_cookies_the_browser_sends_back(
    settings: WebSettings,
    store: Store,
    outbox: Path,
    clock: ManualClock,
    tmp_path: Path,
    *,
    encoded: str,
    strip: bool,
) -> None:
    """A cookie's Path is matched against the URL as sent, percent-encoded; a decoded /新闻
    is no Latin-1 header at all (it was a 500), /actualités never matches /actualit%C3%A9s."""
    app = site_under(f"https://example.org/{encoded}/", settings, store, outbox, clock, tmp_path)
    prefix = f"/{encoded}"
    with (
        LiveServer(app) as url,
        httpx.Client(
            base_url="http://example.org", transport=SubPathProxy(url, prefix, strip=strip), timeout=10
        ) as http,
    ):
        form = http.get(f"{prefix}/subscribe")
        assert form.status_code == 200
        assert f"Path={prefix}" in form.headers["set-cookie"]
        sent = http.post(
            f"{prefix}/subscribe",
            data={"csrf": csrf_of(form), "newsletter": "daily", "email": "p@example.org"},
        )
        assert sent.status_code == 200, sent.text
        signed_in = http.post(f"{prefix}/admin/login", data={"token": "t" * 20})
        assert signed_in.status_code == 303
        assert f"Path={prefix}/admin" in signed_in.headers["set-cookie"]


def test_the_serve_command_serves_under_the_path_of_base_url(tmp_path: Path, site: Path) -> None:
    """``aggregator serve`` with output.base_url https://example.org/news/, asked as a
    prefix-stripping proxy asks it."""
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds: [{url: https://a.example/feed}]\n"
        "newsletters: [{name: daily, title: The Daily, sender: d@example.org}]\n"
        "output: {dir: public, title: Test News, base_url: 'https://example.org/news/'}\n",
        encoding="utf-8",
    )
    with running_serve(config, AGGREGATOR_ADMIN_TOKEN="t" * 20) as url:
        front = httpx.get(f"{url}/", timeout=5)
        assert front.status_code == 200
        assert "/news/archive/" in local_links(front)
        assert all(link.startswith("/news/") for link in local_links(front))
        editor = httpx.get(f"{url}/admin/", timeout=5)
        assert (editor.status_code, editor.headers["location"]) == (303, "/news/admin/login")
        slash = httpx.get(f"{url}/subscribe/?list=daily", timeout=5)
        assert (slash.status_code, slash.headers["location"]) == (307, "/news/subscribe?list=daily")


def test_a_private_front_page_links_to_its_feeds_whatever_the_token_holds(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock
) -> None:
    token = "s3cret#token?with spaces-0123"  # any 16+ characters are allowed
    private = replace(settings, feed_tokens=(token,))
    with serve(private, store, outbox, clock) as url, httpx.Client(base_url=url) as http:
        page = http.get(f"/private/{quote(token, safe='')}/")
        assert page.status_code == 200
        hrefs = lxml_html.fromstring(page.text).xpath("//head/link[@rel='alternate']/@href")
        assert hrefs
        for href in hrefs:
            assert http.get(href).status_code == 200, href


def test_an_edited_base_url_moves_the_editors_trusted_origin_and_hsts(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock, tmp_path: Path
) -> None:
    """output.base_url is edited while the server runs (the site moved from
    https://old.example to http://new.example, then back): the editor takes forms from the
    live origin only, and Strict-Transport-Security is sent only while the site is https."""
    from aggregator.web_admin import admin_routes  # noqa: PLC0415 -- as cli_serve mounts it

    config = tmp_path / "feeds.yaml"
    golden = (Path(__file__).parent / "golden" / "config" / "base.yaml").read_text()

    def move_to(base: str) -> None:
        config.write_text(golden + f"output: {{base_url: '{base}', dir: public}}\n", encoding="utf-8")

    move_to("https://old.example/")
    started = settings_from_config(load_config(config), secret_key=KEY)
    app = create_app(started, store, lambda: mail.Outbox(outbox), clock, config_path=config)
    app.router.routes.append(admin_routes(config, token="t" * 20, public_url=started.base_url))
    with LiveServer(app) as url, httpx.Client(base_url=url, timeout=10) as http:

        def remove_from(origin: str) -> int:
            page = lxml_html.fromstring(http.get("/admin/").text)
            fields = {n: str(page.xpath(f"//input[@name='{n}']/@value")[0]) for n in ("csrf", "version")}
            data = {**fields, "url": "Example Wire"}
            return http.post("/admin/feeds/remove", data=data, headers={"origin": origin}).status_code

        assert "strict-transport-security" in http.get("/").headers
        assert http.post("/admin/login", data={"token": "t" * 20}).status_code == 303

        move_to("http://new.example/")
        for path in ("/", "/admin/", "/feed.atom"):
            assert "strict-transport-security" not in http.get(path).headers, path
        assert remove_from("https://old.example") == 403  # no longer the site's address
        assert "Example Wire" in config.read_text()
        assert remove_from("http://new.example") == 303
        assert "Example Wire" not in config.read_text()

        move_to("https://old.example/")
        assert "strict-transport-security" in http.get("/").headers
        assert remove_from("http://new.example") == 403
        assert remove_from("https://old.example") == 303


@pytest.mark.parametrize("strip", [True, False], ids=["proxy-strips-the-path", "proxy-forwards-it-whole"])
def test_a_newsletter_at_its_own_path_is_confirmed_and_left_there(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock, *, strip: bool
) -> None:
    """output.base_url https://example.org/news/ and the daily's own base_url
    https://example.org/letters/, where its emails' links lead, both published by the proxy:
    a subscriber confirms, asks for an unsubscribe link and unsubscribes on /letters/ pages,
    whose links, forms and cookie stay under /letters/ (a CSRF cookie for /news never came
    back with a form under /letters/: "Form expired")."""
    letters = "https://example.org/letters/"
    under = replace(
        settings,
        base_url="https://example.org/news/",
        newsletters=(NewsletterInfo("daily", "The Daily", "d@example.org", letters),),
    )
    app = create_app(under, store, lambda: mail.Outbox(outbox), clock)
    proxy_at = ("/news", "/letters")
    with (
        LiveServer(app) as url,
        httpx.Client(
            base_url="http://example.org", transport=SubPathProxy(url, *proxy_at, strip=strip), timeout=10
        ) as http,
    ):
        form = http.get("/news/subscribe")
        data = {"csrf": csrf_of(form), "newsletter": "daily", "email": "p@example.org"}
        assert http.post("/news/subscribe", data=data).status_code == 200
        confirm = link_in(messages(outbox)[0])
        assert confirm.startswith(f"{letters}subscribe/confirm/")
        page = http.get(confirm.removeprefix("https://example.org"))
        assert page.status_code == 200
        done = http.post(confirm.removeprefix("https://example.org"), data={"csrf": csrf_of(page)})
        assert (done.status_code, "You are subscribed" in done.text) == (200, True), done.text
        assert all(link.startswith("/letters/") for link in local_links(page)), local_links(page)
        assert store.subscribers("daily") == {"p@example.org": True}

        # The archive's and every issue's generic link, then the personal link it mails.
        generic = http.get("/letters/unsubscribe", params={"list": "daily"})
        (action,) = lxml_html.fromstring(generic.text).xpath("//form/@action")
        assert action == "/letters/unsubscribe"
        data = {"csrf": csrf_of(generic), "newsletter": "daily", "email": "p@example.org"}
        assert "Check your inbox" in http.post(action, data=data).text
        personal = link_in(messages_soon(outbox, 2)[-1])
        assert personal.startswith(f"{letters}unsubscribe/")
        gone = http.post(personal.removeprefix("https://example.org"), data={"List-Unsubscribe": "One-Click"})
        assert gone.status_code == 200
        assert all(link.startswith("/letters/") for link in local_links(gone))
        assert store.subscribers("daily") == {"p@example.org": False}
        assert http.get("/letters/archive/daily/0001.html").status_code == 200


def test_a_form_from_a_newsletters_own_address_is_the_sites_own(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock
) -> None:
    """The daily's base_url is https://letters.example/ (its confirmation links lead there),
    the site's https://news.example/, and a TLS proxy forwards to 127.0.0.1: the confirmation
    posted from the letters page is accepted; one from another site is not."""
    (daily,) = settings.newsletters
    other = replace(settings, newsletters=(replace(daily, base_url="https://letters.example/"),))
    with serve(other, store, outbox, clock) as url, httpx.Client(base_url=url, timeout=10) as http:
        form = http.get("/subscribe")
        http.post("/subscribe", data={"csrf": csrf_of(form), "newsletter": "daily", "email": "q@example.org"})
        path = link_in(messages(outbox)[0]).removeprefix("https://letters.example")
        page = http.get(path)
        evil = http.post(path, data={"csrf": csrf_of(page)}, headers={"origin": "https://evil.example"})
        assert evil.status_code == 403
        assert store.subscribers("daily") == {}
        done = http.post(path, data={"csrf": csrf_of(page)}, headers={"origin": "https://letters.example"})
        assert done.status_code == 200, done.text
        assert store.subscribers("daily") == {"q@example.org": True}


def test_a_base_path_named_like_a_page_of_the_site_still_works_behind_a_stripping_proxy(
    settings: WebSettings, store: Store, outbox: Path, clock: ManualClock, tmp_path: Path
) -> None:
    """output.base_url https://example.org/archive/: the stripping proxy forwards the
    browser's /archive/archive/ as /archive/, the site's archive page, not its front page
    (a path the site has is never taken for one the proxy left unstripped)."""
    app = site_under("https://example.org/archive/", settings, store, outbox, clock, tmp_path)
    with (
        LiveServer(app) as url,
        httpx.Client(
            base_url="http://example.org", transport=SubPathProxy(url, "/archive"), timeout=10
        ) as http,
    ):
        front = http.get("/archive/")
        assert "/archive/archive/" in local_links(front)
        index = http.get("/archive/archive/")
        assert index.status_code == 200
        assert "/archive/archive/daily/" in local_links(index)
        assert http.get("/archive/archive/daily/0001.html").text.startswith("<!doctype html><title>Issue 1")
        assert http.get("/archive/feed.atom").status_code == 200
