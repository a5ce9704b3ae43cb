"""The web editor of feeds.yaml: only with the token, CSRF-checked, the same validation and the
same comment-preserving writes as the CLI, stale pages refused; and a real browser adds a feed."""

from __future__ import annotations

import asyncio
import contextlib
import difflib
import logging
import re
import shutil
import socket
import threading
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import uvicorn
from lxml import html as lxml_html
from starlette.applications import Starlette

from aggregator import web_admin
from aggregator.config import load_config
from aggregator.configedit import file_version
from aggregator.web_admin import admin_routes
from tests.feedserver import FeedServer

TOKEN = "correct-horse-battery-staple-42"
GOLDEN = Path(__file__).parent / "golden" / "config"


@pytest.fixture
def config(tmp_path: Path) -> Path:
    path = tmp_path / "feeds.yaml"
    shutil.copyfile(GOLDEN / "base.yaml", path)
    return path


def make_app(config: Path, token: str | None = TOKEN) -> Starlette:
    return Starlette(routes=[admin_routes(config, token=token)])


class _Server(uvicorn.Server):
    def install_signal_handlers(self) -> None:  # running in a thread
        pass


@contextlib.contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """uvicorn on 127.0.0.1, port 0, in a thread; yields its base URL."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    server = _Server(uvicorn.Config(app, log_level="warning", lifespan="off"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve(sockets=[sock])), daemon=True)
    thread.start()
    while not server.started:
        if not thread.is_alive():
            pytest.fail("uvicorn did not start")
        threading.Event().wait(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)
        sock.close()


@pytest.fixture
def live(config: Path) -> Iterator[str]:
    with serve(make_app(config)) as base_url:
        yield base_url


@pytest.fixture
def client(live: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=live, follow_redirects=False) as http:
        yield http


def sign_in(client: httpx.Client) -> None:
    response = client.post("/admin/login", data={"token": TOKEN})
    assert response.status_code == 303


def form_fields(client: httpx.Client, page: str = "/admin/") -> dict[str, str]:
    html = client.get(page).text
    return {
        "csrf": re.search(r'name="csrf" value="([^"]*)"', html).group(1),  # type: ignore[union-attr]
        "version": re.search(r'name="version" value="([^"]*)"', html).group(1),  # type: ignore[union-attr]
    }


def test_the_editor_is_off_without_a_long_enough_token(config: Path) -> None:
    for token in ("", "short"):
        with serve(make_app(config, token=token)) as base_url:
            response = httpx.get(f"{base_url}/admin/")
            assert response.status_code == 503
            assert "set AGGREGATOR_ADMIN_TOKEN" in response.text


def test_pages_need_signing_in(client: httpx.Client) -> None:
    response = client.get("/admin/")
    assert (response.status_code, response.headers["location"]) == (303, "/admin/login")
    assert client.post("/admin/feeds/remove", data={"url": "x"}).headers["location"] == "/admin/login"
    assert client.get("/admin/feeds/edit?url=x").status_code == 303


def test_sign_in_sets_a_strict_httponly_cookie_and_never_shows_the_token(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    wrong = client.post("/admin/login", data={"token": "not-the-token-at-all"})
    assert wrong.status_code == 401
    assert "Wrong token." in wrong.text
    response = client.post("/admin/login", data={"token": TOKEN})
    assert response.status_code == 303
    assert response.headers["location"] == "/admin/?done=signed-in"
    cookie = response.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    assert "Path=/admin" in cookie
    page = client.get(response.headers["location"])
    assert page.status_code == 200
    assert "Signed in" in page.text
    assert "Example Wire" in page.text
    assert page.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    for text in (cookie, page.text, response.headers["location"], caplog.text):
        assert TOKEN not in text
    assert "sign-in refused from 127.0.0.1" in caplog.text


def test_add_a_feed_without_fetching_keeps_the_file_as_a_person_would(
    client: httpx.Client, config: Path
) -> None:
    sign_in(client)
    fields = form_fields(client)
    response = client.post(
        "/admin/feeds/add",
        data={
            **fields,
            "url": "https://new.example.com/feed",
            "title": "New",
            "topics": "local",
            "interval": "30m",
        },
    )
    assert response.status_code == 303, response.text
    assert config.read_text() == (GOLDEN / "add_feed.after.yaml").read_text()
    assert "Added: https://new.example.com/feed" in client.get(response.headers["location"]).text


def test_add_a_feed_fetches_it_first(client: httpx.Client, config: Path, feed_server: FeedServer) -> None:
    sign_in(client)
    response = client.post(
        "/admin/feeds/add", data={**form_fields(client), "url": feed_server.url("/page.html"), "check": "on"}
    )
    assert response.status_code == 303, response.text
    feed = load_config(config).config.feeds[-1]
    assert (feed.url, feed.title) == (feed_server.url("/feed.xml"), "Loopback News")

    response = client.post(
        "/admin/feeds/add", data={**form_fields(client), "url": feed_server.url("/missing"), "check": "on"}
    )
    assert response.status_code == 400
    assert "not found (HTTP 404)" in response.text
    assert feed_server.url("/missing") in response.text  # the form keeps what was typed


def test_a_page_with_several_feeds_asks_which_one(
    client: httpx.Client, config: Path, feed_server: FeedServer
) -> None:
    feed_server.add_feed(
        "/two.html",
        b'<html><head><link rel="alternate" type="application/rss+xml" href="/feed.xml">'
        b'<link rel="alternate" type="application/atom+xml" href="/atom.xml"></head></html>',
        content_type="text/html",
    )
    sign_in(client)
    response = client.post(
        "/admin/feeds/add",
        data={**form_fields(client), "url": feed_server.url("/two.html"), "check": "on", "topics": "local"},
    )
    assert response.status_code == 200
    assert "advertises 2 feeds" in response.text
    fields = {
        "csrf": re.search(r'name="csrf" value="([^"]*)"', response.text).group(1),  # type: ignore[union-attr]
        "version": re.search(r'name="version" value="([^"]*)"', response.text).group(1),  # type: ignore[union-attr]
    }
    response = client.post(
        "/admin/feeds/add",
        data={**fields, "url": feed_server.url("/atom.xml"), "check": "on", "topics": "local"},
    )
    assert response.status_code == 303
    feed = load_config(config).config.feeds[-1]
    assert (feed.url, feed.topics) == (feed_server.url("/atom.xml"), ("local",))


def test_posts_without_the_csrf_token_or_from_another_site_are_refused(
    client: httpx.Client, config: Path
) -> None:
    sign_in(client)
    before = config.read_bytes()
    fields = form_fields(client)
    data = {"version": fields["version"], "url": "https://wire.example.com/rss.xml"}
    assert client.post("/admin/feeds/remove", data=data).status_code == 403
    assert client.post("/admin/feeds/remove", data={**data, "csrf": "forged"}).status_code == 403
    response = client.post(
        "/admin/feeds/remove",
        data={**data, "csrf": fields["csrf"]},
        headers={"Origin": "https://evil.example"},
    )
    assert response.status_code == 403
    assert config.read_bytes() == before
    same_site = client.post(
        "/admin/feeds/remove",
        data={**data, "csrf": fields["csrf"]},
        headers={"Origin": str(client.base_url).rstrip("/")},
    )
    assert same_site.status_code == 303
    assert "wire.example.com" not in config.read_text()


def test_behind_a_proxy_forms_from_the_public_address_are_the_sites_own(config: Path) -> None:
    # A TLS proxy in front: the browser posts from https://news.example, while the request
    # the app sees is plain http to 127.0.0.1.
    app = Starlette(routes=[admin_routes(config, token=TOKEN, public_url="https://news.example/")])
    with serve(app) as live, httpx.Client(base_url=live, follow_redirects=False) as client:
        public = {"Origin": "https://news.example"}
        assert client.post("/admin/login", data={"token": TOKEN}, headers=public).status_code == 303
        evil = {"Origin": "https://evil.example"}
        fields = form_fields(client)
        data = {**fields, "url": "https://wire.example.com/rss.xml"}
        assert client.post("/admin/feeds/remove", data=data, headers=evil).status_code == 403
        assert client.post("/admin/feeds/remove", data=data, headers=public).status_code == 303
    assert "wire.example.com" not in config.read_text()


def test_a_bearer_token_works_for_scripts_without_csrf(live: str, config: Path) -> None:
    with httpx.Client(base_url=live, follow_redirects=False) as client:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        version = re.search(r'name="version" value="([^"]*)"', client.get("/admin/", headers=headers).text)
        assert version is not None
        response = client.post(
            "/admin/feeds/remove",
            data={"version": version.group(1), "url": "The Local Paper"},
            headers=headers,
        )
        assert response.status_code == 303
        assert config.read_text() == (GOLDEN / "remove_middle_feed.after.yaml").read_text()
        wrong = client.get("/admin/", headers={"Authorization": "Bearer nope-nope-nope-nope"})
        assert wrong.status_code == 401  # a script is told, not sent to the login page


def test_too_many_wrong_tokens_lock_the_address_out_even_with_the_right_one(client: httpx.Client) -> None:
    for _ in range(web_admin.SIGN_IN_FAILURES.count - 1):
        assert client.post("/admin/login", data={"token": "not-the-token-at-all"}).status_code == 401
    wrong_bearer = client.get("/admin/", headers={"Authorization": "Bearer nope-nope-nope-nope"})
    assert wrong_bearer.status_code == 401  # the last wrong token allowed, as a script sends it
    locked = client.post("/admin/login", data={"token": TOKEN})
    assert locked.status_code == 429
    assert "Too many wrong tokens" in locked.text
    assert 0 < int(locked.headers["retry-after"]) <= web_admin.SIGN_IN_FAILURES.window.total_seconds()
    assert "set-cookie" not in locked.headers
    # The bearer way is shut as well: the right token gets no page, and a script is told why.
    bearer = client.get("/admin/", headers={"Authorization": f"Bearer {TOKEN}"})
    assert bearer.status_code == 429
    assert 0 < int(bearer.headers["retry-after"]) <= web_admin.SIGN_IN_FAILURES.window.total_seconds()


def test_a_script_with_a_wrong_token_gets_401_and_a_locked_out_one_429_never_the_login_page(
    client: httpx.Client, config: Path, caplog: pytest.LogCaptureFixture
) -> None:
    before = config.read_bytes()
    wrong = {"Authorization": "Bearer nope-nope-nope-nope"}
    version = file_version(before)
    answers = [
        client.get("/admin/", headers=wrong),
        client.get("/admin/feeds/edit", params={"url": "Example Wire"}, headers=wrong),
        client.get("/admin/newsletters/edit", params={"name": "morning"}, headers=wrong),
        client.post("/admin/feeds/remove", data={"version": version, "url": "Example Wire"}, headers=wrong),
        client.post("/admin/logout", data={}, headers=wrong),
    ]
    for answer in answers:
        assert answer.status_code == 401, answer.request.url
        assert "location" not in answer.headers
        assert answer.headers["content-type"] == "application/json"
        assert answer.json()["error"] == "invalid_token"
        assert "Wrong token" in answer.json()["message"]
        assert answer.headers["www-authenticate"].startswith("Bearer ")
        assert 'error="invalid_token"' in answer.headers["www-authenticate"]
        assert answer.headers["cache-control"] == "no-store"
    assert config.read_bytes() == before
    assert "bearer token refused from 127.0.0.1 (wrong token)" in caplog.text
    assert "nope-nope" not in caplog.text
    # A bearer without its token is a script's mistake too, not a browser's visit.
    for header in ("Bearer", "bearer"):
        malformed = client.get("/admin/", headers={"Authorization": header})
        assert (malformed.status_code, malformed.json()["error"]) == (401, "invalid_request"), header
    # Another scheme (a proxy's Basic auth) is not ours: no session, so the login page.
    for header in ("Basic dXNlcjpwYXNz", f"Token {TOKEN}", TOKEN):
        other = client.get("/admin/", headers={"Authorization": header})
        assert (other.status_code, other.headers["location"]) == (303, "/admin/login"), header
    # Until the address is locked out: then 429 with Retry-After, the right token included.
    for _ in range(web_admin.SIGN_IN_FAILURES.count - len(answers)):
        assert client.get("/admin/", headers=wrong).status_code == 401
    for headers in (wrong, {"Authorization": f"Bearer {TOKEN}"}):
        locked = client.post("/admin/feeds/remove", data={"version": version, "url": "x"}, headers=headers)
        assert locked.status_code == 429
        assert locked.json()["error"] == "too_many_attempts"
        assert "Too many wrong tokens" in locked.json()["message"]
        assert 0 < int(locked.headers["retry-after"]) <= web_admin.SIGN_IN_FAILURES.window.total_seconds()
    # A browser (no Authorization header) is still sent to the login page.
    browser = client.get("/admin/")
    assert (browser.status_code, browser.headers["location"]) == (303, "/admin/login")


def test_a_crafted_link_cannot_put_words_on_the_editors_page(client: httpx.Client, config: Path) -> None:
    """A link to /admin/?done=removed&item=... (a story's link on the public front page of the
    same site: the SameSite=Strict cookie goes along) must not make the editor claim anything."""
    sign_in(client)
    client.get("/admin/")  # the sign-in's notice, seen
    claim = "Example Wire. Your session expires soon: sign in again at https://evil.example/admin"
    for query in (
        {"done": "removed", "item": claim},
        {"done": "saved", "item": claim},
        {"done": "signed-in"},
    ):
        page = client.get("/admin/", params=query)
        assert page.status_code == 200
        assert "evil.example" not in page.text
        assert lxml_html.fromstring(page.text).xpath("//*[@class='notice']") == []
    # What the editor did is still told, once, from what the server did.
    fields = form_fields(client)
    removed = client.post("/admin/feeds/remove", data={**fields, "url": "The Local Paper"})
    assert removed.status_code == 303
    assert removed.headers["location"] == "/admin/?done=removed"  # nothing of the item in the URL
    notice = lxml_html.fromstring(client.get(removed.headers["location"]).text).xpath("//*[@class='notice']")
    assert [n.text_content() for n in notice] == ["Removed: https://paper.example.org/feed.atom"]
    again = client.get(removed.headers["location"])
    assert lxml_html.fromstring(again.text).xpath("//*[@class='notice']") == []


def test_an_edit_link_to_an_unknown_entry_does_not_repeat_the_links_words(
    client: httpx.Client, config: Path
) -> None:
    """/admin/feeds/edit?url=<anything> is a link anyone can make: a signed-in editor who
    follows it must not see its words on the editor's page ("No feed '<anything>' ...")."""
    sign_in(client)
    claim = "Example Wire' was moved. Your session expired: sign in again at https://evil.example/admin"
    for page, param, what in (
        ("/admin/feeds/edit", "url", "No feed in feeds.yaml matches this link"),
        ("/admin/newsletters/edit", "name", "No newsletter in feeds.yaml matches this link"),
    ):
        answer = client.get(page, params={param: claim})
        assert answer.status_code == 404
        assert "evil.example" not in answer.text
        assert "session expired" not in answer.text
        (message,) = lxml_html.fromstring(answer.text).xpath("//*[@role='alert']")
        assert message.text_content().startswith(what)
        assert "Pick it from the list" in message.text_content()
    # Not a URL at all, and a title several feeds share: the same answer, no echo either.
    config.write_text(config.read_text().replace("title: Example Wire", "title: 'A Blog: with colons'"))
    for query in ("http://[evil.example", "A Blog: with colons"):
        answer = client.get("/admin/feeds/edit", params={"url": query})
        assert answer.status_code == 404
        assert query not in answer.text
        assert "No feed in feeds.yaml matches this link" in answer.text
    assert client.get("/admin/feeds/edit", params={"url": "The Local Paper"}).status_code == 200


def test_forms_are_small_and_url_encoded_or_refused_unread(client: httpx.Client, config: Path) -> None:
    upload = client.post("/admin/login", files={"token": (None, TOKEN)})  # multipart/form-data
    assert upload.status_code == 415
    padded = urlencode({"token": TOKEN, "pad": "x" * web_admin.MAX_FORM_BYTES})
    large = client.post(
        "/admin/login", content=padded, headers={"content-type": "application/x-www-form-urlencoded"}
    )
    assert large.status_code == 413
    assert "larger than any form of the editor" in large.text
    for refused in (upload, large):
        assert "set-cookie" not in refused.headers  # the token inside did not sign anyone in

    sign_in(client)
    before = config.read_bytes()
    fields = form_fields(client)
    data = {**fields, "url": "https://wire.example.com/rss.xml"}
    assert client.post("/admin/feeds/remove", data=data, files={"f": ("a.txt", b"x")}).status_code == 415
    big = client.post("/admin/feeds/remove", data={**data, "pad": "x" * web_admin.MAX_FORM_BYTES})
    assert big.status_code == 413
    assert config.read_bytes() == before


def test_a_locked_out_address_is_refused_before_its_form_is_read(config: Path) -> None:
    app = make_app(config)
    read: list[bytes] = []

    async def body() -> AsyncIterator[bytes]:
        read.append(b"token=")  # the server asked for the body
        yield b"token=" + TOKEN.encode()

    async def go() -> httpx.Response:
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as http:
            for _ in range(web_admin.SIGN_IN_FAILURES.count):
                await http.post("/admin/login", data={"token": "not-the-token-at-all"})
            length = str(len("token=" + TOKEN))
            headers = {"content-type": "application/x-www-form-urlencoded", "content-length": length}
            return await http.post("/admin/login", content=body(), headers=headers)

    locked = asyncio.run(go())
    assert locked.status_code == 429
    assert read == []


def test_an_edit_changes_only_the_fields_it_sends(live: str, config: Path) -> None:
    """A script (the documented bearer access) sends only what it changes."""
    before = config.read_text()
    with httpx.Client(base_url=live, headers={"Authorization": f"Bearer {TOKEN}"}) as script:
        renamed = script.post(
            "/admin/feeds/edit",
            data={
                "version": file_version(config.read_bytes()),
                "original": "https://paper.example.org/feed.atom",
                "title": "The Local Paper (renamed)",
            },
        )
        assert renamed.status_code == 303, renamed.text
        rescheduled = script.post(
            "/admin/newsletters/edit",
            data={"version": file_version(config.read_bytes()), "name": "morning", "schedule": "0 6 * * *"},
        )
        assert rescheduled.status_code == 303, rescheduled.text
        disabled = script.post(
            "/admin/feeds/edit",
            data={
                "version": file_version(config.read_bytes()),
                "original": "Example Wire",
                "enabled": "false",
            },
        )
        assert disabled.status_code == 303, disabled.text
    changed = [
        line
        for line in difflib.unified_diff(before.splitlines(), config.read_text().splitlines(), lineterm="")
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]
    assert changed == [
        "+    enabled: false",
        "-    title: The Local Paper",
        "+    title: The Local Paper (renamed)",
        '-    schedule: "0 7 * * *"',
        '+    schedule: "0 6 * * *"',
    ]
    loaded = load_config(config).config
    paper = next(f for f in loaded.feeds if f.title == "The Local Paper (renamed)")
    assert (paper.enabled, paper.topics, paper.interval) == (True, ("local", "politics"), timedelta(hours=6))
    assert loaded.newsletters[0].subscribers == ("reader@example.com",)


def submit_as_a_browser(
    client: httpx.Client, page: str, *, fill: dict[str, str], tick: bool | None = None
) -> httpx.Response:
    """The edit page's form sent as a browser sends it: every field in page order, a checkbox
    only when ticked, with ``fill`` typed over the text fields and the box set to ``tick``."""
    (form,) = lxml_html.fromstring(client.get(page).text).xpath("//form[@method='post']")
    pairs = []
    for field in form.xpath(".//input|.//textarea"):
        name = field.get("name")
        if field.get("type") == "checkbox":
            if tick if tick is not None else field.get("checked") is not None:
                pairs.append((name, field.get("value", "on")))
        elif field.tag == "textarea":
            pairs.append((name, fill.get(name, field.text or "")))
        else:
            pairs.append((name, fill.get(name, field.get("value", ""))))
    return client.post(
        form.get("action"),
        content=urlencode(pairs),
        headers={"content-type": "application/x-www-form-urlencoded"},
    )


def test_the_edit_page_still_unticks_enabled_and_clears_emptied_fields(
    client: httpx.Client, config: Path
) -> None:
    sign_in(client)
    paper = "/admin/feeds/edit?url=https://paper.example.org/feed.atom"
    response = submit_as_a_browser(client, paper, fill={"interval": ""}, tick=False)
    assert response.status_code == 303, response.text
    feed = next(f for f in load_config(config).config.feeds if f.title == "The Local Paper")
    assert (feed.enabled, feed.interval) == (False, None)  # unticked: disabled; emptied: back to default
    box = lxml_html.fromstring(client.get(paper).text).xpath("//input[@type='checkbox']")[0]
    assert box.get("checked") is None  # the page shows it unticked

    response = submit_as_a_browser(client, paper, fill={}, tick=True)
    assert response.status_code == 303, response.text
    feed = next(f for f in load_config(config).config.feeds if f.title == "The Local Paper")
    assert feed.enabled

    before = config.read_bytes()  # saved unchanged: the file stays as it is
    assert submit_as_a_browser(client, "/admin/newsletters/edit?name=morning", fill={}).status_code == 303
    assert submit_as_a_browser(client, paper, fill={}).status_code == 303
    assert config.read_bytes() == before
    emptied = submit_as_a_browser(client, "/admin/newsletters/edit?name=morning", fill={"subscribers": ""})
    assert emptied.status_code == 303
    assert load_config(config).config.newsletters[0].subscribers == ()


def test_an_edit_from_a_stale_page_is_refused(client: httpx.Client, config: Path) -> None:
    sign_in(client)
    fields = form_fields(client)
    hand_edit = config.read_text().replace("concurrency: 8", "concurrency: 9")
    config.write_text(hand_edit)
    response = client.post("/admin/feeds/add", data={**fields, "url": "https://new.example.com/feed"})
    assert response.status_code == 409
    assert "changed since this page was loaded" in response.text
    assert config.read_text() == hand_edit


def test_invalid_values_are_shown_back_and_not_written(client: httpx.Client, config: Path) -> None:
    sign_in(client)
    before = config.read_bytes()
    response = client.post(
        "/admin/feeds/add",
        data={**form_fields(client), "url": "https://new.example.com/feed", "interval": "soon"},
    )
    assert response.status_code == 400
    assert "feeds[3].interval: bad duration &#39;soon&#39;" in response.text
    response = client.post(
        "/admin/feeds/add", data={**form_fields(client), "url": "https://wire.example.com/rss.xml"}
    )
    assert response.status_code == 400
    assert "already subscribed: https://wire.example.com/rss.xml" in response.text
    response = client.post(
        "/admin/newsletters/add",
        data={**form_fields(client), "name": "evening", "title": "Evening", "topics": "politcs"},
    )
    assert response.status_code == 400
    assert "no topic named &#39;politcs&#39; (did you mean &#39;politics&#39;?)" in response.text
    for page, field in (("/admin/feeds/add", "url"), ("/admin/feeds/remove", "url")):
        response = client.post(page, data={**form_fields(client), field: "http://[x"})
        assert response.status_code == 400, page  # not a 500: urlsplit refuses the text
        assert "not a valid feed URL: &#39;http://[x&#39;" in response.text
    assert client.get("/admin/feeds/edit", params={"url": "http://[x"}).status_code == 404
    assert config.read_bytes() == before


def test_edit_a_feed_changes_only_what_changed(client: httpx.Client, config: Path) -> None:
    sign_in(client)
    page = client.get("/admin/feeds/edit", params={"url": "https://wire.example.com/rss.xml"})
    assert page.status_code == 200
    assert 'value="Example Wire"' in page.text
    fields = form_fields(client, "/admin/feeds/edit?url=https://wire.example.com/rss.xml")
    response = client.post(
        "/admin/feeds/edit",
        data={
            **fields,
            "original": "https://wire.example.com/rss.xml",
            "url": "https://wire.example.com/rss.xml",
            "title": "Wire",
            "topics": "",
            "interval": "15m",
            "priority": "",
            "enabled": "on",
        },
    )
    assert response.status_code == 303, response.text
    assert config.read_text() == (GOLDEN / "set_feed_keys.after.yaml").read_text()


def test_newsletters_are_added_edited_and_removed(client: httpx.Client, config: Path) -> None:
    sign_in(client)
    response = client.post(
        "/admin/newsletters/add",
        data={
            **form_fields(client),
            "name": "evening",
            "title": "Evening Digest",
            "schedule": "0 18 * * 1-5",
            "topics": "local",
        },
    )
    assert response.status_code == 303, response.text
    assert config.read_text() == (GOLDEN / "add_newsletter.after.yaml").read_text()

    fields = form_fields(client, "/admin/newsletters/edit?name=evening")
    response = client.post(
        "/admin/newsletters/edit",
        data={**fields, "name": "evening", "title": "Evening", "schedule": "0 18 * * 1-5", "topics": "local"},
    )
    assert response.status_code == 303, response.text
    letters = {n.name: n for n in load_config(config).config.newsletters}
    assert letters["evening"].title == "Evening"

    response = client.post("/admin/newsletters/remove", data={**form_fields(client), "name": "evening"})
    assert response.status_code == 303
    assert config.read_text() == (GOLDEN / "base.yaml").read_text()


def test_what_the_file_holds_is_escaped(client: httpx.Client, config: Path) -> None:
    config.write_text(config.read_text().replace("title: Example Wire", "title: <script>alert(1)</script>"))
    sign_in(client)
    page = client.get("/admin/").text
    assert "<script>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page


# -- a real browser ----------------------------------------------------------------------------


def test_a_person_adds_a_feed_in_a_real_browser(
    live: str, config: Path, feed_server: FeedServer, browser: Any
) -> None:
    page = browser.new_page()
    page.goto(f"{live}/admin/")
    assert page.url == f"{live}/admin/login"
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live}/admin/?done=signed-in")
    assert TOKEN not in page.url

    form = page.locator("#add-feed")
    form.locator("input[name=url]").fill(feed_server.url("/feed.xml"))
    form.locator("input[name=topics]").fill("local, world")
    form.locator("button[type=submit]").click()
    page.wait_for_url(re.compile(r".*done=added.*"))
    assert page.locator(".notice").inner_text() == f"Added: {feed_server.url('/feed.xml')}"
    assert page.locator("#feeds").get_by_text("Loopback News").count() == 1

    feed = load_config(config).config.feeds[-1]
    assert (feed.url, feed.title, feed.topics) == (
        feed_server.url("/feed.xml"),
        "Loopback News",
        ("local", "world"),
    )
    assert "# Wire services first." in config.read_text()  # the person's comments survive


def test_signing_out_ends_the_session_even_for_a_copied_cookie(client: httpx.Client, live: str) -> None:
    sign_in(client)
    copied = dict(client.cookies)
    fields = form_fields(client)
    response = client.post("/admin/logout", data={"csrf": fields["csrf"]})
    assert (response.status_code, response.headers["location"]) == (303, "/admin/login")
    # Someone who copied the cookie before the sign-out gets nothing from it.
    with httpx.Client(base_url=live, cookies=copied, follow_redirects=False) as thief:
        assert thief.get("/admin/").headers.get("location") == "/admin/login"
        refused = thief.post("/admin/feeds/remove", data={"url": "Example Wire", **fields})
        assert refused.headers.get("location") == "/admin/login"
    sign_in(client)  # signing in again works
    assert client.get("/admin/").status_code == 200


def test_the_newsletter_name_pattern_is_one_the_browser_applies(live: str, browser: Any) -> None:
    # Chromium compiles ``pattern`` with the ``v`` flag, where an unescaped "-" in a class
    # is a syntax error: the whole pattern was dropped (a console error) and "Bad Name" sent.
    page = browser.new_page()
    errors: list[str] = []
    page.on("console", lambda message: errors.append(message.text) if message.type == "error" else None)
    page.goto(f"{live}/admin/login")
    page.fill("input[name=token]", TOKEN)
    page.click("button[type=submit]")
    page.wait_for_url(f"{live}/admin/?done=signed-in")
    name = page.locator("#add-newsletter input[name=name]")
    name.fill("Bad Name")
    assert name.evaluate("input => input.validity.patternMismatch") is True
    name.fill("good_name-2")
    assert name.evaluate("input => input.validity.valid") is True
    assert not [e for e in errors if "pattern" in e.lower()], errors


def test_a_missing_slash_redirects_on_the_host_the_browser_used(live: str) -> None:
    # Starlette's own redirect is an absolute URL built from the Host header (any host a
    # client names) and the connection's scheme (http:// behind a TLS proxy).
    with httpx.Client(base_url=live, follow_redirects=False) as http:
        response = http.get("/admin/login/?x=1", headers={"host": "evil.example"})
    assert response.status_code in (307, 308)
    assert response.headers["location"] == "/admin/login?x=1"


def test_behind_a_proxys_basic_auth_the_editor_works_with_its_cookie(live: str, config: Path) -> None:
    """nginx's auth_basic in front of /admin/ passes ``Authorization: Basic ...`` upstream on
    every request: the editor must sign in and edit by its cookie as without the proxy."""
    basic = {"Authorization": "Basic dXNlcjpwYXNz"}
    with httpx.Client(base_url=live, follow_redirects=False, headers=basic) as browser:
        assert browser.get("/admin/").status_code == 303  # not signed in yet: the login page
        sign_in(browser)
        page = browser.get("/admin/")
        assert page.status_code == 200, page.text
        fields = form_fields(browser)
        removed = browser.post("/admin/feeds/remove", data={**fields, "url": "Example Wire"})
        assert removed.status_code == 303
        assert "Example Wire" not in config.read_text(encoding="utf-8")
