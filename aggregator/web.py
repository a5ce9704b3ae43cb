"""The web side: the published feeds, a front page, the digest archive, (un)subscribing.

In: ``WebSettings`` (where the output and archive folders are, the newsletters, the
signing key, private feed tokens), an object with the store's two subscriber methods, a
factory of mail transports and a clock.  Out: a Starlette ASGI application
(``create_app``) that uvicorn runs; ``aggregator serve`` builds one from feeds.yaml
with ``settings_from_config``.

What it serves (paths relative to ``output.base_url``)::

    /                              the latest stories by topic, with feed autodiscovery
    /feed.atom|rss|json            the combined feeds, /topics/<slug>.atom|rss|json per topic
    /private/<token>/...           the same, when feeds are private (AGGREGATOR_FEED_TOKENS); their
                                   links to themselves and the front page lead back under the token
    /archive/                      every newsletter's archive; /archive/<name>/ its issues (the
                                   archive's page in the site's header and stylesheet), and
                                   /archive/<name>/NNNN.html an issue, as the email showed it
    /subscribe                     a form; a confirmation email with a signed link that expires
    /subscribe/confirm/<token>     GET shows a button, POST confirms (double opt-in)
    /unsubscribe/<token>           GET shows a button, POST unsubscribes at once (RFC 8058)
    /unsubscribe?list=<name>       for the archive's generic link: mails the personal link

Files are the publish stage's output, read from disk and cached in memory until their
modification time changes; each is served with a strong ETag, Last-Modified, a gzip
variant made once, and a 304 for a matching conditional request.  Nothing of a feed
request touches the database.

Under a path: when ``output.base_url`` has one (``https://example.org/news/``), the site
answers as mounted there (ASGI ``root_path``, ``ServeUnder``) for a reverse proxy that
forwards ``/news/...`` with the prefix stripped or as it is; its links, form actions,
redirects and cookies carry ``/news``.  A newsletter whose own ``base_url`` has another
path (``/letters/``, where its emails' links lead) is served there too: its confirm and
unsubscribe pages link, post and set cookies under ``/letters``.

``create_app(..., config_path=)`` follows feeds.yaml: when the file changes (one ``stat``
per request), its part of the settings (newsletters, title, folders) is read again, and a
file that no longer loads leaves the last good settings in force.

Security: every page is a Jinja2 template with autoescaping; forms carry a CSRF token
(an HMAC of a random cookie, checked with the Origin header) and are read only when
small and url-encoded; subscribing is rate limited per client (an IPv6 one by its /64),
per address (a ``+tag`` does not make a new one) and for the whole site, counting only
mail that may have left (a send our own server refused or never took is given back); links
in emails are built from the configured base URL, never from the Host header; no handler redirects
to a URL taken from the request; every response carries a Content-Security-Policy and
friends; errors are a plain page with a 4xx or 500 status, never a stack trace, and a
failure's log names the route (``/unsubscribe/{token}``), not the path with its token.
Confirm links are GET-safe: a link scanner fetching them changes nothing, because only
the POST behind the button acts.
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import ipaddress
import json
import logging
import os
import re
import secrets
from collections import deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid, parsedate_to_datetime
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import quote, unquote, urljoin, urlsplit
from xml.sax.saxutils import escape as xml_escape

import itsdangerous
import jinja2
from starlette.applications import Starlette
from starlette.background import BackgroundTask
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Match, Route, Router
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from aggregator import mail, newsletters
from aggregator.clock import Clock, SystemClock
from aggregator.config import LoadedConfig, load_config
from aggregator.errors import ConfigError
from aggregator.publish import FEED_FORMATS, feed_path

log = logging.getLogger(__name__)

TEMPLATES_DIR = Path(__file__).resolve().parent / "templates"
FEED_TOKENS_ENV = "AGGREGATOR_FEED_TOKENS"

CSRF_COOKIE = "aggregator_csrf"
MAX_FORM_BYTES = 8 * 1024  # an address and a token; anything bigger is not our form
MAX_FORM_FIELDS = 10
# Confirmation mails the whole site sends per hour: addresses and clients are many, a
# mailbox and the sender's reputation one.
CONFIRM_MAILS_PER_HOUR = 100
GZIP_MIN_BYTES = 1024

# Security headers on every response; a handler may set its own Content-Security-Policy.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
# Archived issues are email HTML: inline styles, remote images, never scripts or forms.
ARCHIVE_CSP = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; sandbox allow-popups allow-popups-to-escape-sandbox"
)
# A newsletter's list of issues: written by the newsletters stage (headlines escaped), shown
# with the site's stylesheet and header (``with_site_chrome``); still no scripts or forms.
ARCHIVE_INDEX_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'none'; "
    "frame-ancestors 'none'; base-uri 'none'; sandbox allow-popups allow-popups-to-escape-sandbox"
)
FEED_CSP = "default-src 'none'; frame-ancestors 'none'; sandbox"
_SECURITY_HEADERS = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),  # tokens live in URLs: never leak them to other sites
    (b"x-frame-options", b"DENY"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"permissions-policy", b"interest-cohort=(), camera=(), microphone=(), geolocation=()"),
)

_ISSUE_FILE = re.compile(r"^[0-9]{4,6}\.(html|txt)$")
_NEWSLETTER_NAME = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,80}$")
_EMAIL = re.compile(r"^[^@\s<>()\[\],;:\"\\]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,62}\.)+[A-Za-z]{2,63}$")


# --------------------------------------------------------------------------- settings


@dataclass(frozen=True, slots=True)
class NewsletterInfo:
    """What the web side needs of a configured newsletter."""

    name: str
    title: str
    sender: str
    base_url: str  # where its archive and (un)subscribe pages are served, ending in "/"
    # feeds.yaml's ``subscribers:`` (lower-cased): they receive it too, unless unsubscribed.
    subscribers: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RateLimit:
    """At most ``count`` events per ``window`` for one key."""

    count: int
    window: timedelta


@dataclass(frozen=True, slots=True)
class WebSettings:
    public_dir: Path  # the publish stage's output folder
    archive_dir: Path  # newsletters/archive
    title: str
    base_url: str  # the public URL of "/", ending in "/"
    secret_key: bytes
    newsletters: tuple[NewsletterInfo, ...] = ()
    feed_tokens: tuple[str, ...] = ()  # non-empty: feeds and front page only under /private/<token>/
    feed_max_age: int = 300  # seconds a reader or proxy may reuse a feed without asking
    confirm_max_age: timedelta = timedelta(hours=48)
    subscribe_per_client: RateLimit = RateLimit(5, timedelta(minutes=10))  # an IPv6 client is its /64
    mails_per_address: RateLimit = RateLimit(3, timedelta(days=1))  # a +tag is the same mailbox
    confirm_mails: RateLimit = RateLimit(CONFIRM_MAILS_PER_HOUR, timedelta(hours=1))  # the whole site

    @property
    def secure(self) -> bool:
        return self.base_url.startswith("https://")

    def newsletter(self, name: str) -> NewsletterInfo | None:
        return next((n for n in self.newsletters if n.name == name), None)


def settings_from_config(
    loaded: LoadedConfig, environ: Mapping[str, str] = os.environ, *, secret_key: bytes | None = None
) -> WebSettings:
    """The web side's settings from feeds.yaml and the environment.

    The signing key is the one the digests sign their unsubscribe links with
    (``$AGGREGATOR_SECRET_KEY``, else ``data/secret.key``), unless ``secret_key`` is given
    (a reload keeps the key the server started with).  ``$AGGREGATOR_FEED_TOKENS``, a
    comma-separated list of secrets of at least 16 characters, makes the feeds private.
    """
    output = loaded.config.output
    tokens = tuple(t.strip() for t in environ.get(FEED_TOKENS_ENV, "").split(",") if t.strip())
    short = [t for t in tokens if len(t) < 16]
    if short:
        raise ValueError(
            f"${FEED_TOKENS_ENV}: {len(short)} token(s) shorter than 16 characters; "
            "use long random strings, e.g. from `python -c 'import secrets; print(secrets.token_urlsafe())'`"
        )
    base = output.base_url if output.base_url.endswith("/") else output.base_url + "/"
    return WebSettings(
        public_dir=loaded.base_dir / output.dir,
        archive_dir=loaded.base_dir / "newsletters" / "archive",
        title=output.title,
        base_url=base,
        secret_key=newsletters.secret_key(loaded) if secret_key is None else secret_key,
        newsletters=tuple(
            NewsletterInfo(
                n.name,
                n.title,
                n.sender,
                newsletters.base_url(loaded, n),
                frozenset(a.strip().lower() for a in n.subscribers if a.strip()),
            )
            for n in loaded.config.newsletters
        ),
        feed_tokens=tokens,
    )


# What feeds.yaml decides.  The rest (the signing key, the limits, the environment's feed
# tokens) stays as the server started: links already mailed must keep working.
_CONFIG_FIELDS = ("public_dir", "archive_dir", "title", "base_url", "newsletters")


class SettingsFile:
    """``WebSettings`` that follow feeds.yaml while the server runs.

    The web editor (or a person, or ``aggregator feeds``) rewrites the file: a removed
    newsletter must stop taking subscriptions, a new one start, without a restart.
    ``current()`` costs one ``stat`` when nothing changed (the editor replaces the file by
    rename, a new inode; a hand edit changes the mtime or size).  A file that no longer
    loads leaves the last good settings in force, with one warning per change.
    """

    def __init__(
        self, path: Path, settings: WebSettings, load: Callable[[Path, bytes], WebSettings] | None = None
    ) -> None:
        self.path = path
        self.settings = settings
        self._load = load or (lambda p, key: settings_from_config(load_config(p), secret_key=key))
        self._stamp = self._stat()

    def _stat(self) -> tuple[int, int, int] | None:
        try:
            info = self.path.stat()
        except OSError:
            return None
        return (info.st_ino, info.st_size, info.st_mtime_ns)

    def current(self) -> WebSettings:
        stamp = self._stat()
        if stamp == self._stamp:
            return self.settings
        self._stamp = stamp  # a broken file is reported once, not on every request
        try:
            loaded = self._load(self.path, self.settings.secret_key)
        except (ConfigError, ValueError, OSError) as exc:
            log.warning(
                "%s changed but cannot be used; keeping the settings loaded before: %s", self.path, exc
            )
            return self.settings
        self.settings = replace(self.settings, **{name: getattr(loaded, name) for name in _CONFIG_FIELDS})
        log.info("%s changed: web settings reloaded", self.path)
        return self.settings


class SubscriberStore(Protocol):
    """The store's subscriber methods (``store.Store`` has them)."""

    def subscribers(self, newsletter: str) -> dict[str, bool]: ...
    def subscriber(self, newsletter: str, address: str) -> tuple[bool, datetime] | None: ...
    def set_subscriber(self, newsletter: str, address: str, active: bool, now: datetime) -> None: ...


# --------------------------------------------------------------------------- files


@dataclass(frozen=True, slots=True)
class CachedFile:
    """One file as served: its bytes, a gzip copy, validators and media type."""

    stamp: tuple[int, int, int]  # (inode, size, mtime_ns): a change means reload
    body: bytes
    gzipped: bytes | None  # None when compression would not pay
    etag: str
    last_modified: str
    modified: datetime
    media_type: str


class FileCache:
    """Files read from disk once and kept until they change (checked with one ``stat``).

    The publish stage replaces files by rename, so a new inode or mtime means a new file;
    a half-written file is never seen.
    """

    def __init__(self) -> None:
        self._files: dict[Path, CachedFile] = {}
        self._variants: dict[tuple[Path, str], CachedFile] = {}

    def get(self, path: Path, media_type: str) -> CachedFile | None:
        try:
            info = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            self._files.pop(path, None)
            return None
        stamp = (info.st_ino, info.st_size, info.st_mtime_ns)
        cached = self._files.get(path)
        if cached is not None and cached.stamp == stamp:
            return cached
        try:
            body = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None
        modified = datetime.fromtimestamp(int(info.st_mtime), UTC)
        packed = gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= GZIP_MIN_BYTES else None
        cached = CachedFile(
            stamp=stamp,
            body=body,
            gzipped=packed if packed is not None and len(packed) < len(body) else None,
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            last_modified=format_datetime(modified, usegmt=True),
            modified=modified,
            media_type=media_type,
        )
        self._files[path] = cached
        return cached

    def variant(
        self, path: Path, media_type: str, key: str, rewrite: Callable[[bytes], bytes]
    ) -> CachedFile | None:
        """The file with ``rewrite`` applied to its bytes (its own gzip copy and ETag), kept
        under ``key`` until the file changes."""
        original = self.get(path, media_type)
        if original is None:
            self._variants.pop((path, key), None)
            return None
        cached = self._variants.get((path, key))
        if cached is not None and cached.stamp == original.stamp:
            return cached
        body = rewrite(original.body)
        packed = gzip.compress(body, compresslevel=6, mtime=0) if len(body) >= GZIP_MIN_BYTES else None
        cached = CachedFile(
            stamp=original.stamp,
            body=body,
            gzipped=packed if packed is not None and len(packed) < len(body) else None,
            etag='"' + hashlib.sha256(body).hexdigest()[:32] + '"',
            last_modified=original.last_modified,
            modified=original.modified,
            media_type=media_type,
        )
        self._variants[(path, key)] = cached
        return cached


def _accepts_gzip(request: Request) -> bool:
    accept = request.headers.get("accept-encoding", "")
    if "gzip" not in accept:
        return False
    for part in accept.split(","):
        name, _, params = part.strip().partition(";")
        if name.strip() == "gzip":
            return params.replace(" ", "") not in ("q=0", "q=0.0", "q=0.00", "q=0.000")
    return False


def _not_modified(request: Request, file: CachedFile) -> bool:
    """RFC 9110 13.2.2: If-None-Match wins; If-Modified-Since only without it."""
    inm = request.headers.get("if-none-match")
    if inm is not None:
        if inm.strip() == "*":
            return True
        tags = {t.strip().removeprefix("W/") for t in inm.split(",")}
        gz_tag = file.etag[:-1] + '-gzip"'
        return file.etag in tags or gz_tag in tags
    ims = request.headers.get("if-modified-since")
    if ims is None:
        return False
    try:
        since = parsedate_to_datetime(ims)
    except (TypeError, ValueError, OverflowError):  # a year or offset too large for datetime
        return False
    if since.tzinfo is None:
        since = since.replace(tzinfo=UTC)
    return file.modified <= since


def file_response(
    request: Request, file: CachedFile, *, max_age: int, csp: str, extra: Mapping[str, str] | None = None
) -> Response:
    """The file, or a 304; with the gzip copy when the client takes it (its own ETag)."""
    use_gzip = file.gzipped is not None and _accepts_gzip(request)
    etag = file.etag[:-1] + '-gzip"' if use_gzip else file.etag
    headers = {
        "etag": etag,
        "last-modified": file.last_modified,
        "cache-control": f"public, max-age={max_age}",
        "vary": "Accept-Encoding",
        "content-security-policy": csp,
        **(extra or {}),
    }
    if _not_modified(request, file):
        return Response(status_code=304, headers=headers)
    body = file.body
    if use_gzip and file.gzipped is not None:
        body = file.gzipped
        headers["content-encoding"] = "gzip"
    return Response(body, media_type=file.media_type, headers=headers)


def private_feed_links(body: bytes, fmt: str, base: str, private: str, slug: str | None) -> bytes:
    """A published feed's own links (itself in each format, the front page) moved from
    ``base`` to ``private``; other links, such as the articles', stay as they are.

    Only whole values are replaced (attribute and JSON strings, and RSS's ``<link>``), each
    as that format escapes it.  Atom's ``<id>`` stays: it names the feed and is not a
    place to go, so a reader keeps it whichever address it uses.
    """
    moved = {urljoin(base, feed_path(f, slug)): urljoin(private, feed_path(f, slug)) for f in FEED_FORMATS}
    moved[base] = private

    def written(url: str) -> str:
        if fmt == "json":
            return json.dumps(url, ensure_ascii=False)[1:-1]
        return xml_escape(url, {'"': "&quot;"})

    table = {written(old).encode(): written(new).encode() for old, new in moved.items()}
    pattern = re.compile(
        rb"(?:(?<=[\"'])|(?<=<link>))("
        + b"|".join(re.escape(old) for old in sorted(table, key=len, reverse=True))
        + rb")(?=[\"'<])"
    )
    return pattern.sub(lambda match: table[match.group(1)], body)


_HEAD_END = re.compile(rb"</head\s*>", re.IGNORECASE)
_BODY_START = re.compile(rb"<body\b[^>]*>", re.IGNORECASE)
_BODY_END = re.compile(rb"</body\s*>", re.IGNORECASE)


def with_site_chrome(page: bytes, head: str, header: str) -> bytes:
    """An archive page made to look like the site's others: ``head`` (the stylesheet link)
    at the end of its head, ``header`` (the site's header: home, archive, subscribe) at the
    start of its body, and the body's content in ``<main>``, which the stylesheet lays out.

    The newsletters stage writes the page whole and bare (it knows nothing of the site);
    one not shaped so (no head, no body) is left as it is.
    """
    head_end = _HEAD_END.search(page)
    body_start = _BODY_START.search(page, head_end.end()) if head_end else None
    body_end = None
    if body_start is not None:
        body_end = next(reversed(list(_BODY_END.finditer(page, body_start.end()))), None)
    if head_end is None or body_start is None or body_end is None:
        return page
    return b"".join((
        page[: head_end.start()], head.encode(), page[head_end.start() : body_start.end()],
        header.encode(), b"<main>", page[body_start.end() : body_end.start()], b"</main>\n",
        page[body_end.start() :],
    ))  # fmt: skip


# --------------------------------------------------------------------------- front page


@dataclass(frozen=True, slots=True)
class FrontStory:
    title: str
    url: str | None
    outlet: str
    published: datetime | None
    also: tuple[tuple[str, str | None], ...]  # (outlet, url of its first copy), each outlet once
    topics: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class FrontTopic:
    name: str
    slug: str | None  # None for the stories without a topic
    stories: tuple[FrontStory, ...]


def _http_url(value: object) -> str | None:
    if isinstance(value, str) and urlsplit(value).scheme in ("http", "https"):
        return value
    return None


def _outlets_once(coverage: Sequence[Mapping[str, Any]], lead: str) -> tuple[tuple[str, str | None], ...]:
    """Each other outlet once, linked to its first copy: a person reads names, not a copy count."""
    first: dict[str, str | None] = {}
    for copy in coverage:
        outlet = str(copy.get("outlet") or "")
        if outlet and outlet != lead and (outlet not in first or first[outlet] is None):
            first[outlet] = _http_url(copy.get("url"))
    return tuple(first.items())


def front_topics(document: Mapping[str, Any]) -> tuple[tuple[FrontTopic, ...], dict[str, str]]:
    """The stories of ``feed.json`` grouped by their first topic, and every topic's slug.

    The front page is built from the published JSON Feed, not the database: it shows
    exactly what feed readers get, and serving it costs no query.
    """
    ext = document.get("_aggregator") or {}
    slugs = {str(t["name"]): str(t["slug"]) for t in ext.get("topics", []) if "name" in t and "slug" in t}
    groups: dict[str | None, list[FrontStory]] = {}
    for item in document.get("items", []):
        extension = item.get("_aggregator") or {}
        try:
            published = datetime.fromisoformat(str(item.get("date_published")).replace("Z", "+00:00"))
        except ValueError:
            published = None
        tags = tuple(str(t) for t in item.get("tags", []))
        story = FrontStory(
            title=str(item.get("title") or "(untitled)"),
            url=_http_url(item.get("url")),
            outlet=str(extension.get("outlet") or ""),
            published=published,
            also=_outlets_once(extension.get("also_reported_by", []), str(extension.get("outlet") or "")),
            topics=tags,
        )
        groups.setdefault(tags[0] if tags else None, []).append(story)
    ordered = sorted((k for k in groups if k is not None), key=lambda t: (-len(groups[t]), t.casefold()))
    topics = [FrontTopic(name, slugs.get(name), tuple(groups[name])) for name in ordered]
    if None in groups:
        topics.append(FrontTopic("Other stories", None, tuple(groups[None])))
    return tuple(topics), slugs


# --------------------------------------------------------------------------- protection


class RateLimiter:
    """Sliding-window counts per key, in memory (one process), bounded in size."""

    def __init__(self, limit: RateLimit, max_keys: int = 10_000) -> None:
        self.limit = limit
        self.max_keys = max_keys
        self._hits: dict[str, deque[datetime]] = {}

    def hit(self, key: str, now: datetime) -> timedelta | None:
        """Count one event; return how long to wait when over the limit (the event is not counted)."""
        start = now - self.limit.window
        hits = self._hits.get(key)
        if hits is None:
            if len(self._hits) >= self.max_keys:
                self._prune(start)
            hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= start:
            hits.popleft()
        if len(hits) >= self.limit.count:
            return hits[0] + self.limit.window - now
        hits.append(now)
        return None

    def give_back(self, key: str, when: datetime) -> None:
        """Uncount the event ``hit`` counted for ``key`` at ``when``: it did not happen after
        all (the mail it stood for never left).  Gone already (out of the window, or the key
        pruned) is fine: there is nothing left to give back."""
        hits = self._hits.get(key)
        if hits is not None and when in hits:
            hits.remove(when)  # events at one instant are alike: any one of them will do

    def waiting(self, key: str, now: datetime) -> timedelta | None:
        """How long ``key`` must wait before its next event counts, without counting one."""
        hits = self._hits.get(key)
        start = now - self.limit.window
        while hits and hits[0] <= start:
            hits.popleft()
        if hits is not None and len(hits) >= self.limit.count:
            return hits[0] + self.limit.window - now
        return None

    def _prune(self, start: datetime) -> None:
        for key in [k for k, v in self._hits.items() if not v or v[-1] <= start]:
            del self._hits[key]
        while len(self._hits) >= self.max_keys:  # all recent: drop the oldest keys
            del self._hits[next(iter(self._hits))]


async def read_small_form(request: Request, *, max_bytes: int, max_fields: int) -> FormData:
    """A url-encoded form of at most ``max_bytes`` and ``max_fields``, else an ``HTTPException``.

    411 without a Content-Length, 413 when it is larger, 415 for any other encoding
    (uploads included), 400 for too many fields.  The length is checked before a byte of
    the body is read, and the parser keeps no field longer than ``max_bytes`` either: a
    request cannot make the server hold more than a form's worth.
    """
    length = request.headers.get("content-length")
    if length is None or not length.isdigit():
        raise HTTPException(411)
    if int(length) > max_bytes:
        raise HTTPException(413)
    content_type = request.headers.get("content-type", "").split(";")[0].strip()
    if content_type != "application/x-www-form-urlencoded":
        raise HTTPException(415)
    return await request.form(max_files=0, max_fields=max_fields, max_part_size=max_bytes)


def security_headers(*, hsts: bool) -> list[tuple[bytes, bytes]]:
    """What every response carries (a page's own Content-Security-Policy aside)."""
    headers = list(_SECURITY_HEADERS)
    if hsts:
        headers.append((b"strict-transport-security", b"max-age=31536000"))
    return headers


class SecurityHeaders:
    """Pure ASGI middleware adding the security headers (cheaper than BaseHTTPMiddleware).

    ``hsts``: whether to send Strict-Transport-Security, or a function asked once per
    response: the site's own follows ``output.base_url`` as feeds.yaml changes (a site moved
    to ``http://`` must stop asking browsers for https, one moved to ``https://`` start).
    """

    def __init__(self, app: ASGIApp, *, hsts: bool | Callable[[], bool]) -> None:
        self.app = app
        self.hsts = hsts
        self._headers = {flag: security_headers(hsts=flag) for flag in (False, True)}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                present = {name for name, _ in headers}
                wanted = self._headers[bool(self.hsts() if callable(self.hsts) else self.hsts)]
                headers.extend(h for h in wanted if h[0] not in present)
                if b"content-security-policy" not in present:
                    headers.append((b"content-security-policy", PAGE_CSP.encode()))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_headers)


class FollowSettings:
    """Pure ASGI middleware: the app's settings brought up to date with feeds.yaml, once per request."""

    def __init__(self, app: ASGIApp, *, source: SettingsFile, web: _Web) -> None:
        self.app = app
        self.source = source
        self.web = web

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            self.web.settings = self.source.current()
        await self.app(scope, receive, send)


def origin_of(url: str) -> str:
    """``scheme://host[:port]`` of ``url``, as a browser's Origin header spells it."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def site_origins(settings: WebSettings) -> frozenset[str]:
    """The origins this site is published at: ``output.base_url``'s and every newsletter's
    (a form posted from one of them is the site's own, whatever Host the proxy forwards)."""
    return frozenset(
        origin_of(url) for url in (settings.base_url, *(n.base_url for n in settings.newsletters))
    )


def live_settings(request: Request) -> WebSettings | None:
    """The settings, as feeds.yaml has them now, of the web side serving ``request``; None
    when another application serves it (an editor mounted on its own, in tests)."""
    web = getattr(request.app.state, "web", None) if "app" in request.scope else None
    return web.settings if isinstance(web, _Web) else None


def root_path_of(base_url: str) -> str:
    """The ASGI ``root_path`` of a site whose "/" is ``base_url``: its path without the final
    slash (``https://example.org/news/`` -> ``/news``; ``""`` at a host's root)."""
    return unquote(urlsplit(base_url).path).rstrip("/")


def cookie_path(request: Request, below: str = "") -> str:
    """The ``Path`` of a cookie for the site's root (plus ``below``), as the browser's URLs
    spell it: the ASGI ``root_path`` is decoded (``/新闻``), and a cookie header holds only
    Latin-1 (else a 500), while browsers match the path against the percent-encoded URL."""
    return quote(str(request.scope.get("root_path", "")).rstrip("/") + below) or "/"


# Set in the scope by ``ServeUnder`` when the request did not say under which path the
# browser asked for it (a proxy stripped the prefix) and the site's own was assumed.
ASSUMED_ROOT = "aggregator.assumed_root"


class ServeUnder:
    """Pure ASGI middleware: the site answers as mounted at the path of ``output.base_url``.

    Behind a reverse proxy at a sub-path (``https://example.org/news/`` forwarded to this
    server with the prefix stripped, as nginx's ``location /news/ { proxy_pass
    http://127.0.0.1:8000/; }`` does), a request for ``/admin/`` is the browser's
    ``/news/admin/``.  This sets the ASGI ``root_path`` to ``/news`` and puts it in front of
    ``path``, as a server's own ``--root-path`` does (the ASGI spec's ``path`` includes it),
    so the routes still match while every link, form action, redirect and cookie path (all
    built from ``root_path``) carries the prefix.

    A proxy that forwards ``/news/admin/`` as it is (nginx's ``proxy_pass`` without a path)
    works too: a path that starts with the prefix of ``output.base_url`` or of a
    newsletter's ``base_url`` (its links in emails lead there) is served under that prefix,
    unless the path without it is one of the site's own (``/archive/`` when the prefix is
    ``/archive``: there the proxy must strip, as the README says).  Links are generated with
    the prefix once either way.

    The prefixes are read per request from the current settings, so they follow feeds.yaml.
    A server or an outer app that already set a ``root_path`` wins: the scope is then left as
    it is.
    """

    def __init__(self, app: ASGIApp, *, web: _Web, router: Router | None = None) -> None:
        self.app = app
        self.web = web
        self.router = router  # the site's routes, to tell its own paths from prefixed ones
        # (settings, output's root, every known root longest first): worked out again only
        # when the settings change.
        self._roots: tuple[WebSettings | None, str, tuple[str, ...]] = (None, "", ())

    def _known_roots(self) -> tuple[str, tuple[str, ...]]:
        settings = self.web.settings
        if self._roots[0] is not settings:
            main = root_path_of(settings.base_url)
            known = {main, *(root_path_of(n.base_url) for n in settings.newsletters)} - {""}
            self._roots = (settings, main, tuple(sorted(known, key=len, reverse=True)))
        return self._roots[1], self._roots[2]

    def _prefix_sent(self, scope: Scope, roots: tuple[str, ...]) -> str | None:
        """The known prefix the request's path already carries, if any."""
        path: str = scope["path"]
        for root in roots:
            if path == root or path.startswith(root + "/"):
                return None if self._is_own_path(scope) else root
        return None

    def _is_own_path(self, scope: Scope) -> bool:
        if self.router is None:
            return False
        probe = {"type": "http", "path": scope["path"], "root_path": "", "method": scope.get("method", "GET")}
        return any(route.matches(probe)[0] is not Match.NONE for route in self.router.routes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            main, roots = self._known_roots()
            sent = self._prefix_sent(scope, roots)
            # In place, not a copy: the error handler outside every middleware reads the same
            # scope (its route, for a log line without tokens).
            if sent is not None:
                scope["root_path"] = sent  # the path already holds it, as the ASGI spec wants
            else:
                scope[ASSUMED_ROOT] = True
                if main:
                    scope["root_path"] = main
                    scope["path"] = main + scope["path"]
                    if "raw_path" in scope and scope["raw_path"] is not None:
                        scope["raw_path"] = quote(main).encode("ascii") + scope["raw_path"]
        await self.app(scope, receive, send)


class _TimestampSigner(itsdangerous.TimestampSigner):
    """itsdangerous reads ``time.time()``; confirmation links expire by our clock instead."""

    clock: Clock = SystemClock()

    def get_timestamp(self) -> int:
        return int(self.clock.now().timestamp())


# --------------------------------------------------------------------------- the app


class _Web:
    """The handlers and their shared state; ``create_app`` wires them to routes."""

    def __init__(
        self,
        settings: WebSettings,
        store: SubscriberStore,
        transport: Callable[[], mail.Transport],
        clock: Clock,
    ) -> None:
        self.settings = settings
        self.store = store
        self.transport = transport
        self.clock = clock
        self.files = FileCache()
        self.templates = jinja2.Environment(
            loader=jinja2.FileSystemLoader(TEMPLATES_DIR),
            # Every page escapes; only the plain-text part of an email does not.
            autoescape=jinja2.select_autoescape(disabled_extensions=("txt",), default=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        signer = type("Signer", (_TimestampSigner,), {"clock": clock})
        self.confirm_tokens = itsdangerous.URLSafeTimedSerializer(
            settings.secret_key, salt="aggregator.subscribe.confirm", signer=signer
        )
        self.per_client = RateLimiter(settings.subscribe_per_client)
        self.per_address = RateLimiter(settings.mails_per_address)
        self.confirm_mails = RateLimiter(settings.confirm_mails)
        # The last message tried found the mail server unusable for anyone (unreachable,
        # refusing our sender, an outbox that cannot be written): see ``unsubscribe_help``.
        self._mail_down = False
        self._front: dict[tuple[str, tuple[int, int, int] | None], bytes] = {}

    # ----------------------------------------------------------------- rendering

    def page(
        self,
        request: Request,
        template: str,
        status: int = 200,
        *,
        csrf: str | None = None,
        headers: Mapping[str, str] | None = None,
        **context: Any,
    ) -> Response:
        root = request.scope.get("root_path", "").rstrip("/")
        html = self.templates.get_template(template).render(
            site_title=self.settings.title, root=root, csrf=csrf or "", **context
        )
        body = html.encode()
        extra = dict(headers or {})
        extra.setdefault("cache-control", "no-store" if csrf else "no-cache")
        if len(body) >= GZIP_MIN_BYTES and _accepts_gzip(request):
            body = gzip.compress(body, compresslevel=6, mtime=0)
            extra["content-encoding"] = "gzip"
            extra["vary"] = "Accept-Encoding"
        response = Response(body, status_code=status, media_type="text/html; charset=utf-8", headers=extra)
        if csrf:
            self._set_csrf_cookie(request, response)
        return response

    def error(self, request: Request, status: int, title: str, message: str, **headers: str) -> Response:
        return self.page(request, "message.html", status, title=title, message=message, headers=headers)

    def as_letter_page(self, request: Request, letter: NewsletterInfo | None) -> None:
        """Let a page reached by a newsletter's own links (confirm, unsubscribe) link, post and
        set its cookie under that newsletter's ``base_url`` path, where the browser is.

        Only when the request did not say (a proxy stripped the prefix: ``ServeUnder``
        assumed ``output.base_url``'s).  Emails build these links from the newsletter's
        ``base_url``; a page under ``/letters/`` with a CSRF cookie for ``/news`` would never
        get the cookie back with its form ("Form expired"), and its links would lead to a
        path the proxy may not forward.
        """
        if letter is not None and request.scope.get(ASSUMED_ROOT):
            request.scope["root_path"] = root_path_of(letter.base_url)

    # ----------------------------------------------------------------- CSRF

    def _csrf_for(self, cookie: str) -> str:
        return hmac.new(self.settings.secret_key, b"csrf\n" + cookie.encode(), hashlib.sha256).hexdigest()

    def csrf_token(self, request: Request) -> str:
        cookie = request.cookies.get(CSRF_COOKIE)
        if not cookie or not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", cookie):
            cookie = secrets.token_urlsafe(32)
        request.state.csrf_cookie = cookie
        return self._csrf_for(cookie)

    def _set_csrf_cookie(self, request: Request, response: Response) -> None:
        cookie = getattr(request.state, "csrf_cookie", None)
        if cookie and cookie != request.cookies.get(CSRF_COOKIE):
            response.set_cookie(
                CSRF_COOKIE,
                cookie,
                httponly=True,
                samesite="strict",
                # By the scheme the request came in with (X-Forwarded-Proto behind a trusted
                # proxy): a Secure cookie set over plain http would never come back.
                secure=request.url.scheme == "https",
                path=cookie_path(request),
            )

    def csrf_ok(self, request: Request, form: FormData) -> bool:
        origin = request.headers.get("origin")
        if origin is not None and origin != "null":
            own = f"{request.url.scheme}://{request.url.netloc}"
            # A newsletter's base_url may be another host: its confirmation links lead there.
            if origin != own and origin not in site_origins(self.settings):
                return False
        cookie = request.cookies.get(CSRF_COOKIE)
        sent = form.get("csrf")
        if not cookie or not isinstance(sent, str):
            return False
        # As bytes: compare_digest refuses str with non-ASCII characters (TypeError, a 500).
        return hmac.compare_digest(self._csrf_for(cookie).encode(), sent.encode())

    async def read_form(self, request: Request) -> FormData:
        return await read_small_form(request, max_bytes=MAX_FORM_BYTES, max_fields=MAX_FORM_FIELDS)

    # ----------------------------------------------------------------- feeds

    def _private_ok(self, token: str | None) -> bool:
        tokens = self.settings.feed_tokens
        if not tokens:
            return token is None
        if token is None:
            return False
        # Compare against every token, so timing does not tell how many matched.
        return any([hmac.compare_digest(token.encode(), t.encode()) for t in tokens])  # noqa: C419

    async def feed(self, request: Request) -> Response:
        params = request.path_params
        if not self._private_ok(params.get("token")):
            return self.error(request, 404, "Not found", "There is no feed at this address.")
        fmt = params["fmt"]
        slug = params.get("slug")
        if fmt not in FEED_FORMATS or (slug is not None and not _SLUG.match(slug)):
            return self.error(request, 404, "Not found", "There is no feed at this address.")
        relative = f"feed.{fmt}" if slug is None else f"topics/{slug}.{fmt}"
        token = params.get("token")
        if token is None:
            file = self.files.get(self.settings.public_dir / relative, FEED_FORMATS[fmt])
        else:
            # Its links to itself, its other formats and the front page lead back under the
            # token: a reader that follows a feed's self link must not land on a 404.
            base, private = (
                self.settings.base_url,
                f"{self.settings.base_url}private/{quote(token, safe='')}/",
            )
            file = self.files.variant(
                self.settings.public_dir / relative,
                FEED_FORMATS[fmt],
                token,
                lambda body: private_feed_links(body, fmt, base, private, slug),
            )
        if file is None:
            what = "This topic has no feed (any more)." if slug else "The feeds have not been published yet."
            return self.error(request, 404, "Not found", what)
        extra = {} if self.settings.feed_tokens else {"access-control-allow-origin": "*"}
        if self.settings.feed_tokens:
            extra["cache-control"] = f"private, max-age={self.settings.feed_max_age}"
            extra["x-robots-tag"] = "noindex"
        return file_response(request, file, max_age=self.settings.feed_max_age, csp=FEED_CSP, extra=extra)

    async def asset(self, request: Request) -> Response:
        """The stylesheet and the icon, from the templates folder."""
        name = request.url.path.rsplit("/", 1)[-1]
        media = {"style.css": "text/css; charset=utf-8", "favicon.svg": "image/svg+xml"}[name]
        file = self.files.get(TEMPLATES_DIR / name, media)
        if file is None:
            raise HTTPException(404)
        return file_response(request, file, max_age=3600, csp=FEED_CSP)

    # ----------------------------------------------------------------- front page

    async def front(self, request: Request) -> Response:
        token = request.path_params.get("token")
        if token is not None and not self._private_ok(token):
            return self.error(request, 404, "Not found", "There is nothing at this address.")
        private = bool(self.settings.feed_tokens)
        show_feeds = not private or token is not None
        feed_file = self.files.get(self.settings.public_dir / "feed.json", FEED_FORMATS["json"])
        topics: tuple[FrontTopic, ...] = ()
        slugs: dict[str, str] = {}
        if show_feeds and feed_file is not None:
            try:
                topics, slugs = front_topics(json.loads(feed_file.body))
            except (ValueError, TypeError, AttributeError, KeyError):
                log.exception("front page: %s is not the JSON Feed publish writes", self.settings.public_dir)
        root = request.scope.get("root_path", "").rstrip("/")
        # Quoted: a token may hold any character ("#", "?", a space would break every link).
        prefix = f"{root}/private/{quote(token, safe='')}" if token else root
        return self.page(
            request,
            "front.html",
            topics=topics,
            slugs=slugs,
            show_feeds=show_feeds,
            published=feed_file is not None,
            prefix=prefix,
            newsletters=self.settings.newsletters,
            headers={"x-robots-tag": "noindex"} if token else None,
        )

    # ----------------------------------------------------------------- archive

    async def archive_index(self, request: Request) -> Response:
        letters = []
        for letter in self.settings.newsletters:
            has_issues = (self.settings.archive_dir / letter.name / "index.html").is_file()
            letters.append((letter, has_issues))
        return self.page(request, "archive.html", letters=letters)

    async def archive_file(self, request: Request) -> Response:
        name = request.path_params["name"]
        filename = request.path_params.get("file", "index.html")
        if not _NEWSLETTER_NAME.match(name) or not (filename == "index.html" or _ISSUE_FILE.match(filename)):
            return self.error(request, 404, "Not found", "There is no such issue.")
        media = "text/plain; charset=utf-8" if filename.endswith(".txt") else "text/html; charset=utf-8"
        path = self.settings.archive_dir / name / filename
        if filename == "index.html":
            file = self._with_site_chrome(request, path, media, name)
            csp = ARCHIVE_INDEX_CSP
        else:
            file = self.files.get(path, media)
            csp = ARCHIVE_CSP
        if file is None:
            what = (
                "This newsletter has no issues yet."
                if filename == "index.html"
                else "There is no such issue."
            )
            return self.error(request, 404, "Not found", what)
        return file_response(request, file, max_age=300, csp=csp)

    def _with_site_chrome(self, request: Request, path: Path, media: str, name: str) -> CachedFile | None:
        """The archive's page at ``path`` with the site's stylesheet and header, as this
        request's root path and the current site title have them (cached per variant)."""
        root = request.scope.get("root_path", "").rstrip("/")
        letter = self.settings.newsletter(name)
        head = self.templates.get_template("site_head.html").render(root=root)
        header = self.templates.get_template("site_header.html").render(
            root=root, site_title=self.settings.title, subscribe_list=letter.name if letter else ""
        )
        return self.files.variant(
            path, media, f"chrome\n{head}{header}", lambda body: with_site_chrome(body, head, header)
        )

    # ----------------------------------------------------------------- subscribe

    async def subscribe_form(self, request: Request) -> Response:
        if not self.settings.newsletters:
            return self.error(request, 404, "No newsletters", "There is no newsletter to subscribe to.")
        wanted = request.query_params.get("list", "")
        return self.page(
            request,
            "subscribe.html",
            csrf=self.csrf_token(request),
            newsletters=self.settings.newsletters,
            selected=wanted if self.settings.newsletter(wanted) else self.settings.newsletters[0].name,
            address="",
            problem=None,
        )

    async def subscribe(self, request: Request) -> Response:
        form = await self.read_form(request)
        if not self.csrf_ok(request, form):
            return self._csrf_failed(request)
        now = self.clock.now()
        name = str(form.get("newsletter", ""))
        letter = self.settings.newsletter(name)
        address = str(form.get("email", "")).strip()
        problem = None
        if letter is None:
            problem = "Choose one of the newsletters."
        elif not valid_address(address):
            problem = "That does not look like an email address (name@example.org)."
        if problem is not None:
            return self.page(
                request,
                "subscribe.html",
                422,
                csrf=self.csrf_token(request),
                newsletters=self.settings.newsletters,
                selected=name,
                address=address[:254],
                problem=problem,
            )
        assert letter is not None  # noqa: S101 -- narrowed above for the type checker
        address = address.lower()
        if wait := self._limited(request, address, now, what="subscription requests"):
            return wait
        if wait := self._site_limited(request, now):
            return wait
        token = self.confirm_tokens.dumps({"n": letter.name, "a": address})
        link = urljoin(letter.base_url, f"subscribe/confirm/{token}")
        hours = int(self.settings.confirm_max_age.total_seconds() // 3600)
        result = await self._send(
            letter,
            address,
            subject=f"Confirm your subscription to {letter.title}",
            template="email_confirm",
            link=link,
            hours=hours,
            now=now,
        )
        if result.outcome is not mail.Outcome.SENT:
            if _server_unusable(result):
                # Our failure, not the visitor's: once an outage is over it must not lock them
                # out for a day (their mailbox's cap), nor everyone for an hour (the site's).
                # A refusal of this one address is not given back: each try opened a session
                # with the mail server, and uncounted tries would let anyone open them unbounded.
                self._give_back(_client_of(request), address, now, site=True)
            return self._mail_failed(request)
        return self.page(request, "message.html", title="Check your inbox", message=(
            f"We sent a confirmation link to {address}. Open it within {hours} hours to start receiving "
            f"{letter.title}. Nothing is sent until you confirm."
        ))  # fmt: skip

    def _limited(self, request: Request, address: str, now: datetime, *, what: str) -> Response | None:
        """A 429 page when the client or the mailbox asked for too many mails; ``what`` names
        what they asked for, in the message ("Too many {what}; try again in ...")."""
        for limiter, key in (
            (self.per_client, _client_of(request)),
            (self.per_address, mailbox_key(address)),
        ):
            wait = limiter.hit(key, now)
            if wait is not None:
                seconds = max(1, int(wait.total_seconds()))
                return self.error(
                    request,
                    429,
                    "Too many requests",
                    f"Too many {what}; try again in {_duration(seconds)}.",
                    **{"retry-after": str(seconds)},
                )
        return None

    def _give_back(self, client: str, address: str, now: datetime, *, site: bool) -> None:
        """Uncount a request ``_limited`` (and, with ``site``, ``_site_limited``) counted at
        ``now`` whose mail never left: the limits cap the mail sent, and a retry after our
        own failure is not a flood.  Mail that did leave stays counted, so retrying a
        successful request still meets the mailbox's cap."""
        self.per_client.give_back(client, now)
        self.per_address.give_back(mailbox_key(address), now)
        if site:
            self.confirm_mails.give_back("site", now)

    def _site_limited(self, request: Request, now: datetime) -> Response | None:
        """The cap on confirmation mails of the whole site: the last line when an attacker has
        many networks and many addresses of one victim."""
        wait = self.confirm_mails.hit("site", now)
        if wait is None:
            return None
        seconds = max(1, int(wait.total_seconds()))
        return self.error(
            request,
            429,
            "Too many requests",
            "This site has sent as many confirmation emails as it may in an hour; "
            f"try again in {_duration(seconds)}.",
            **{"retry-after": str(seconds)},
        )

    def _read_confirm_token(self, token: str) -> tuple[str, str, datetime] | None:
        """``(newsletter, address, when the link was made)`` of a valid link, else None."""
        try:
            data, issued = self.confirm_tokens.loads(
                token, max_age=int(self.settings.confirm_max_age.total_seconds()), return_timestamp=True
            )
        except itsdangerous.SignatureExpired:
            raise
        except itsdangerous.BadData:
            return None
        if (
            not isinstance(data, dict)
            or not isinstance(data.get("n"), str)
            or not isinstance(data.get("a"), str)
        ):
            return None
        return data["n"], data["a"], issued

    async def _confirm_target(self, request: Request) -> tuple[NewsletterInfo, str] | Response:
        try:
            found = self._read_confirm_token(request.path_params["token"])
        except itsdangerous.SignatureExpired:
            return self.error(
                request,
                410,
                "This link has expired",
                "Confirmation links work for a limited time. Subscribe again to get a new one.",
            )
        if found is None:
            return self.error(
                request, 400, "Invalid link", "This confirmation link is not valid; copy it whole."
            )
        name, address, issued = found
        letter = self.settings.newsletter(name)
        if letter is None:
            return self.error(request, 404, "Not found", "This newsletter no longer exists.")
        self.as_letter_page(request, letter)
        # An unsubscribe outranks every confirmation link sent before it: the link left in
        # the mailbox must not sign the address up again.
        known = await run_in_threadpool(self.store.subscriber, name, address)
        # The link's time is in whole seconds: a link made in the same second as the
        # unsubscribe was made after it (a person cannot be quicker).
        if known is not None and not known[0] and known[1].replace(microsecond=0) > issued:
            return self.error(
                request,
                410,
                "This link was sent before you unsubscribed",
                "It no longer subscribes you. To receive this newsletter again, subscribe again.",
            )
        return letter, address

    async def confirm_form(self, request: Request) -> Response:
        target = await self._confirm_target(request)
        if isinstance(target, Response):
            return target
        letter, address = target
        return self.page(
            request, "confirm.html", csrf=self.csrf_token(request), letter=letter, address=address
        )

    async def confirm(self, request: Request) -> Response:
        form = await self.read_form(request)
        if not self.csrf_ok(request, form):
            return self._csrf_failed(request)
        target = await self._confirm_target(request)
        if isinstance(target, Response):
            return target
        letter, address = target
        await run_in_threadpool(self.store.set_subscriber, letter.name, address, True, self.clock.now())
        return self.page(
            request,
            "message.html",
            title="You are subscribed",
            message=f"{address} will receive {letter.title}. Every issue has a link to unsubscribe.",
        )

    # ----------------------------------------------------------------- unsubscribe

    def _unsubscribe_target(self, request: Request) -> tuple[str, str] | Response:
        found = newsletters.read_unsubscribe_token(self.settings.secret_key, request.path_params["token"])
        if found is None:
            return self.error(
                request,
                400,
                "Invalid link",
                "This unsubscribe link is not valid; copy it whole from the email.",
            )
        return found

    async def unsubscribe_form(self, request: Request) -> Response:
        # A GET never unsubscribes: mail scanners fetch every link in a message.
        target = self._unsubscribe_target(request)
        if isinstance(target, Response):
            return target
        name, address = target
        letter = self.settings.newsletter(name)
        self.as_letter_page(request, letter)
        return self.page(
            request,
            "unsubscribe.html",
            title=letter.title if letter else name,
            address=address,
            headers={"x-robots-tag": "noindex"},
        )

    async def unsubscribe(self, request: Request) -> Response:
        """RFC 8058 one-click: the token is the authority (no cookie, no CSRF token), acted on at once."""
        target = self._unsubscribe_target(request)
        if isinstance(target, Response):
            return target
        name, address = target
        await run_in_threadpool(self.store.set_subscriber, name, address, False, self.clock.now())
        letter = self.settings.newsletter(name)
        self.as_letter_page(request, letter)
        return self.page(
            request,
            "message.html",
            title="You are unsubscribed",
            message=f"{address} will receive no more issues of {letter.title if letter else name}.",
        )

    async def unsubscribe_help(self, request: Request) -> Response:
        """The archive's generic link: no personal token, so mail the personal link on request."""
        if request.method == "GET":
            wanted = request.query_params.get("list", "")
            self.as_letter_page(request, self.settings.newsletter(wanted))
            return self.page(
                request,
                "unsubscribe_request.html",
                csrf=self.csrf_token(request),
                newsletters=self.settings.newsletters,
                selected=wanted if self.settings.newsletter(wanted) else "",
                problem=None,
            )
        form = await self.read_form(request)
        if not self.csrf_ok(request, form):
            return self._csrf_failed(request)
        letter = self.settings.newsletter(str(form.get("newsletter", "")))
        self.as_letter_page(request, letter)
        address = str(form.get("email", "")).strip().lower()
        if letter is None or not valid_address(address):
            return self.page(
                request,
                "unsubscribe_request.html",
                422,
                csrf=self.csrf_token(request),
                newsletters=self.settings.newsletters,
                selected=letter.name if letter else "",
                problem="Choose a newsletter and enter the address that receives it.",
            )
        now = self.clock.now()
        if wait := self._limited(request, address, now, what="requests for an unsubscribe link"):
            return wait
        known = await run_in_threadpool(self.store.subscribers, letter.name)
        # The same answer at the same time either way: the page must not tell who is
        # subscribed.  So the mail goes out after the answer, and a failure to send it is
        # only logged (a 503 for subscribers alone, or a slower answer, would tell).
        answer = self.page(request, "message.html", title="Check your inbox", message=(
            f"If {address} receives {letter.title}, a message with a link to unsubscribe is on its way."
        ))  # fmt: skip
        client = _client_of(request)
        if known.get(address, address in letter.subscribers):  # as newsletters.recipients()
            token = newsletters.make_unsubscribe_token(self.settings.secret_key, letter.name, address)
            answer.background = BackgroundTask(
                self._mail_unsubscribe_link, letter, address, token=token, client=client, now=now
            )
        elif self._mail_down:
            # Nothing is mailed to an address that receives nothing, so its requests cannot
            # fail: while the server is down they are given back all the same, or the limits
            # (429 for strangers, none for subscribers) would tell who subscribes.
            self._give_back(client, address, now, site=False)
        return answer

    async def _mail_unsubscribe_link(
        self, letter: NewsletterInfo, address: str, *, token: str, client: str, now: datetime
    ) -> None:
        result = await self._send(
            letter,
            address,
            subject=f"Unsubscribe from {letter.title}",
            template="email_unsubscribe",
            link=urljoin(letter.base_url, f"unsubscribe/{token}"),
            hours=0,
            now=now,
        )
        # Given back on an outage only, the same rule as for strangers above: a refusal of
        # this one address says nothing about the server, and a stranger has none.
        if _server_unusable(result):
            self._give_back(client, address, now, site=False)

    # ----------------------------------------------------------------- mail

    async def _send(
        self,
        letter: NewsletterInfo,
        address: str,
        *,
        subject: str,
        template: str,
        link: str,
        hours: int,
        now: datetime,
    ) -> mail.DeliveryResult:
        """Build and deliver one message; what came of it (an exception is ``UNCERTAIN``: it
        may have gone).  The outbox's messages are logged by file: nobody receives them."""
        context = {"title": letter.title, "address": address, "link": link, "hours": hours}
        text = self.templates.get_template(f"{template}.txt").render(**context)
        html = self.templates.get_template(f"{template}.html").render(**context)
        msg = EmailMessage(policy=mail.MAIL_POLICY)
        msg["From"] = Address(display_name=mail.clean_header(letter.title), addr_spec=letter.sender)
        msg["To"] = Address(addr_spec=address)
        msg["Subject"] = mail.clean_header(subject)
        msg["Date"] = mail.format_date(now)
        msg["Message-ID"] = make_msgid(domain=mail.domain_of(letter.sender))
        msg["Auto-Submitted"] = "auto-generated"
        msg.set_content(text, subtype="plain", charset="utf-8", cte="quoted-printable")
        msg.add_alternative(html, subtype="html", charset="utf-8", cte="quoted-printable")
        name = f"{template}-{hashlib.sha256(address.encode()).hexdigest()[:12]}-{secrets.token_hex(4)}"

        def deliver() -> tuple[mail.DeliveryResult, Path | None]:
            with self.transport() as transport:
                sent = transport.deliver(letter.sender, address, mail.serialize(msg), name, lambda: None)
                return sent, transport.outbox

        try:
            result, outbox = await run_in_threadpool(deliver)
        except Exception as exc:
            log.exception("sending %s to %s failed", template, address)
            return mail.DeliveryResult(mail.Outcome.UNCERTAIN, f"{type(exc).__name__}: {exc}")
        if result.outcome is mail.Outcome.SENT:
            self._mail_down = False
        elif _server_unusable(result):
            self._mail_down = True
        if result.outcome is not mail.Outcome.SENT:
            log.warning("sending %s to %s: %s: %s", template, address, result.outcome, result.detail)
        elif outbox is not None:
            # No smtp: in feeds.yaml: the visitor waits for a mail only the operator can send
            # on.  The file names it; the address is personal data, and is in the file.
            log.warning("mail written to %s, not sent (no smtp: in feeds.yaml)", result.detail)
        return result

    def _mail_failed(self, request: Request) -> Response:
        return self.error(
            request,
            503,
            "Could not send the email",
            "The message could not be sent just now; please try again in a few minutes.",
            **{"retry-after": "300"},
        )

    def _csrf_failed(self, request: Request) -> Response:
        return self.error(
            request,
            403,
            "Form expired",
            "This form expired or was sent from another site. Reload the page and try again.",
        )

    # ----------------------------------------------------------------- errors

    async def http_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)  # noqa: S101 -- registered for HTTPException only
        titles = {
            404: ("Not found", "There is nothing at this address."),
            405: ("Method not allowed", "This address does not take that kind of request."),
            411: ("Length required", "Send the form from the page."),
            413: ("Too large", "That request is larger than any form on this site."),
            415: ("Unsupported form", "Send the form from the page."),
        }
        title, message = titles.get(exc.status_code, ("Bad request", "The request could not be understood."))
        return self.error(request, exc.status_code, title, message, **(exc.headers or {}))

    async def server_error(self, request: Request, exc: Exception) -> Response:
        log.error("%s %s failed", request.method, loggable_path(request), exc_info=exc)
        body = (
            "<!doctype html><meta charset=utf-8><title>Something went wrong</title>"
            "<h1>Something went wrong</h1><p>The error was logged. Please try again later.</p>"
        )
        # Starlette answers from outside every middleware here, SecurityHeaders included.
        headers = {k.decode(): v.decode() for k, v in security_headers(hsts=self.settings.secure)}
        headers["content-security-policy"] = PAGE_CSP
        return Response(body, status_code=500, media_type="text/html; charset=utf-8", headers=headers)


def _client_of(request: Request) -> str:
    return client_key(request.client.host) if request.client else "unknown"


def _server_unusable(result: mail.DeliveryResult) -> bool:
    """Whether a send found the mail server (or the outbox) unusable for any recipient, not
    just this one, and left nothing with anyone: put off or refused before the message was
    taken (RETRY, FAILED), not lost while it was sent (UNCERTAIN: it may have arrived)."""
    nothing_sent = result.outcome in (mail.Outcome.RETRY, mail.Outcome.FAILED)
    return nothing_sent and (result.server_down or result.local_fault)


# Path segments after which every segment is a secret (or may be): unsubscribe and
# confirmation tokens, private feed tokens.
_TOKEN_PREFIXES = frozenset({"private", "confirm", "unsubscribe"})


def loggable_path(request: Request) -> str:
    """The request's path as a log may show it: the matched route's pattern
    (``/unsubscribe/{token}``), never the token the real path carries.

    A request that failed before routing shows its path with every segment after a token
    prefix hidden.
    """
    route = request.scope.get("route")
    if isinstance(route, Route):
        # A Mount (the editor) leaves its own literal prefix in root_path; it has no parameters.
        return str(request.scope.get("root_path", "")).rstrip("/") + route.path
    segments = request.url.path.split("/")
    for index, segment in enumerate(segments):
        if segment in _TOKEN_PREFIXES:
            segments[index + 1 :] = ["{redacted}" if part else part for part in segments[index + 1 :]]
            break
    return "/".join(segments)


def valid_address(address: str) -> bool:
    """A plausible single mailbox (no display name, no comments, no header tricks)."""
    if len(address) > 254 or not _EMAIL.match(address):
        return False
    try:
        Address(addr_spec=address)
    except (ValueError, IndexError):
        return False
    return True


# Domains that are one mailbox provider under two names.
_SAME_MAILBOXES = {"googlemail.com": "gmail.com"}


def mailbox_key(address: str) -> str:
    """The rate limits' key of an address: without a ``+tag`` or dots in the local part, and
    with googlemail.com as gmail.com, all of which reach the same mailbox at Gmail and
    others (victim+1@, v.ictim@ ... must not each count as new).  For every domain: it is
    only the key, and two people whose addresses differ by a dot sharing a limit costs
    little.  Mail goes to the address as typed."""
    local, at, domain = address.lower().rpartition("@")
    base = local.split("+", 1)[0].replace(".", "")
    return f"{base or local}{at}{_SAME_MAILBOXES.get(domain, domain)}"


def client_key(host: str) -> str:
    """The rate limits' key of a client: an IPv6 address by its /64, which one subscriber
    line or server usually holds whole (each of its addresses is not a new client)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class _SlashRedirect:
    """A router's fallback: a path that matches with its trailing slash added or removed is
    redirected there, by a path-only Location.

    Starlette's own redirect (``redirect_slashes``) is an absolute URL built from the Host
    header and the connection's scheme: any host a client names (a poisoned cache), and
    ``http://`` behind a TLS proxy.  A path keeps the host and scheme the browser used.
    """

    def __init__(self, router: Router) -> None:
        self.router = router

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path: str = scope["path"]
        # "//host/..." would be a protocol-relative Location: another site.
        if scope["type"] == "http" and path.startswith("/") and not path.startswith("//"):
            other = path.rstrip("/") if path.endswith("/") else path + "/"
            moved = {**scope, "path": other}
            if other and any(route.matches(moved)[0] is not Match.NONE for route in self.router.routes):
                location = quote(other, safe="/:@!$&'()*+,;=~")
                if scope.get("query_string"):
                    location += "?" + scope["query_string"].decode("latin-1")
                await RedirectResponse(location, status_code=307)(scope, receive, send)
                return
        await self.router.not_found(scope, receive, send)


def relative_slash_redirects(router: Router) -> None:
    """Make ``router`` redirect a missing or extra trailing slash by path only (``_SlashRedirect``)."""
    router.redirect_slashes = False
    router.default = _SlashRedirect(router)


def _duration(seconds: int) -> str:
    if seconds < 120:
        return f"{seconds} seconds"
    if seconds < 7200:
        return f"{seconds // 60} minutes"
    return f"{seconds // 3600} hours"


def create_app(
    settings: WebSettings,
    store: SubscriberStore,
    transport: Callable[[], mail.Transport],
    clock: Clock | None = None,
    *,
    config_path: Path | None = None,
) -> Starlette:
    """The ASGI application.  ``transport`` makes a fresh mail transport per message.

    ``config_path``: the feeds.yaml ``settings`` came from; when it changes, its part of
    the settings is read again (``SettingsFile``).
    """
    web = _Web(settings, store, transport, clock or SystemClock())
    handler = Callable[[Request], Awaitable[Response]]
    feed_routes: Sequence[tuple[str, handler]] = (
        ("/feed.{fmt}", web.feed),
        ("/topics/{slug}.{fmt}", web.feed),
    )
    routes = [
        Route("/", web.front, methods=["GET"]),
        *(Route(path, fn, methods=["GET"]) for path, fn in feed_routes),
        Route("/private/{token}/", web.front, methods=["GET"]),
        *(Route("/private/{token}" + path, fn, methods=["GET"]) for path, fn in feed_routes),
        Route("/style.css", web.asset, methods=["GET"]),
        Route("/favicon.svg", web.asset, methods=["GET"]),
        Route("/archive/", web.archive_index, methods=["GET"]),
        Route("/archive/{name}/", web.archive_file, methods=["GET"]),
        Route("/archive/{name}/{file}", web.archive_file, methods=["GET"]),
        Route("/subscribe", web.subscribe_form, methods=["GET"]),
        Route("/subscribe", web.subscribe, methods=["POST"]),
        Route("/subscribe/confirm/{token}", web.confirm_form, methods=["GET"]),
        Route("/subscribe/confirm/{token}", web.confirm, methods=["POST"]),
        Route("/unsubscribe", web.unsubscribe_help, methods=["GET", "POST"]),
        Route("/unsubscribe/{token}", web.unsubscribe_form, methods=["GET"]),
        Route("/unsubscribe/{token}", web.unsubscribe, methods=["POST"]),
    ]
    app = Starlette(
        routes=routes,
        exception_handlers={HTTPException: web.http_error, Exception: web.server_error},
    )
    relative_slash_redirects(app.router)  # also for routes appended later (the editor's Mount)
    app.add_middleware(SecurityHeaders, hsts=lambda: web.settings.secure)  # the live base_url's scheme
    # Inside FollowSettings: the prefixes of the current settings.
    app.add_middleware(ServeUnder, web=web, router=app.router)
    if config_path is not None:
        app.add_middleware(FollowSettings, source=SettingsFile(config_path, settings), web=web)
    app.state.web = web
    return app


__all__ = [
    "CachedFile",
    "FileCache",
    "FollowSettings",
    "NewsletterInfo",
    "RateLimit",
    "RateLimiter",
    "ServeUnder",
    "SettingsFile",
    "SubscriberStore",
    "WebSettings",
    "client_key",
    "cookie_path",
    "create_app",
    "front_topics",
    "live_settings",
    "loggable_path",
    "mailbox_key",
    "origin_of",
    "read_small_form",
    "relative_slash_redirects",
    "root_path_of",
    "settings_from_config",
    "site_origins",
    "valid_address",
    "with_site_chrome",
]
