"""A feed on the internet cannot make the poller fetch, and publish, what only its own network serves.

Two loopback servers stand in for two machines: ``public_feed_server`` on 127.0.0.2, which
these tests declare public (``FetchSettings.address_is_global``), and ``feed_server`` on
127.0.0.1, the operator's private network.  A redirect (or a permanent move, or a feed link on
a page) from the public one to the private one is refused before any request reaches it; the
private one's own redirects, and the public one's to itself, are followed as before.
"""

from __future__ import annotations

import contextlib
import json
import random
import socket
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from aggregator import pipeline
from aggregator.cli import app
from aggregator.discovery import DiscoveryError, find_feed
from aggregator.fetch import Fetcher, FetchSettings, is_global_address, make_client
from aggregator.polling import PollingPolicy, advance_state
from aggregator.types import FeedState, FeedStatus, FetchResult
from tests.feedserver import PRETEND_PUBLIC_ADDRESS, RSS, FeedServer

pytest_plugins = ("tests.feedserver",)

NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)
INTERNAL_RSS = RSS.replace(b"First story", b"INTERNAL-ONLY deploy key rotated")
IF_INTENDED = "if this is intended, configure the private URL directly in feeds.yaml"
PUBLIC_TO_PRIVATE = "redirected from a public address to a private one"


def pretend_public(address: str) -> bool:
    """The real rule, plus 127.0.0.2: the one loopback address these tests call public."""
    return address == PRETEND_PUBLIC_ADDRESS or is_global_address(address)


SETTINGS = FetchSettings(connect_timeout=2, read_timeout=2, total_timeout=5, address_is_global=pretend_public)


@contextlib.asynccontextmanager
async def open_fetcher() -> AsyncIterator[Fetcher]:
    async with make_client(SETTINGS) as client:
        yield Fetcher(client, SETTINGS)


async def fetch(url: str, state: FeedState | None = None, location: str | None = None) -> FetchResult:
    async with open_fetcher() as fetcher:
        return await fetcher.fetch(state or FeedState(url=url), location or url, NOW)


@pytest.fixture
def internal(feed_server: FeedServer) -> FeedServer:
    """The private server, with a feed nobody outside may read."""
    feed_server.add_feed("/internal.rss", INTERNAL_RSS)
    return feed_server


def redirect(server: FeedServer, path: str, location: str, status: int = 302) -> str:
    server.redirects[path] = (status, location)
    return server.url(path)


# -- refused -------------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_redirect_from_a_public_address_to_loopback_is_refused_before_it_is_sent(
    public_feed_server: FeedServer, internal: FeedServer
) -> None:
    target = internal.url("/internal.rss")
    url = redirect(public_feed_server, "/feed", target)
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert result.body is None
    assert result.http_status == 302
    assert result.error == (
        f"redirect (HTTP 302) from {url} to {target} refused: {PUBLIC_TO_PRIVATE} (127.0.0.1); {IF_INTENDED}"
    )
    assert internal.count("/internal.rss") == 0


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("host", "shown"),
    [
        ("localhost", "localhost is at 127.0.0.1"),  # a name, resolved when connecting
        ("127.1", "127.0.0.1"),  # the old short form
        ("2130706433", "127.0.0.1"),  # and as one number
        ("0x7f000001", "127.0.0.1"),
        ("127.0.0.1.", "127.0.0.1"),
        ("[::ffff:127.0.0.1]", "::ffff:7f00:1"),  # IPv4 in IPv6
        ("0.0.0.0", "0.0.0.0"),  # reaches the local machine on Linux
    ],
)
async def test_every_spelling_of_a_private_address_is_refused(
    public_feed_server: FeedServer, internal: FeedServer, host: str, shown: str
) -> None:
    target = f"http://{host}:{internal.port}/internal.rss"
    url = redirect(public_feed_server, "/feed", target)
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert (
        result.error
        == f"redirect (HTTP 302) from {url} to {target} refused: {PUBLIC_TO_PRIVATE} ({shown}); {IF_INTENDED}"
    )
    assert internal.count("/internal.rss") == 0


@pytest.mark.anyio
async def test_a_connection_held_open_to_a_private_server_is_not_reused_for_a_public_redirect(
    public_feed_server: FeedServer, internal: FeedServer
) -> None:
    # The same Fetcher polls the private feed directly (fine: it is configured so) and keeps
    # the connection; a public feed's redirect to the same host:port must still be refused.
    direct = internal.url("/internal.rss", host="localhost")
    url = redirect(public_feed_server, "/feed", direct)
    async with open_fetcher() as fetcher:
        configured = await fetcher.fetch(FeedState(url=direct), direct, NOW)
        redirected = await fetcher.fetch(FeedState(url=url), url, NOW)
    assert configured.status is FeedStatus.OK
    assert redirected.status is FeedStatus.ERROR
    assert redirected.error is not None
    assert "(localhost is at 127.0.0.1)" in redirected.error
    assert internal.count("/internal.rss") == 1


@pytest.mark.anyio
async def test_a_public_hop_further_down_the_chain_is_held_too(
    public_feed_server: FeedServer, internal: FeedServer
) -> None:
    target = internal.url("/internal.rss")
    second = redirect(public_feed_server, "/second", target, 307)
    url = redirect(public_feed_server, "/feed", "/second", 301)
    result = await fetch(url)
    assert result.error == (
        f"redirect (HTTP 307) from {second} to {target} refused: "
        f"{PUBLIC_TO_PRIVATE} (127.0.0.1); {IF_INTENDED}"
    )
    assert internal.count("/internal.rss") == 0


@pytest.mark.anyio
async def test_a_permanent_redirect_to_a_private_address_is_never_adopted(
    public_feed_server: FeedServer, internal: FeedServer
) -> None:
    # polling adopts a 301 seen on three successful polls in a row as the feed's new address,
    # which would then be polled directly: the refusal is an error, so it never counts.
    url = redirect(public_feed_server, "/feed", internal.url("/internal.rss"), 301)
    policy, rng = PollingPolicy(), random.Random(1)
    state = FeedState(url=url)
    async with open_fetcher() as fetcher:
        for poll in range(policy.redirect_confirmations + 2):
            when = NOW + timedelta(hours=poll)
            result = await fetcher.fetch(state, state.fetch_url or url, when)
            state = advance_state(state, result, None, policy, when, rng)
            assert result.status is FeedStatus.ERROR
    assert state.fetch_url is None
    assert state.redirect_count == 0
    assert state.status is FeedStatus.ERROR
    assert internal.count("/internal.rss") == 0


@pytest.mark.anyio
async def test_a_move_adopted_to_a_private_address_is_refused_while_the_feed_is_at_a_public_one(
    public_feed_server: FeedServer, internal: FeedServer
) -> None:
    # A database that adopted such a move before (or a name that resolved to a public address
    # for three polls, then to 127.0.0.1) must not go on polling the private address directly.
    url = public_feed_server.url("/feed")
    moved = internal.url("/internal.rss", host="localhost")
    state = FeedState(url=url, fetch_url=moved)
    result = await fetch(url, state, moved)
    assert result.status is FeedStatus.ERROR
    assert result.error == (
        f"the permanent redirect (moved) from {url} to {moved} refused: the feed moved from a public "
        f"address to a private one (localhost is at 127.0.0.1); {IF_INTENDED}"
    )
    assert internal.count("/internal.rss") == 0


# -- still followed ------------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_feed_configured_at_a_private_address_keeps_its_private_redirects(
    internal: FeedServer, public_feed_server: FeedServer
) -> None:
    to_name = redirect(internal, "/to-name", internal.url("/internal.rss", host="localhost"))
    for url in (internal.url("/temporary"), internal.url("/moved"), to_name):
        result = await fetch(url)
        assert result.status is FeedStatus.OK, result.error
    # and from a private address to a public one is no leak either
    outward = redirect(internal, "/outward", public_feed_server.url("/feed.xml"))
    assert (await fetch(outward)).status is FeedStatus.OK
    # a move from one private address to another stays followed when polled directly
    state = FeedState(url=internal.url("/moved"), fetch_url=internal.url("/feed.xml", host="localhost"))
    assert (await fetch(state.url, state, state.fetch_url)).status is FeedStatus.OK


@pytest.mark.anyio
async def test_a_public_feed_redirecting_to_a_public_address_is_followed(
    public_feed_server: FeedServer,
) -> None:
    url = redirect(public_feed_server, "/feed", public_feed_server.url("/feed.xml"), 301)
    result = await fetch(url)
    assert result.status is FeedStatus.OK
    assert result.body == RSS
    assert result.permanent_redirect == public_feed_server.url("/feed.xml")
    moved = FeedState(url=url, fetch_url=public_feed_server.url("/feed.xml"))
    assert (await fetch(url, moved, moved.fetch_url)).status is FeedStatus.OK


@pytest.mark.anyio
async def test_a_moved_feed_is_polled_without_looking_up_the_host_it_left(
    public_feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Feeds move away from dead domains: resolving the old host on every poll cost each
    # moved feed a lookup, and one whose name servers hang held a resolver thread the
    # other feeds' connections wait for.  It is only asked when the new address is private.
    asked: list[str] = []
    real = socket.getaddrinfo

    def spy(host: Any, *args: Any, **kwargs: Any) -> Any:
        asked.append(str(host))
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", spy)
    moved = FeedState(url="http://old-name.invalid/feed", fetch_url=public_feed_server.url("/feed.xml"))
    result = await fetch(moved.url, moved, moved.fetch_url)
    assert result.status is FeedStatus.OK, result.error
    assert "old-name.invalid" not in asked


# -- the default rule ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "::1",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "fe80::1%eth0",
        "fc00::1",
        "fd12:3456::1",
        "0.0.0.0",
        "::",
        "224.0.0.1",
        "ff02::1",
        "240.0.0.1",
        "100.64.0.1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::7f00:1",
        "2002:7f00:1::",  # 6to4 of 127.0.0.1
        "64:ff9b::a00:1",  # NAT64 of 10.0.0.1
        "not an address",
    ],
)
def test_private_and_special_addresses_are_not_global(address: str) -> None:
    assert not is_global_address(address)


@pytest.mark.parametrize(
    "address", ["93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "::ffff:8.8.8.8", "64:ff9b::808:808"]
)
def test_internet_addresses_are_global(address: str) -> None:
    assert is_global_address(address)


def test_the_default_settings_use_the_real_rule() -> None:
    assert FetchSettings().address_is_global is is_global_address


# -- discovery (feeds add) ------------------------------------------------------------------


@pytest.mark.anyio
async def test_a_public_page_advertising_a_private_feed_is_not_subscribed_to(
    public_feed_server: FeedServer, internal: FeedServer
) -> None:
    target = internal.url("/internal.rss")
    page = public_feed_server.url("/page.html")
    link = f'<link rel="alternate" type="application/rss+xml" href="{target}">'
    public_feed_server.add_feed(
        "/page.html", f"<html><head>{link}</head></html>".encode(), content_type="text/html"
    )
    async with open_fetcher() as fetcher:
        with pytest.raises(DiscoveryError) as refused:
            await find_feed(fetcher, page, page, NOW, lambda choices: choices.urls[0])
    assert str(refused.value) == (
        f"cannot subscribe to {target}: feed link on {page} to {target} refused: a page at a public "
        f"address points to a private one (127.0.0.1); {IF_INTENDED}"
    )
    assert internal.count("/internal.rss") == 0


@pytest.mark.anyio
async def test_discovery_follows_the_same_rule_for_redirects_and_keeps_private_pages_working(
    public_feed_server: FeedServer, internal: FeedServer
) -> None:
    url = redirect(public_feed_server, "/feed", internal.url("/internal.rss"))
    async with open_fetcher() as fetcher:
        with pytest.raises(DiscoveryError, match=PUBLIC_TO_PRIVATE):
            await find_feed(fetcher, url, url, NOW, lambda choices: choices.urls[0])
        # a page on the private network advertising its own feed, as before
        page = internal.url("/page.html")
        found = await find_feed(fetcher, page, page, NOW, lambda choices: choices.urls[0])
        # and a public page advertising a public feed
        public_page = public_feed_server.url("/page.html")
        public = await find_feed(fetcher, public_page, public_page, NOW, lambda choices: choices.urls[0])
    assert (found.url, found.page) == (internal.url("/feed.xml"), page)
    assert (public.url, public.page) == (public_feed_server.url("/feed.xml"), public_page)
    assert internal.count("/internal.rss") == 0


# -- end to end: nothing from the private network is stored or published -------------------


def test_run_once_publishes_nothing_a_public_feed_redirected_to_a_private_address(
    tmp_path: Path,
    public_feed_server: FeedServer,
    internal: FeedServer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_settings = pipeline.fetch_settings

    def settings_with_a_public_loopback(polling: Any) -> FetchSettings:
        return replace(real_settings(polling), address_is_global=pretend_public)

    monkeypatch.setattr(pipeline, "fetch_settings", settings_with_a_public_loopback)
    url = redirect(public_feed_server, "/feed", internal.url("/internal.rss"), 301)
    config = tmp_path / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: {url}\n    title: Some public blog\nnewsletters: []\n", encoding="utf-8"
    )
    runner = CliRunner()
    for _ in range(4):  # past the three polls that would adopt a 301
        polled = runner.invoke(app, ["--config", str(config), "poll"], catch_exceptions=False)
        assert polled.exit_code == 1, polled.output  # the feed failed
    ran = runner.invoke(app, ["--config", str(config), "run", "--once"], catch_exceptions=False)
    assert "combined feeds in" in ran.output
    status = runner.invoke(app, ["--config", str(config), "status", "--format", "json"])
    (row,) = json.loads(status.stdout)
    assert row["status"] == "error"
    assert PUBLIC_TO_PRIVATE in row["error"]
    assert internal.url("/internal.rss") in row["error"]
    export = runner.invoke(app, ["--config", str(config), "export", "--format", "jsonl"])
    assert export.stdout.strip() == ""
    published = "".join(p.read_text(encoding="utf-8") for p in (tmp_path / "public").glob("feed.*"))
    assert published  # the feeds were written, without it
    assert "INTERNAL-ONLY" not in published
    assert internal.count("/internal.rss") == 0
