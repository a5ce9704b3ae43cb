"""Before subscribing: prove that a URL is a feed, or find the feeds a web page advertises.

In:  a URL a person typed (a feed, or a web page such as a blog's home page), the project's
     ``Fetcher`` and ``now``.
Out: ``FoundFeed`` (the URL to subscribe to, the feed's title, format and entry count) or
     ``FeedChoices`` (the feeds a page advertises with ``<link rel="alternate">``, when the
     page advertises several and a person has to pick); ``DiscoveryError`` otherwise, with
     why (unreachable, HTTP error, not a feed and advertising none).

A page at a public address may not send us to a private one: a feed it advertises is fetched
as a redirect from it would be (``Fetcher.fetch``'s ``linked_from``), so that subscribing to a
stranger's page cannot add a feed from the operator's own network.

Like ``pipeline``, this module composes stages (``fetch`` then ``parse``) rather than being
one: it adds no fetching or parsing of its own.  Advertised feeds come from
``ParseError.advertised``, which ``parse`` fills when handed an HTML page.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aggregator.errors import AggregatorError, ParseError
from aggregator.fetch import Fetcher
from aggregator.types import FeedState, FeedStatus


class DiscoveryError(AggregatorError):
    """The URL is not a feed we can subscribe to; the message says why."""


@dataclass(frozen=True, slots=True)
class FoundFeed:
    """A URL that was fetched and parsed as a feed."""

    url: str  # what to subscribe to: as given, or a permanent redirect's target
    title: str
    format: str
    entries: int
    page: str | None = None  # the web page it was discovered from
    moved_from: str | None = None  # the URL given, when it permanently redirected to ``url``


@dataclass(frozen=True, slots=True)
class FeedChoices:
    """The feeds a web page advertises, in page order."""

    page: str
    urls: tuple[str, ...]
    public: bool = False  # the page came from a public address: its links may not lead to private ones


async def probe_feed(
    fetcher: Fetcher, url: str, location: str, now: datetime, *, linked_from: str | None = None
) -> FoundFeed | FeedChoices:
    """Fetch ``location`` (``url`` resolved: a path becomes a ``file:`` URL) once and parse it.

    ``linked_from``: the page at a public address that advertised ``url`` (``FeedChoices.public``).
    """
    result, public = await fetcher.fetch_page(
        FeedState(url=url), location, now, unconditional=True, linked_from=linked_from
    )
    if result.status is not FeedStatus.OK or result.body is None:
        # fetch's advice to fix feeds.yaml does not apply to a URL that is not in it yet.
        why = (result.error or "no content").removesuffix(": check the url in feeds.yaml")
        raise DiscoveryError(f"cannot subscribe to {url}: {why}")
    # Imported here: feedparser, lxml and nh3 cost ~25 MB and 0.2 s, which every command
    # importing the CLI (`aggregator poll` above all) would otherwise pay without parsing here.
    from aggregator.parse import parse_feed  # noqa: PLC0415 -- feedparser/lxml/nh3 only when probing

    try:
        parsed = parse_feed(result.body, result.headers, result.final_url)
    except ParseError as exc:
        if exc.advertised:
            return FeedChoices(url, exc.advertised, public=public)
        raise DiscoveryError(f"cannot subscribe to {url}: {exc}") from exc
    moved = result.permanent_redirect
    return FoundFeed(
        url=moved or url,
        title=parsed.title,
        format=parsed.format,
        entries=len(parsed.entries),
        moved_from=url if moved else None,
    )


async def find_feed(
    fetcher: Fetcher,
    url: str,
    location: str,
    now: datetime,
    choose: Callable[[FeedChoices], str],
) -> FoundFeed:
    """The feed at ``url``, or the one a page advertises (``choose`` picks when there are several)."""
    found = await probe_feed(fetcher, url, location, now)
    if isinstance(found, FoundFeed):
        return found
    picked = found.urls[0] if len(found.urls) == 1 else choose(found)
    second = await probe_feed(fetcher, picked, picked, now, linked_from=url if found.public else None)
    if isinstance(second, FeedChoices):
        raise DiscoveryError(
            f"cannot subscribe to {url}: it advertises {picked}, which is another page, not a feed"
        )
    return FoundFeed(
        second.url, second.title, second.format, second.entries, page=url, moved_from=second.moved_from
    )
