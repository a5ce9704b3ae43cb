"""Fetching against a real, misbehaving HTTP server on 127.0.0.1 (tests/feedserver.py).

Each test states what a user would see in ``aggregator status``: the status and the
message of one feed.  Time limits are small so that every test takes well under a
second or two; nothing here sleeps except the server.
"""

from __future__ import annotations

import contextlib
import email.utils
import gzip
import os
import random
import shutil
import socket
import ssl
import subprocess
import time
import tracemalloc
import zlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from aggregator import USER_AGENT
from aggregator.fetch import Fetcher, FetchJob, FetchSettings, _retry_after, fetch_feeds, make_client
from aggregator.polling import PollingPolicy, advance_state, is_due, wants_unconditional
from aggregator.types import FeedState, FeedStatus, FetchResult
from tests.feedserver import (
    ATOM,
    CLAIMED_LENGTH,
    FEED_ETAG,
    FEED_LAST_MODIFIED,
    PRIVATE_USER,
    RSS,
    FeedServer,
    big_feed,
    gzip_bomb,
    gzip_gzip_bomb,
    unused_port,
)

pytest_plugins = ("tests.feedserver",)
pytestmark = pytest.mark.anyio

NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)
FAST = FetchSettings(connect_timeout=2, read_timeout=2, total_timeout=2)
MiB = 1024 * 1024
RAISE_THE_CAP = "if the feed really is that large, raise polling.max_response_size in feeds.yaml"
SEE_WHERE_IT_WENT = "open the url in a browser to see where the feed is now, and update it in feeds.yaml"


@contextlib.asynccontextmanager
async def open_fetcher(settings: FetchSettings = FAST) -> AsyncIterator[Fetcher]:
    async with make_client(settings) as client:
        yield Fetcher(client, settings)


async def fetch(
    url: str,
    *,
    settings: FetchSettings = FAST,
    state: FeedState | None = None,
    unconditional: bool = False,
) -> FetchResult:
    async with open_fetcher(settings) as fetcher:
        return await fetcher.fetch(state or FeedState(url=url), url, NOW, unconditional=unconditional)


# -- the ordinary case ---------------------------------------------------------------------


async def test_fetches_a_feed_with_its_validators_and_headers(feed_server: FeedServer) -> None:
    url = feed_server.url("/feed.xml")
    result = await fetch(url)
    assert result.status is FeedStatus.OK
    assert result.error is None
    assert result.body == RSS
    assert (result.url, result.requested_url, result.final_url) == (url, url, url)
    assert result.http_status == 200
    assert (result.etag, result.last_modified) == (FEED_ETAG, FEED_LAST_MODIFIED)
    assert result.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert result.fetched_at == NOW
    assert not result.conditional
    assert result.permanent_redirect is None
    assert timedelta(0) < result.elapsed < timedelta(seconds=2)


async def test_identifies_itself_and_asks_for_feeds(feed_server: FeedServer) -> None:
    await fetch(feed_server.url("/feed.xml"))
    headers = feed_server.last("/feed.xml").headers
    assert headers["user-agent"] == USER_AGENT
    assert headers["accept"].startswith("application/atom+xml, application/rss+xml")
    assert headers["accept"].endswith("*/*;q=0.1")
    assert "gzip" in headers["accept-encoding"]
    assert "if-none-match" not in headers


async def test_second_fetch_sends_validators_and_a_304_costs_no_body(feed_server: FeedServer) -> None:
    url = feed_server.url("/feed.xml")
    first = await fetch(url)
    state = FeedState(url=url, etag=first.etag, last_modified=first.last_modified)
    second = await fetch(url, state=state)
    assert second.status is FeedStatus.NOT_MODIFIED
    assert second.http_status == 304
    assert second.body is None
    assert second.conditional
    assert second.etag == FEED_ETAG
    sent = feed_server.last("/feed.xml").headers
    assert sent["if-none-match"] == FEED_ETAG
    assert sent["if-modified-since"] == FEED_LAST_MODIFIED
    assert feed_server.count("/feed.xml") == 2


async def test_if_modified_since_alone_is_enough_for_a_304(feed_server: FeedServer) -> None:
    url = feed_server.url("/atom.xml")
    result = await fetch(url, state=FeedState(url=url, last_modified=FEED_LAST_MODIFIED))
    assert result.status is FeedStatus.NOT_MODIFIED
    assert "if-none-match" not in feed_server.last("/atom.xml").headers


async def test_a_stale_etag_gets_the_new_body(feed_server: FeedServer) -> None:
    url = feed_server.url("/atom.xml")
    result = await fetch(url, state=FeedState(url=url, etag='"atom-v0"'))
    assert result.status is FeedStatus.OK
    assert result.body == ATOM
    assert result.etag == '"atom-v1"'


async def test_a_304_to_a_request_without_validators_is_an_error(feed_server: FeedServer) -> None:
    # Taken as "not modified", a new feed behind such a server never got its first body,
    # and its weekly unconditional fetch never counted as done.
    url = feed_server.url("/always-304")
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert result.http_status == 304
    message = (
        f"{url} answered 304 Not Modified to a request without validators: the server or a proxy "
        "in between is misconfigured; will retry later"
    )
    assert result.error == message
    state = advance_state(FeedState(url=url), result, None, PollingPolicy(), NOW, random.Random(1))
    assert (state.status, state.error_count, state.last_error) == (FeedStatus.ERROR, 1, message)
    # With validators sent, the same answer is the ordinary 304.
    again = await fetch(url, state=FeedState(url=url, etag='"always"'))
    assert again.status is FeedStatus.NOT_MODIFIED


async def test_a_304_to_the_weekly_unconditional_fetch_fails_that_poll_only(feed_server: FeedServer) -> None:
    # The server cannot do better than a 304 even without validators: the weekly refetch has
    # been tried.  Not counted as done, every later poll was unconditional too and failed.
    url = feed_server.url("/always-304")
    policy, rng = PollingPolicy(), random.Random(1)
    state = FeedState(url=url, etag='"always"', last_unconditional_fetch=NOW - timedelta(days=8))
    assert wants_unconditional(state, NOW, policy)
    result = await fetch(url, state=state, unconditional=True)
    state = advance_state(state, result, None, policy, NOW, rng)
    assert (state.status, state.http_status) == (FeedStatus.ERROR, 304)
    later = state.next_check
    assert later is not None
    assert not wants_unconditional(state, later, policy)
    result = await fetch(url, state=state)
    state = advance_state(state, result, None, policy, later, rng)
    assert (state.status, state.error_count, state.last_error) == (FeedStatus.NOT_MODIFIED, 0, None)


async def test_unconditional_fetch_leaves_validators_out(feed_server: FeedServer) -> None:
    url = feed_server.url("/feed.xml")
    state = FeedState(url=url, etag=FEED_ETAG, last_modified=FEED_LAST_MODIFIED)
    result = await fetch(url, state=state, unconditional=True)
    assert result.status is FeedStatus.OK
    assert result.body == RSS
    assert not result.conditional
    sent = feed_server.last("/feed.xml").headers
    assert "if-none-match" not in sent
    assert "if-modified-since" not in sent


async def test_unsafe_stored_validators_are_not_sent(feed_server: FeedServer) -> None:
    url = feed_server.url("/feed.xml")
    result = await fetch(url, state=FeedState(url=url, etag='"a"\r\nX-Injected: 1', last_modified="x" * 5000))
    assert result.status is FeedStatus.OK
    sent = feed_server.last("/feed.xml").headers
    assert "x-injected" not in sent
    assert "if-none-match" not in sent
    assert "if-modified-since" not in sent


@pytest.mark.parametrize(
    "path", ["/gzip.xml", "/deflate.xml", "/raw-deflate.xml", "/gzip-members.xml", "/raw-deflate-split.xml"]
)
async def test_compressed_responses_are_decoded(feed_server: FeedServer, path: str) -> None:
    # gzip-members: two gzip members one after the other; the feed was cut after the first.
    # raw-deflate-split: a first read of one byte, too short to tell zlib from raw deflate.
    result = await fetch(feed_server.url(path))
    assert result.status is FeedStatus.OK
    assert result.body == RSS


async def test_wrong_content_type_is_not_a_fetch_error(feed_server: FeedServer) -> None:
    result = await fetch(feed_server.url("/wrong-type"))
    assert result.status is FeedStatus.OK
    assert result.body == RSS
    assert result.headers["content-type"] == "text/html; charset=utf-8"  # the parser decides


async def test_an_html_page_is_handed_to_the_parser(feed_server: FeedServer) -> None:
    result = await fetch(feed_server.url("/page.html"))
    assert result.status is FeedStatus.OK
    assert result.body is not None
    assert b'rel="alternate"' in result.body


async def test_a_5_mb_feed_is_within_the_default_limit(feed_server: FeedServer) -> None:
    result = await fetch(feed_server.url("/big-feed.xml"))
    assert result.status is FeedStatus.OK
    assert result.body == big_feed()
    assert len(result.body) >= 5 * MiB


async def test_cache_lifetime_from_cache_control_and_from_expires(feed_server: FeedServer) -> None:
    assert (await fetch(feed_server.url("/cached"))).cache_max_age == timedelta(hours=2)
    assert (await fetch(feed_server.url("/expires"))).cache_max_age == timedelta(hours=3)
    assert (await fetch(feed_server.url("/feed.xml"))).cache_max_age is None


async def test_a_lifetime_meant_for_shared_caches_does_not_slow_polling(feed_server: FeedServer) -> None:
    # What Next.js sends for a page built once: a year in the CDN, purged on the next deploy.
    # s-maxage is for shared caches only (RFC 9111 5.2.2.10); read as ours, the feed was
    # polled once a week (max_interval) instead of every hour.
    cdn = "public, s-maxage=31536000, stale-while-revalidate"
    feed_server.add_feed("/next.xml", RSS, headers={"Cache-Control": cdn})
    result = await fetch(feed_server.url("/next.xml"))
    assert result.cache_max_age is None
    state = advance_state(
        FeedState(url=result.url), result, None, PollingPolicy(jitter=0), NOW, random.Random(1)
    )
    assert state.next_check == NOW + timedelta(hours=1)
    # Beside a max-age, the max-age counts, as before.
    feed_server.add_feed("/both.xml", RSS, headers={"Cache-Control": "s-maxage=600, max-age=7200"})
    assert (await fetch(feed_server.url("/both.xml"))).cache_max_age == timedelta(hours=2)


@pytest.mark.parametrize(
    ("headers", "fresh_for"),
    [
        ({"Cache-Control": "max-age=600", "Age": "590"}, timedelta(seconds=10)),
        ({"Cache-Control": "public, max-age=600", "Age": " 600 "}, timedelta(0)),
        ({"Cache-Control": "max-age=600", "Age": "86400"}, timedelta(0)),  # clamped, not negative
        ({"Cache-Control": "max-age=600", "Age": "9" * 5000}, timedelta(0)),  # "infinity"
        ({"Cache-Control": "max-age=600", "Age": "soon"}, timedelta(seconds=600)),  # ignored
        ({"Cache-Control": "max-age=600", "Age": "-5"}, timedelta(seconds=600)),  # ignored
        ({"Cache-Control": "max-age=600", "Age": "\u00b2"}, timedelta(seconds=600)),  # ignored
        ({"Cache-Control": "no-cache", "Age": "30"}, None),  # no lifetime to take it from
    ],
    ids=[
        "cdn",
        "just-expired",
        "older-than-lifetime",
        "5000-digits",
        "word",
        "negative",
        "superscript",
        "none",
    ],
)
async def test_the_age_of_a_cached_copy_is_taken_off_its_lifetime(
    feed_server: FeedServer, headers: dict[str, str], fresh_for: timedelta | None
) -> None:
    # RFC 9111 4.2.3: a CDN's copy with max-age=600 that has been in the CDN for 590 s is
    # fresh for 10 more seconds, not 600.
    feed_server.add_feed("/cdn.xml", RSS, headers=headers)
    result = await fetch(feed_server.url("/cdn.xml"))
    assert result.status is FeedStatus.OK, result.error
    assert result.cache_max_age == fresh_for


async def test_an_aged_copy_does_not_put_the_next_check_off(feed_server: FeedServer) -> None:
    feed_server.add_feed("/cdn.xml", RSS, headers={"Cache-Control": "max-age=600", "Age": "590"})
    policy = PollingPolicy(interval=timedelta(minutes=1), min_interval=timedelta(0), jitter=0)
    result = await fetch(feed_server.url("/cdn.xml"))
    state = advance_state(FeedState(url=result.url), result, None, policy, NOW, random.Random(1))
    assert state.next_check == NOW + timedelta(minutes=1)  # the interval, not 10 minutes
    # Expires - Date is a lifetime too, and ages the same way.
    expires = email.utils.formatdate(time.time() + 3600, usegmt=True)
    feed_server.add_feed("/cdn.xml", RSS, headers={"Expires": expires, "Age": "3000"})
    result = await fetch(feed_server.url("/cdn.xml"))
    assert result.cache_max_age is not None
    assert timedelta(seconds=595) <= result.cache_max_age <= timedelta(seconds=600)


# -- redirects -----------------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/moved", "/moved-308"])
async def test_permanent_redirect_is_reported(feed_server: FeedServer, path: str) -> None:
    url = feed_server.url(path)
    result = await fetch(url)
    assert result.status is FeedStatus.OK
    assert result.body == RSS
    assert result.requested_url == url
    assert result.final_url == feed_server.url("/feed.xml")
    assert result.permanent_redirect == feed_server.url("/feed.xml")


async def test_temporary_redirect_is_followed_but_not_reported_as_a_move(feed_server: FeedServer) -> None:
    result = await fetch(feed_server.url("/temporary"))
    assert result.status is FeedStatus.OK
    assert result.final_url == feed_server.url("/feed.xml")
    assert result.permanent_redirect is None


async def test_a_cookie_set_on_the_way_is_sent_back(feed_server: FeedServer) -> None:
    # Consent and anti-bot pages set a cookie on a redirect that the feed then asks for.
    result = await fetch(feed_server.url("/cookie-gate"))
    assert result.status is FeedStatus.OK
    assert feed_server.last("/cookie-gate/feed").headers.get("cookie") == "gate=open"


async def test_no_feed_is_sent_the_cookies_another_feed_was_given(feed_server: FeedServer) -> None:
    # One client for the whole poll, yet a cookie lives only as long as the fetch that got
    # it: a server never learns what it set while another feed was being fetched, and the
    # poll does not pile up a jar that every later request would carry and search.
    async with open_fetcher(FAST) as fetcher:
        gated = await fetcher.fetch(FeedState(url="gated"), feed_server.url("/cookie-gate"), NOW)
        plain = await fetcher.fetch(FeedState(url="plain"), feed_server.url("/feed.xml"), NOW)
        again = await fetcher.fetch(FeedState(url="gated"), feed_server.url("/cookie-gate"), NOW)
    assert (gated.status, plain.status, again.status) == (FeedStatus.OK,) * 3
    assert "cookie" not in feed_server.last("/feed.xml").headers
    assert "cookie" not in feed_server.last("/cookie-gate").headers  # the second visit starts afresh
    assert feed_server.last("/cookie-gate/feed").headers.get("cookie") == "gate=open"


async def test_a_move_is_only_as_far_as_the_permanent_hops_go(feed_server: FeedServer) -> None:
    result = await fetch(feed_server.url("/moved-then-temporary"))
    assert result.status is FeedStatus.OK
    assert result.permanent_redirect == feed_server.url("/temporary")
    assert result.final_url == feed_server.url("/feed.xml")


async def test_validators_travel_through_redirects(feed_server: FeedServer) -> None:
    url = feed_server.url("/moved")
    result = await fetch(url, state=FeedState(url=url, etag=FEED_ETAG))
    assert result.status is FeedStatus.NOT_MODIFIED
    assert result.permanent_redirect == feed_server.url("/feed.xml")
    assert feed_server.last("/feed.xml").headers["if-none-match"] == FEED_ETAG


async def test_moved_to_a_missing_page_is_an_error_that_still_names_the_move(feed_server: FeedServer) -> None:
    result = await fetch(feed_server.url("/moved-to-missing"))
    assert result.status is FeedStatus.ERROR
    assert result.http_status == 404
    assert result.final_url == feed_server.url("/missing")
    assert result.permanent_redirect == feed_server.url("/missing")


async def test_redirect_loop_names_the_urls(feed_server: FeedServer) -> None:
    a, b = feed_server.url("/redirect-loop"), feed_server.url("/redirect-loop-2")
    result = await fetch(a)
    assert result.status is FeedStatus.ERROR
    assert result.error == f"redirect loop: {a} -> {b} -> {a}: {SEE_WHERE_IT_WENT}"
    assert feed_server.count("/redirect-loop") == 1
    assert feed_server.count("/redirect-loop-2") == 1


async def test_five_redirects_are_followed_and_six_are_too_many(feed_server: FeedServer) -> None:
    ok = await fetch(feed_server.url("/redirect-chain/4"))  # 4, 3, 2, 1, 0 -> feed: 5 hops
    assert ok.status is FeedStatus.OK
    feed_server.reset()
    result = await fetch(feed_server.url("/redirect-chain/5"))
    assert result.status is FeedStatus.ERROR
    assert result.error is not None
    assert result.error.startswith("too many redirects (more than 5): ")
    assert result.error.endswith(f"{feed_server.url('/feed.xml')}: {SEE_WHERE_IT_WENT}")
    assert feed_server.url("/redirect-chain/5") in result.error
    assert feed_server.url("/feed.xml") in result.error
    assert feed_server.count("/redirect-chain/0") == 1
    assert feed_server.count("/feed.xml") == 0  # the 6th hop was not requested


async def test_redirect_to_a_file_url_is_refused(feed_server: FeedServer) -> None:
    result = await fetch(feed_server.url("/redirect-to-file"))
    assert result.status is FeedStatus.ERROR
    assert result.body is None
    assert result.error is not None
    assert "Location 'file:///etc/passwd': only http and https are followed" in result.error


@pytest.mark.anyio
async def test_a_connection_refused_after_a_redirect_names_the_redirect(feed_server: FeedServer) -> None:
    # "connection refused by 127.0.0.1:1" sent the user to check the server configured,
    # which answered fine: the redirect it sent leads to the closed port.
    feed_server.redirects["/to-closed-port"] = (302, "http://127.0.0.1:1/feed.xml")
    url = feed_server.url("/to-closed-port")
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert result.error is not None
    assert "127.0.0.1:1" in result.error
    assert result.error.endswith(f"(redirected there from {url})")


@pytest.mark.parametrize(
    ("path", "location", "why"),
    [
        ("/redirect-to-data", "data:text/xml,<rss/>", "only http and https are followed"),
        ("/redirect-to-mailto", "mailto:feeds@example.org", "only http and https are followed"),
        ("/redirect-to-broken", "http://[::1/x", "Invalid port: ':1'"),
    ],
)
async def test_an_unusable_redirect_location_is_named_not_the_feeds_url(
    feed_server: FeedServer, path: str, location: str, why: str
) -> None:
    # httpx parsed the Location itself and failed the fetch as "not a valid URL: <the feed>",
    # which sent the user to fix a line of feeds.yaml that was right.
    url = feed_server.url(path)
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert result.http_status == 302
    assert result.final_url == url
    assert result.error == (
        f"redirect (HTTP 302) from {url} to an unusable Location {location!r}: {why}; {SEE_WHERE_IT_WENT}"
    )


# -- status codes --------------------------------------------------------------------------


async def test_404_tells_the_user_to_check_the_url(feed_server: FeedServer) -> None:
    url = feed_server.url("/missing")
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert result.http_status == 404
    assert result.body is None
    assert result.error == f"not found (HTTP 404) at {url}: check the url in feeds.yaml"


async def test_410_retires_the_feed(feed_server: FeedServer) -> None:
    url = feed_server.url("/gone")
    result = await fetch(url)
    assert result.status is FeedStatus.RETIRED
    assert result.http_status == 410
    assert result.error == (
        f"gone (HTTP 410) at {url}: the server says this feed was removed; remove it from feeds.yaml"
    )


@pytest.mark.parametrize("code", [302, 303, 307])
async def test_410_behind_a_temporary_redirect_is_an_error_to_retry_not_a_retirement(
    feed_server: FeedServer, code: int
) -> None:
    # A temporary redirect says the configured URL is still the feed's address: that the
    # page it points to today is gone does not end the feed.  It was retired for good.
    feed_server.redirects["/for-now"] = (code, "/gone")
    url, gone = feed_server.url("/for-now"), feed_server.url("/gone")
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert result.http_status == 410
    assert result.final_url == gone
    assert result.permanent_redirect is None
    assert result.error == (
        f"gone (HTTP 410) at {gone}, reached through a temporary redirect (HTTP {code}) from {url}: "
        f"the redirect keeps {url} as the feed's address, so the feed is not retired; will retry later"
    )
    policy = PollingPolicy(jitter=0)
    state = advance_state(
        FeedState(url=url, status=FeedStatus.OK), result, None, policy, NOW, random.Random(1)
    )
    assert state.status is FeedStatus.ERROR
    assert state.next_check == NOW + policy.backoff_base
    assert is_due(state, NOW + policy.backoff_base)


async def test_410_after_a_move_then_a_temporary_redirect_names_the_temporary_one(
    feed_server: FeedServer,
) -> None:
    # Moved for good to /for-now, which sends elsewhere only for now: still no retirement,
    # and the message names the redirect that was temporary, not the feed's own URL.
    feed_server.redirects["/old"] = (301, "/for-now")
    feed_server.redirects["/for-now"] = (307, "/gone")
    moved_to = feed_server.url("/for-now")
    result = await fetch(feed_server.url("/old"))
    assert result.status is FeedStatus.ERROR
    assert result.permanent_redirect == moved_to
    assert result.error is not None
    assert f"reached through a temporary redirect (HTTP 307) from {moved_to}:" in result.error


@pytest.mark.parametrize("codes", [(301,), (308,), (301, 308)], ids=["301", "308", "301-308"])
async def test_410_at_the_end_of_permanent_redirects_still_retires(
    feed_server: FeedServer, codes: tuple[int, ...]
) -> None:
    hops = [f"/hop-{i}" for i in range(len(codes))]
    for path, code, target in zip(hops, codes, [*hops[1:], "/gone"], strict=True):
        feed_server.redirects[path] = (code, target)
    gone = feed_server.url("/gone")
    result = await fetch(feed_server.url(hops[0]))
    assert result.status is FeedStatus.RETIRED
    assert result.error == (
        f"gone (HTTP 410) at {gone}: the server says this feed was removed; remove it from feeds.yaml"
    )


async def test_500_is_an_error_to_retry(feed_server: FeedServer) -> None:
    url = feed_server.url("/error")
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert result.http_status == 500
    assert result.error == (
        f"server error (HTTP 500 Internal Server Error) at {url}: "
        "a problem on the site's side; will retry later"
    )
    assert result.retry_after is None


async def test_429_retry_after_seconds(feed_server: FeedServer) -> None:
    url = feed_server.url("/rate-limited")
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert result.http_status == 429
    assert result.retry_after == NOW + timedelta(seconds=120)
    # No time: polling decides when (here: not before the interval) and records it.
    assert result.error == f"rate limited (HTTP 429) at {url}: the server asks us to poll less often"
    state = advance_state(FeedState(url=url), result, None, PollingPolicy(jitter=0), NOW, random.Random(1))
    assert state.next_check == NOW + timedelta(hours=1)
    assert state.last_error == f"{result.error}; next try at 2025-08-18T13:00:00+00:00"


async def test_503_retry_after_date_is_taken_relative_to_the_servers_clock(feed_server: FeedServer) -> None:
    # The server's clock says today; ours says NOW (2025).  The delay it meant is one hour.
    result = await fetch(feed_server.url("/unavailable"))
    assert result.status is FeedStatus.ERROR
    assert result.http_status == 503
    assert result.retry_after == NOW + timedelta(hours=1)
    assert result.error == (
        f"service unavailable (HTTP 503) at {feed_server.url('/unavailable')}: "
        "the server is down or overloaded"
    )


# -- limits: size and time -----------------------------------------------------------------


async def test_gzip_bomb_is_stopped_without_inflating_it(feed_server: FeedServer) -> None:
    gzip_bomb()  # built before measuring: the server's copy is not ours
    tracemalloc.start()
    started = time.monotonic()
    try:
        result = await fetch(feed_server.url("/gzip-bomb"), settings=FetchSettings())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert result.status is FeedStatus.ERROR
    assert result.error == (
        f"response larger than 10 MiB at {feed_server.url('/gzip-bomb')}: stopped reading; {RAISE_THE_CAP}"
    )
    assert time.monotonic() - started < 3
    assert peak < 12 * MiB  # the bomb is 50 MiB inflated; we held the cap and a little more
    assert feed_server.bytes_sent("/gzip-bomb") <= len(gzip_bomb()) + 1024


@pytest.mark.parametrize("path", ["/gzip-gzip-bomb", "/gzip-twice-bomb", "/identity-gzip-bomb"])
async def test_a_gzip_bomb_behind_stacked_codings_is_stopped_too(feed_server: FeedServer, path: str) -> None:
    # "gzip, gzip", two Content-Encoding headers, "identity, gzip": httpx inflated these
    # a network read at a time, whole (980 bytes of gzip in gzip took 1 GiB).
    gzip_bomb(), gzip_gzip_bomb()  # built before measuring: the server's copy is not ours
    tracemalloc.start()
    try:
        result = await fetch(feed_server.url(path), settings=FetchSettings())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 12 * MiB  # the cap and a little more, not 50 MiB at once
    assert result.status is FeedStatus.ERROR
    assert result.error == (
        f"response larger than 10 MiB at {feed_server.url(path)}: stopped reading; {RAISE_THE_CAP}"
    )


async def test_stacked_codings_are_undone_in_reverse_order(feed_server: FeedServer) -> None:
    feed_server.add_feed(
        "/twice.xml", gzip.compress(zlib.compress(RSS)), headers={"Content-Encoding": "deflate, gzip"}
    )
    result = await fetch(feed_server.url("/twice.xml"))
    assert result.status is FeedStatus.OK, result.error
    assert result.body == RSS


async def test_a_stack_with_a_token_that_compresses_nothing_still_decodes(feed_server: FeedServer) -> None:
    # "utf-8" or "none" in Content-Encoding (misconfigured servers) changes nothing, in a
    # stack too; a real compression not asked for in it is named.
    feed_server.add_feed("/odd-stack.xml", gzip.compress(RSS), headers={"Content-Encoding": "gzip, utf-8"})
    feed_server.add_feed("/zstd-stack.xml", gzip.compress(RSS), headers={"Content-Encoding": "gzip, zstd"})
    odd = await fetch(feed_server.url("/odd-stack.xml"))
    assert odd.status is FeedStatus.OK
    assert odd.body == RSS
    zstd = await fetch(feed_server.url("/zstd-stack.xml"))
    assert zstd.status is FeedStatus.ERROR
    assert "sent the feed compressed as zstd, which was not asked for" in (zstd.error or "")


async def test_endless_body_is_cut_at_the_limit(feed_server: FeedServer) -> None:
    started = time.monotonic()
    result = await fetch(feed_server.url("/endless"), settings=FetchSettings(max_bytes=MiB))
    assert result.status is FeedStatus.ERROR
    assert result.error == (
        f"response larger than 1 MiB at {feed_server.url('/endless')}: stopped reading; {RAISE_THE_CAP}"
    )
    assert time.monotonic() - started < 2


async def test_too_big_content_length_is_refused_before_reading(feed_server: FeedServer) -> None:
    started = time.monotonic()
    result = await fetch(feed_server.url("/big-length"))
    assert result.status is FeedStatus.ERROR
    assert result.error == (
        f"response larger than 10 MiB at {feed_server.url('/big-length')}: "
        f"Content-Length is {CLAIMED_LENGTH} bytes, not downloaded; {RAISE_THE_CAP}"
    )
    assert time.monotonic() - started < 1


async def test_5_mb_feed_over_a_smaller_limit_is_an_error(feed_server: FeedServer) -> None:
    result = await fetch(feed_server.url("/big-feed.xml"), settings=FetchSettings(max_bytes=4 * MiB))
    assert result.status is FeedStatus.ERROR
    assert result.error is not None
    assert "response larger than 4 MiB" in result.error


async def test_trickling_server_hits_the_total_deadline(feed_server: FeedServer) -> None:
    settings = FetchSettings(connect_timeout=1, read_timeout=1, total_timeout=0.5)
    started = time.monotonic()
    result = await fetch(feed_server.url("/trickle"), settings=settings)
    took = time.monotonic() - started
    assert result.status is FeedStatus.ERROR
    assert result.error == (
        f"timed out after 0.5 s at {feed_server.url('/trickle')}: "
        "the server is too slow (total time limit for one fetch)"
    )
    assert 0.5 <= took < 1.5
    assert feed_server.bytes_sent("/trickle") > 0  # it was sending, just too slowly for the read timeout


async def test_silent_server_hits_the_read_timeout(feed_server: FeedServer) -> None:
    settings = FetchSettings(connect_timeout=1, read_timeout=0.2, total_timeout=5)
    url = feed_server.url("/slow?delay=1")
    result = await fetch(url, settings=settings)
    assert result.status is FeedStatus.ERROR
    assert result.error == f"no data from {url} for 0.2 s: the server stopped sending (read timeout)"


# -- concurrency ---------------------------------------------------------------------------


async def _fetch_many(fetcher: Fetcher, urls: list[str]) -> list[FetchResult]:
    jobs = [FetchJob(FeedState(url=u), u) for u in urls]
    return await fetch_feeds(fetcher, jobs, NOW)


async def test_per_host_limit_is_respected(feed_server: FeedServer) -> None:
    settings = FetchSettings(concurrency=16, per_host=2)
    async with open_fetcher(settings) as fetcher:
        results = await _fetch_many(fetcher, [feed_server.url("/slow?delay=0.1")] * 6)
    assert all(r.status is FeedStatus.OK for r in results)
    assert feed_server.max_in_flight(feed_server.host()) == 2


async def test_per_host_limit_is_per_host(feed_server: FeedServer) -> None:
    settings = FetchSettings(concurrency=16, per_host=2)
    urls = [feed_server.url("/slow?delay=0.15", host=h) for h in ("127.0.0.1", "localhost") for _ in range(4)]
    async with open_fetcher(settings) as fetcher:
        results = await _fetch_many(fetcher, urls)
    assert all(r.status is FeedStatus.OK for r in results), [r.error for r in results]
    assert feed_server.max_in_flight(feed_server.host("127.0.0.1")) == 2
    assert feed_server.max_in_flight(feed_server.host("localhost")) == 2
    assert feed_server.max_in_flight() == 4


async def test_global_limit_is_respected(feed_server: FeedServer) -> None:
    settings = FetchSettings(concurrency=3, per_host=10)
    urls = [feed_server.url("/slow?delay=0.1", host=h) for h in ("127.0.0.1", "localhost") for _ in range(5)]
    async with open_fetcher(settings) as fetcher:
        results = await _fetch_many(fetcher, urls)
    assert all(r.status is FeedStatus.OK for r in results)
    assert feed_server.max_in_flight() == 3


async def test_waiting_for_a_busy_host_after_a_redirect_is_not_the_servers_slowness(
    feed_server: FeedServer,
) -> None:
    # Old http:// URLs that all redirect to one host: every feed passes the quick first hop
    # at once, then queues for the other host's one slot.  The total time limit is for the
    # server's answers; it used to run on while a later hop waited for a slot, and the last
    # feeds in the queue failed as "the server is too slow" though each took 0.3 s.
    feed_server.redirects["/to-slow"] = (302, feed_server.url("/slow?delay=0.3", host="localhost"))
    settings = FetchSettings(connect_timeout=2, read_timeout=2, total_timeout=1, per_host=1)
    async with open_fetcher(settings) as fetcher:
        results = await _fetch_many(fetcher, [feed_server.url("/to-slow")] * 5)
    assert [r.error for r in results] == [None] * 5
    assert feed_server.max_in_flight(feed_server.host("localhost")) == 1


async def test_fetch_feeds_keeps_order_and_failures_are_results(feed_server: FeedServer) -> None:
    paths = ["/feed.xml", "/missing", "/gone", "/atom.xml"]
    async with open_fetcher() as fetcher:
        results = await _fetch_many(fetcher, [feed_server.url(p) for p in paths])
    assert [r.url for r in results] == [feed_server.url(p) for p in paths]
    assert [r.status for r in results] == [
        FeedStatus.OK,
        FeedStatus.ERROR,
        FeedStatus.RETIRED,
        FeedStatus.OK,
    ]


# -- below HTTP ------------------------------------------------------------------------------


async def test_connection_refused() -> None:
    port = unused_port()
    result = await fetch(f"http://127.0.0.1:{port}/feed.xml")
    assert result.status is FeedStatus.ERROR
    assert result.http_status is None
    assert (
        result.error
        == f"connection refused by 127.0.0.1:{port}: is the server running and is the port right?"
    )


def _has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _has_ipv6_loopback(), reason="no IPv6 loopback here")
async def test_an_ipv6_host_is_named_with_brackets() -> None:
    # It read "connection refused by ::1:40123": which part is the port?
    with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
        sock.bind(("::1", 0))
        port = sock.getsockname()[1]
    result = await fetch(f"http://[::1]:{port}/feed.xml")
    assert result.error == f"connection refused by [::1]:{port}: is the server running and is the port right?"


async def test_server_hanging_up(feed_server: FeedServer) -> None:
    result = await fetch(feed_server.url("/hang-up"))
    assert result.status is FeedStatus.ERROR
    assert result.error is not None
    assert result.error.startswith(f"bad HTTP from {feed_server.host()} for {feed_server.url('/hang-up')}: ")


@pytest.mark.parametrize(
    ("path", "why"),
    [
        (
            "/cut-short",
            f"Not enough data to satisfy content length header (received {len(RSS)} of {len(RSS) + 100} "
            "bytes)",
        ),
        ("/cut-chunked", "Not enough data to satisfy transfer length header"),
    ],
)
async def test_a_body_cut_off_on_the_way_says_so(feed_server: FeedServer, path: str, why: str) -> None:
    # It read "bad HTTP from ...: Response payload is not completed: <ContentLengthError: 400,
    # message=...>": no HTTP 400 was ever sent, and nothing said what to do.
    url = feed_server.url(path)
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert result.body is None
    assert result.error == (
        f"the response from {url} ended early ({why}): it was cut off on the way; the next poll tries again"
    )


async def test_a_server_that_does_not_speak_http_is_named_in_one_line(feed_server: FeedServer) -> None:
    url = feed_server.url("/not-http")
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert result.error == (
        f"bad HTTP from {feed_server.host()} for {url}: Bad status line: Expected HTTP/, RTSP/ or ICE/: "
        "b'SSH-2.0-OpenSSH_9.6': is it a web server, and is it http or https? check the url in feeds.yaml"
    )


@pytest.fixture
def certificate(tmp_path: Path) -> Path:
    """A self-signed certificate for 127.0.0.1 (its key beside it, as key.pem)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl command not found: cannot make a self-signed certificate")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"),
            *("-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    return cert


@pytest.fixture
def self_signed(certificate: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, certificate.with_name("key.pem"))
    return context


async def test_tls_certificate_verify_failed(self_signed: ssl.SSLContext) -> None:
    with FeedServer(ssl_context=self_signed) as server:
        result = await fetch(server.url("/feed.xml"))
    assert result.status is FeedStatus.ERROR
    assert result.error is not None
    assert result.error.startswith(f"TLS certificate verify failed for {server.host()}: self")  # -signed


async def test_https_is_verified_against_the_ca_bundle_named_by_ssl_cert_file(
    certificate: Path, self_signed: ssl.SSLContext, monkeypatch: pytest.MonkeyPatch
) -> None:
    # SSL_CERT_FILE is how a site with its own CA makes it trusted (httpx reads it when the
    # first https request makes the client's context).  This also fails if a request went
    # out with aiohttp's default context, which aggregator._aiohttp leaves with no CA at all.
    monkeypatch.setenv("SSL_CERT_FILE", str(certificate))
    with FeedServer(ssl_context=self_signed) as server:
        result = await fetch(server.url("/feed.xml"))
    assert result.error is None
    assert result.status is FeedStatus.OK
    assert result.body is not None
    assert b"<rss" in result.body


async def test_a_url_with_credentials_logs_in_and_no_message_shows_the_password(
    feed_server: FeedServer,
) -> None:
    # aiohttp refused the URL that still held the credentials httpx had already made an
    # Authorization header of, and the error stored the password.
    url = feed_server.url("/private.xml").replace("//", f"//{PRIVATE_USER}@")
    result = await fetch(url)
    assert result.status is FeedStatus.OK, result.error
    assert result.body == RSS
    assert feed_server.last("/private.xml").headers["authorization"].startswith("Basic ")

    wrong = feed_server.url("/private.xml").replace("//", "//reader:wrong-password@")
    denied = await fetch(wrong)
    assert denied.http_status == 401
    masked = feed_server.url("/private.xml").replace("//", "//reader:***@")
    assert denied.error == (
        f"access denied (HTTP 401 Unauthorized) at {masked}: the server refuses feed readers or wants "
        "a login; check the url in feeds.yaml"
    )


async def test_credentials_go_along_a_redirect_on_the_same_site_and_no_further(
    feed_server: FeedServer,
) -> None:
    # Most servers write an absolute Location, so the next hop's URL had no credentials any
    # more: a private feed that moved on its own site (or to https there) failed with 401.
    feed_server.redirects["/private-moved"] = (301, feed_server.url("/private.xml"))
    url = feed_server.url("/private-moved").replace("//", f"//{PRIVATE_USER}@")
    result = await fetch(url)
    assert result.status is FeedStatus.OK, result.error
    assert result.body == RSS
    assert result.permanent_redirect == feed_server.url("/private.xml").replace("//", f"//{PRIVATE_USER}@")
    # Another host (here: another name for it) is another site: it gets no password.
    feed_server.redirects["/private-away"] = (302, feed_server.url("/private.xml", host="localhost"))
    away = await fetch(feed_server.url("/private-away").replace("//", f"//{PRIVATE_USER}@"))
    assert away.http_status == 401
    assert "authorization" not in feed_server.last("/private.xml").headers


async def test_a_failure_never_shows_the_password_of_a_url(tmp_path: Path) -> None:
    port = unused_port()
    result = await fetch(f"http://reader:s3cret@127.0.0.1:{port}/feed.xml")
    assert (
        result.error
        == f"connection refused by 127.0.0.1:{port}: is the server running and is the port right?"
    )
    token = await fetch("http://s3cret-token@127.0.0.1:99999/feed")
    assert token.error is not None
    assert token.error.startswith("not a valid URL: 'http://***@127.0.0.1:99999/feed'")


async def test_dns_failure_is_explained() -> None:
    # No real DNS in tests: inject the error the way httpcore raises it.
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known") from socket.gaierror(
            -2, "Name or service not known"
        )

    async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as client:
        url = "https://no-such-host.example/feed.xml"
        result = await Fetcher(client, FAST).fetch(FeedState(url=url), url, NOW)
    assert result.status is FeedStatus.ERROR
    assert result.error == "cannot resolve host name 'no-such-host.example': check the url in feeds.yaml"


@pytest.mark.parametrize(
    ("location", "message"),
    [
        (
            "ftp://example.org/feed.xml",
            "unsupported URL 'ftp://example.org/feed.xml': use http, https or a file path",
        ),
        ("http://127.0.0.1:99999/feed", "not a valid URL: 'http://127.0.0.1:99999/feed': port 99999 is out"),
        ("http://[::1/feed", "not a valid URL: 'http://[::1/feed': Invalid IPv6 URL"),
        ("http:///feed.xml", "not a valid URL: 'http:///feed.xml': no usable host name"),
        ("http://exa mple.org/feed", "not a valid URL: 'http://exa mple.org/feed': no usable host name"),
        ("file://server/share/feed.xml", "unsupported file URL 'file://server/share/feed.xml'"),
    ],
)
async def test_unusable_urls_are_errors_not_exceptions(location: str, message: str) -> None:
    result = await fetch(location)
    assert result.status is FeedStatus.ERROR
    assert result.error is not None
    assert result.error.startswith(message)


# -- file: feeds ---------------------------------------------------------------------------


async def test_file_feed_is_read_and_an_unchanged_file_is_not_modified(tmp_path: Path) -> None:
    path = tmp_path / "local feed.xml"
    path.write_bytes(RSS)
    url = path.as_uri()
    first = await fetch(url)
    assert first.status is FeedStatus.OK
    assert first.body == RSS
    assert first.final_url == url
    assert first.http_status is None
    assert first.etag is not None
    assert first.last_modified is not None
    assert first.headers["content-length"] == str(len(RSS))

    state = FeedState(url="local feed.xml", etag=first.etag, last_modified=first.last_modified)
    second = await fetch(url, state=state)
    assert second.status is FeedStatus.NOT_MODIFIED
    assert second.body is None
    assert second.url == "local feed.xml"

    # Rewritten within the same second: Last-Modified alone would miss it, the ETag does not.
    path.write_bytes(ATOM)
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1000))
    third = await fetch(url, state=state)
    assert third.status is FeedStatus.OK
    assert third.body == ATOM
    assert (await fetch(url, state=state, unconditional=True)).status is FeedStatus.OK


async def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.xml"
    result = await fetch(path.as_uri())
    assert result.status is FeedStatus.ERROR
    assert result.error == (
        f"file not found: {path}: fix the path in feeds.yaml (a relative path is taken from the folder "
        "feeds.yaml is in)"
    )


async def test_a_file_url_that_no_path_can_have_is_an_error_not_a_crash(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # "%00" decodes to a NUL, which os.stat refuses with ValueError: it was logged with a
    # traceback as a failure "unexpectedly".
    url = tmp_path.as_uri() + "/feed%00.xml"
    result = await fetch(url)
    assert result.status is FeedStatus.ERROR
    assert (
        result.error == f"not a valid file path: {url!r}: it contains a NUL character; fix it in feeds.yaml"
    )
    assert not caplog.records


async def test_directory_is_not_a_feed(tmp_path: Path) -> None:
    result = await fetch(tmp_path.as_uri())
    assert result.status is FeedStatus.ERROR
    assert result.error == f"not a file: {tmp_path}"


async def test_file_over_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "big.xml"
    path.write_bytes(b" " * 2048)
    result = await fetch(path.as_uri(), settings=FetchSettings(max_bytes=1024))
    assert result.status is FeedStatus.ERROR
    assert result.error == f"file larger than 1 KiB: {path}: not read; {RAISE_THE_CAP}"


async def test_a_slow_feed_does_not_hold_up_the_others(feed_server: FeedServer) -> None:
    settings = FetchSettings(connect_timeout=1, read_timeout=1, total_timeout=0.5, per_host=4)
    urls = [feed_server.url("/trickle"), feed_server.url("/feed.xml"), feed_server.url("/atom.xml")]
    async with open_fetcher(settings) as fetcher:
        with anyio.fail_after(2):
            results = await _fetch_many(fetcher, urls)
    assert [r.status for r in results] == [FeedStatus.ERROR, FeedStatus.OK, FeedStatus.OK]


async def test_fetch_and_polling_together_give_a_304_on_the_next_poll(feed_server: FeedServer) -> None:
    policy, rng = PollingPolicy(), random.Random(1)
    url = feed_server.url("/feed.xml")
    state = FeedState(url=url)
    async with open_fetcher() as fetcher:
        first = await fetcher.fetch(state, url, NOW, unconditional=wants_unconditional(state, NOW, policy))
        state = advance_state(state, first, timedelta(minutes=60), policy, NOW, rng)
        later = NOW + timedelta(hours=2)
        assert is_due(state, later)
        assert not wants_unconditional(state, later, policy)
        second = await fetcher.fetch(
            state, url, later, unconditional=wants_unconditional(state, later, policy)
        )
        state = advance_state(state, second, None, policy, later, rng)
    assert second.status is FeedStatus.NOT_MODIFIED
    assert state.status is FeedStatus.NOT_MODIFIED
    assert (state.etag, state.last_modified) == (FEED_ETAG, FEED_LAST_MODIFIED)
    assert state.last_unconditional_fetch == NOW


# -- headers a server may send that Python cannot take as they are ---------------------------


async def test_an_etag_that_cannot_be_sent_back_is_not_kept(feed_server: FeedServer) -> None:
    # Kept, "café" made every later poll fail with UnicodeEncodeError: httpx sends ASCII only.
    feed_server.add_feed("/latin1.xml", RSS, etag='"caf\u00e9"', last_modified="lundi, 1 ao\u00fbt")
    url = feed_server.url("/latin1.xml")
    result = await fetch(url)
    assert result.status is FeedStatus.OK
    assert (result.etag, result.last_modified) == (None, None)
    # One stored before this check is left out of the request rather than failing it.
    again = await fetch(url, state=FeedState(url=url, etag='"caf\u00e9"'))
    assert again.status is FeedStatus.OK
    assert "if-none-match" not in feed_server.last("/latin1.xml").headers


@pytest.mark.parametrize(
    "headers",
    [
        {"Cache-Control": "max-age=\u00b2"},  # "²".isdigit() is True; int() refuses it
        {"Cache-Control": "max-age=" + "9" * 5000},  # more digits than int() reads
        {"Expires": "Fri, 31 Dec 9999 23:59:59 -0100"},  # beyond datetime once in UTC
    ],
    ids=["superscript", "5000-digits", "expires-9999"],
)
async def test_odd_freshness_headers_are_read_as_far_as_they_make_sense(
    feed_server: FeedServer, headers: dict[str, str]
) -> None:
    feed_server.add_feed("/odd.xml", RSS, headers=headers)
    result = await fetch(feed_server.url("/odd.xml"))
    assert result.status is FeedStatus.OK, result.error
    assert result.cache_max_age is None or result.cache_max_age <= timedelta(seconds=2**31)
    # And the next check can be computed from it (it overflowed before).
    advance_state(FeedState(url=result.url), result, None, PollingPolicy(), NOW, random.Random(1))


async def test_a_gzip_body_cut_off_on_the_way_is_not_taken_for_the_feed(feed_server: FeedServer) -> None:
    compressed = gzip.compress(RSS)

    def cut_off(handler: Any, request: Any) -> None:
        # No Content-Length, so only the gzip data itself can tell that the end is missing.
        handler.send_response_only(200)
        for name, value in (("Content-Type", "application/rss+xml"), ("Content-Encoding", "gzip"),
                            ("ETag", '"t1"'), ("Connection", "close")):  # fmt: skip
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(compressed[: len(compressed) * 3 // 4])
        handler.wfile.flush()
        handler.close_connection = True

    feed_server._specials["/cut.xml"] = cut_off
    result = await fetch(feed_server.url("/cut.xml"))
    assert result.status is FeedStatus.ERROR
    assert result.error is not None
    assert "cut off on the way" in result.error
    assert result.etag is None  # nothing that would make the server answer 304 next time


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("\u00b2", None),  # not a number, though str.isdigit() says it is
        ("9" * 5000, NOW + timedelta(seconds=2**31)),  # "infinity": capped
        (
            "Fri, 31 Dec 9999 23:59:59 GMT",
            NOW + timedelta(seconds=2**31),
        ),  # 8,000 years from the server's 1970
    ],
)
async def test_retry_after_beyond_reason_is_capped_or_ignored(value: str, expected: datetime | None) -> None:
    headers = {"retry-after": value, "date": "Thu, 01 Jan 1970 00:00:00 GMT"}
    assert _retry_after(headers, NOW) == expected


async def test_a_consent_page_that_sends_back_to_the_feed_with_a_cookie_is_no_loop(
    feed_server: FeedServer,
) -> None:
    # /gated -> /consent (sets a cookie) -> /gated, which now serves the feed: a common gate.
    def gated(handler: Any, request: Any) -> None:
        if "seen=1" in request.headers.get("cookie", ""):
            handler.respond(request, 200, RSS, {"Content-Type": "application/rss+xml"})
        else:
            handler.respond(request, 302, b"", {"Location": "/consent"})

    def consent(handler: Any, request: Any) -> None:
        handler.respond(request, 302, b"", {"Location": "/gated", "Set-Cookie": "seen=1; Path=/"})

    feed_server._specials.update({"/gated": gated, "/consent": consent})
    result = await fetch(feed_server.url("/gated"))
    assert result.status is FeedStatus.OK, result.error
    assert result.body == RSS
    # A gate that sets its cookie and still sends back is a loop all the same, named as one.
    feed_server._specials["/gated"] = lambda handler, request: handler.respond(
        request, 302, b"", {"Location": "/consent"}
    )
    looped = await fetch(feed_server.url("/gated"))
    assert looped.status is FeedStatus.ERROR
    assert looped.error is not None
    assert looped.error.startswith("redirect loop: ")


@pytest.mark.parametrize(
    ("code", "words"),
    [(204, "no feed in the response (HTTP 204 No Content)"), (206, "partial content (HTTP 206)")],
)
async def test_a_2xx_without_a_whole_feed_is_an_error_to_retry(
    feed_server: FeedServer, code: int, words: str
) -> None:
    def answer(handler: Any, request: Any) -> None:
        handler.respond(
            request, code, RSS[:100] if code == 206 else b"", {"Content-Type": "application/rss+xml"}
        )

    feed_server._specials["/odd-2xx"] = answer
    result = await fetch(feed_server.url("/odd-2xx"))
    assert result.status is FeedStatus.ERROR
    assert result.error is not None
    assert words in result.error
    assert result.body is None


async def test_of_two_last_modified_headers_the_first_is_sent_back(feed_server: FeedServer) -> None:
    first, second = "Mon, 18 Aug 2025 08:00:00 GMT", "Mon, 18 Aug 2025 09:00:00 GMT"

    def answer(handler: Any, request: Any) -> None:
        handler.send_response_only(200)
        for name, value in (("Content-Type", "application/rss+xml"), ("Last-Modified", first),
                            ("Last-Modified", second), ("Content-Length", str(len(RSS)))):  # fmt: skip
            handler.send_header(name, value)
        handler.end_headers()
        handler.wfile.write(RSS)

    feed_server._specials["/two-dates"] = answer
    result = await fetch(feed_server.url("/two-dates"))
    assert result.last_modified == first  # not "first, second", which no server reads as a date


async def test_a_last_modified_in_the_future_is_not_kept(feed_server: FeedServer) -> None:
    # A date from a wrong clock or a post scheduled ahead (RFC 9110 8.8.2.1: never later than
    # the response's Date).  Sent back as If-Modified-Since, servers that answer 304 to any
    # change older than that date (Django, Rails, this test server) hid every new entry
    # until that day came, or the weekly unconditional fetch.
    feed_server.add_feed("/ahead.xml", RSS, last_modified="Fri, 01 Jan 2100 00:00:00 GMT")
    url = feed_server.url("/ahead.xml")
    first = await fetch(url)
    assert first.status is FeedStatus.OK
    assert first.last_modified is None
    feed_server.add_feed("/ahead.xml", ATOM, last_modified=FEED_LAST_MODIFIED)  # the clock fixed
    state = FeedState(url=url, etag=first.etag, last_modified=first.last_modified)
    second = await fetch(url, state=state)
    assert second.status is FeedStatus.OK
    assert second.body == ATOM
    assert second.last_modified == FEED_LAST_MODIFIED


@pytest.mark.parametrize("encoding", ["br", "zstd", "gzip, br"])
async def test_a_body_compressed_in_a_way_not_asked_for_is_named_not_called_broken_xml(
    feed_server: FeedServer, encoding: str
) -> None:
    feed_server.add_feed(
        "/odd.xml", b"\x8b\x03\x80<rss>not really</rss>\x03", headers={"Content-Encoding": encoding}
    )
    result = await fetch(feed_server.url("/odd.xml"))
    assert result.status is FeedStatus.ERROR
    assert result.error is not None
    assert (
        f"sent the feed compressed as {encoding.removeprefix('gzip, ')}, which was not asked for"
        in result.error
    )
    assert "Accept-Encoding: gzip, deflate" in result.error


@pytest.mark.parametrize("encoding", ["none", "utf-8", "UTF8", "binary", "8bit"])
async def test_a_content_encoding_that_compresses_nothing_leaves_the_body_as_it_came(
    feed_server: FeedServer, encoding: str
) -> None:
    # Misconfigured servers send these; the body is the plain feed, and it used to be read.
    feed_server.add_feed("/odd.xml", RSS, headers={"Content-Encoding": encoding})
    result = await fetch(feed_server.url("/odd.xml"))
    assert result.status is FeedStatus.OK, result.error
    assert result.body == RSS
