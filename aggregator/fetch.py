"""Polite async HTTP (httpx's API over aiohttp) and ``file:`` feeds: one feed in, one ``FetchResult`` out.

In:  a ``FeedState`` (identity and validators), the absolute URL to request (``http``,
     ``https`` or ``file:``, already resolved by the caller), ``now``, and whether to leave
     the validators out (``unconditional``; the caller asks ``polling.wants_unconditional``).
Out: a ``FetchResult``: the body of a 200 within the size limit, or NOT_MODIFIED for a 304,
     or an error a person can act on.  A feed that fails is data: nothing here raises for a
     feed's problem, and no ``httpx.Response`` leaves this module.  Nothing here parses.

Everything from the network is hostile until proven otherwise:

- three time limits: connect, read (between bytes), and a total deadline for the whole
  fetch including redirects, so a server that trickles one byte a second cannot hold a
  feed forever; a ``file:`` read gets the total deadline too (a hung network mount): it
  runs in a daemon thread of its own, which is left behind if it never returns and can
  deliver nothing once the poll has stopped waiting;
- a size cap on *decompressed* bytes, applied while streaming: gzip and deflate are
  inflated here with a bounded output (``zlib``'s ``max_length``), so a 50 MB gzip bomb
  costs at most the cap in memory, not 50 MB at once, also when codings are stacked
  (``Content-Encoding: gzip, gzip``: one bounded inflater per coding, each held to the
  cap); a Content-Length above the cap is refused before reading;
- redirects are followed here, not by httpx, to know whether the *first* hop was
  permanent (301/308: the caller may move the subscription), to name the URLs of a loop,
  and to refuse a redirect to anything but http(s) (never to ``file:``), naming the
  unusable Location rather than blaming the feed's own URL;
- a 410 Gone retires the feed only when the configured URL itself answered it, or the end of
  permanent redirects (301/308) only: behind a temporary one (302/303/307) the configured URL
  is still the feed's address, and its target being gone is an error of this poll;
- a 304 is "not modified" only when validators were sent: to a request without any it
  means a misconfigured server or proxy, and is an error (else the feed would never get
  its first body);
- credentials in a feed URL (``https://user:password@host/feed``) go out as an
  Authorization header (httpx makes it), never to aiohttp in the URL, and never into an
  error message or a log: there the password reads ``***``;
- a redirect from a public address to a private one is refused before the request is sent:
  a feed on the internet must not make the poller fetch, and publish, what only the
  operator's own network can reach (``http://127.0.0.1:8080/``, the cloud's metadata
  service at 169.254.169.254, an intranet name).  "Public" is judged by the address the
  redirect came from (the connection's peer), and the next hop is held to public addresses
  where it connects (``AiohttpTransport``: IP addresses checked, names resolved through a
  resolver that drops private addresses), so DNS rebinding cannot slip past.  The same
  holds for a feed's adopted new address (``fetch_url``) and for a feed link on a public
  page (``discovery``).  A feed configured at a private address keeps its redirects to
  others, and ``FetchSettings.address_is_global`` says which addresses are public;
- cookies live as long as one fetch: set along a redirect chain, they are sent back on its
  next hops (consent and anti-bot pages work so), but no fetch sends what another was given;
- a global limit on requests in flight, and a per-host one (host:port): httpx spends more
  CPU per request with many requests in flight to one host (encode/httpx#3215) and
  small sites deserve it anyway.

A wrong Content-Type is not an error here: many feeds are served as text/html or
text/plain.  The response headers go along (lower-cased) and the parser decides.

The client is httpx's ``AsyncClient`` (its API, URLs, headers, env proxies), but
requests go out through ``AiohttpTransport``, a small transport over aiohttp's HTTP/1.1:
httpcore's pool spends CPU per request on every connection it holds (encode/httpx#3215),
about 5.8 ms per feed at 64 connections against 0.8 ms over aiohttp, which on two cores
was a third of a poll's work.  aiohttp decompresses nothing here (the bounded inflater
below does) and follows no redirects; its errors become the httpx exceptions httpcore
would have raised, with the original kept as ``__cause__``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import importlib.util
import ipaddress
import logging
import mimetypes
import re
import socket
import ssl
import threading
import time
import zlib
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import httpx
from yarl import URL

from aggregator import USER_AGENT
from aggregator._aiohttp import aiohttp
from aggregator.types import FeedState, FeedStatus, FetchResult
from aggregator.urls import without_password

log = logging.getLogger(__name__)

ACCEPT = (
    "application/atom+xml, application/rss+xml, application/rdf+xml, application/feed+json, "
    "application/xml;q=0.9, text/xml;q=0.9, application/json;q=0.8, */*;q=0.1"
)
# Advertise brotli only when httpx can decode it.  (It is then decoded by httpx without an
# output bound per chunk, unlike gzip and deflate below; the running size cap still applies.)
ACCEPT_ENCODING = "gzip, deflate" + (
    ", br" if importlib.util.find_spec("brotli") or importlib.util.find_spec("brotlicffi") else ""
)
# Compressions a server may apply without being asked (we decode only what ACCEPT_ENCODING
# names).  Other values ("none", "utf-8", "binary": misconfigured servers) compress nothing,
# and httpx passes such a body through as it is, which is right.
_COMPRESSIONS = frozenset({"br", "zstd", "compress", "x-compress", "bzip2", "x-bzip2", "lzma", "xz"})
_DECODABLE = frozenset({"identity", "x-gzip", *(e.strip() for e in ACCEPT_ENCODING.split(","))})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
PERMANENT_REDIRECT_STATUSES = frozenset({301, 308})
_MAX_VALIDATOR_LENGTH = 1024  # a longer ETag is not worth storing or sending back
_MAX_HEADER_SECONDS = 2**31  # RFC 9111: a delta-seconds this large means "infinity"
# Anything but printable ASCII: httpx sends header values as ASCII, and a stored ETag of
# "café" made every later poll of every feed fail with UnicodeEncodeError.
_UNSAFE_IN_HEADER = re.compile("[^\x20-\x7e]")
# Delta-seconds (Retry-After, max-age): ASCII digits only ("²".isdigit() is True, int() refuses
# it), and at most ten of them: more is "infinity" (RFC 9111), and int() refuses 4,300+ digits.
_DELTA_SECONDS = re.compile("[0-9]+")


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052: an IPv4 address in its last 32 bits


def is_global_address(address: str) -> bool:
    """Whether ``address`` (an IP address as text) is on the public internet.

    Python's ``is_global``, minus what it lets through: multicast (224.0.0.0/4 is "global"
    to it) and reserved ranges (the old IPv4-compatible ``::7f00:1``); and an IPv4 address
    carried inside an IPv6 one (``::ffff:127.0.0.1``, 6to4 ``2002:7f00:1::``, NAT64
    ``64:ff9b::7f00:1``) is judged as itself, since that is where the packets go.  A zone
    (``fe80::1%eth0``) is ignored; text that is no address is not global.
    """
    try:
        ip: ipaddress.IPv4Address | ipaddress.IPv6Address = ipaddress.ip_address(address.partition("%")[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = ip.ipv4_mapped or ip.sixtofour
        if embedded is None and ip in _NAT64:
            embedded = ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
        if embedded is not None:
            ip = embedded
    return ip.is_global and not ip.is_multicast and not ip.is_reserved


@dataclass(frozen=True, slots=True)
class FetchSettings:
    """Limits for fetching.  Times are in seconds.

    Deliberately no ``unconditional_every`` here: when to skip validators is polling
    policy (``PollingPolicy.unconditional_every``); fetch only takes the decision as the
    ``unconditional`` flag, so that the two can never disagree.
    """

    max_bytes: int = 10 * 1024 * 1024
    connect_timeout: float = 10.0
    read_timeout: float = 30.0  # longest silence between two reads
    total_timeout: float = 60.0  # the whole fetch, redirects included
    max_redirects: int = 5
    concurrency: int = 16  # requests in flight, all hosts together
    per_host: int = 2  # requests in flight to one host:port
    user_agent: str = USER_AGENT
    # Which server addresses count as the public internet: a redirect from one of those may
    # not lead to any other (see the module docstring).  Tests on a loopback machine declare
    # one loopback address public.
    address_is_global: Callable[[str], bool] = is_global_address

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.concurrency < 1 or self.per_host < 1 or self.max_redirects < 0:
            raise ValueError(f"FetchSettings: limits must be positive: {self!r}")


def make_client(settings: FetchSettings | None = None) -> httpx.AsyncClient:
    """The one AsyncClient a poll cycle shares; the caller closes it (``async with``)."""
    settings = settings or FetchSettings()
    client = _FeedClient(
        follow_redirects=False,  # followed in Fetcher, see the module docstring
        transport=AiohttpTransport(max_connections=settings.concurrency),
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=settings.total_timeout,
        ),
        headers={
            "User-Agent": settings.user_agent,
            "Accept": ACCEPT,
            "Accept-Encoding": ACCEPT_ENCODING,
        },
    )
    _keep_no_cookies(client.cookies)
    return client


def _keep_no_cookies(cookies: httpx.Cookies) -> None:
    """Keep the client's own cookie jar empty: each fetch has a jar of its own (``_Progress``).

    httpx copies the client's jar into every request it builds and matches each cookie in it
    against the URL.  A poll's jar would fill up with a cookie from every site that sets one
    (anti-bot and consent cookies are common), so that each request costs more than the one
    before: with cookies from 500 sites, building a request took 2.5 ms instead of 15 us, and
    a poll of 1,000 feeds that all answer 304 with a cookie took 2.6 s instead of 0.84 s.
    Nor should one feed's server see the cookies it set while another feed was fetched.
    httpx also hands every response to ``extract_cookies``, which wraps the request and the
    response for ``http.cookiejar`` (about 90 us) even when there is no Set-Cookie; that is
    skipped too.
    """

    def extract_cookies(response: httpx.Response) -> None:
        return None

    cookies.extract_cookies = extract_cookies  # type: ignore[method-assign]


class _FeedClient(httpx.AsyncClient):
    """httpx's AsyncClient, minus the redirect request it builds for every 3xx response.

    Even with ``follow_redirects=False`` httpx parses each Location to build the next
    request, and raises when it cannot: a redirect to ``mailto:`` or ``data:``, or to a
    broken URL, then failed the fetch as if the *feed's* URL were invalid, without naming
    the Location.  The Fetcher reads the Location itself (``_redirect_target``) and says
    what is wrong with it; httpx's request would be thrown away anyway.
    """

    def _build_redirect_request(self, request: httpx.Request, response: httpx.Response) -> httpx.Request:
        return request  # only ever stored as response.next_request, which nothing reads


# Request extension: on a hop that may only reach public addresses, the rule saying which
# addresses are (``FetchSettings.address_is_global``).  Response extension: the address of
# the server that answered (the connection's peer), as text.
PUBLIC_ONLY = "aggregator.public_only"
PEER_ADDRESS = "aggregator.peer_address"


class PrivateAddressRefused(OSError):
    """A hop that may only reach public addresses would have connected to ``addresses``.

    An ``OSError``, so that aiohttp wraps it as it wraps a DNS failure when the resolver
    raises it: the request is never sent.
    """

    def __init__(self, host: str, addresses: Iterable[str]) -> None:
        self.host = host
        self.addresses = tuple(dict.fromkeys(addresses))  # in order, once each
        super().__init__(f"{host} is at a private address ({', '.join(self.addresses)}): not connected")


def literal_address(host: str) -> str | None:
    """The IP address ``host`` spells, or None for a name that needs resolving.

    Also the old IPv4 spellings that ``connect`` takes without asking a resolver (``127.1``,
    ``2130706433``, ``0x7f000001``) and a trailing dot: checked as what they reach.
    """
    bare = host.partition("%")[0].removesuffix(".")  # a zone (fe80::1%25eth0), a root dot
    try:
        return str(ipaddress.ip_address(bare.strip("[]")))
    except ValueError:
        pass
    try:
        return socket.inet_ntoa(socket.inet_aton(bare))
    except (OSError, ValueError):  # ValueError: a NUL in it
        return None


def refused_literal(host: str, allowed: Callable[[str], bool]) -> PrivateAddressRefused | None:
    """Why a hop held to public addresses may not go to ``host``, when it is an IP address
    that ``allowed`` refuses; None when it is allowed or a name (left to the resolver)."""
    address = literal_address(host)
    if address is None or allowed(address):
        return None
    return PrivateAddressRefused(host, [address])


class _PublicOnlyResolver(aiohttp.abc.AbstractResolver):
    """aiohttp's resolver, keeping only the addresses ``allowed`` accepts.

    The filter sits where the connector gets the addresses it connects to, so a name that
    resolved to a public address a moment ago and resolves to 127.0.0.1 now (DNS
    rebinding) cannot slip past.  IP addresses in URLs never reach a resolver: the
    transport checks those itself (``refused_literal``).
    """

    def __init__(self, allowed: Callable[[str], bool]) -> None:
        self._allowed = allowed
        self._resolver = aiohttp.DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        found = await self._resolver.resolve(host, port, family)
        kept = [address for address in found if self._allowed(address["host"])]
        if not kept:
            raise PrivateAddressRefused(host, [address["host"] for address in found])
        return kept

    async def close(self) -> None:
        await self._resolver.close()


class _PeerResponse(aiohttp.ClientResponse):
    """aiohttp's response, remembering the address of the server that sent it.

    Read as the response starts: aiohttp gives a connection back to its pool, and forgets
    it, as soon as a response without a body has been read, and every redirect is one.
    """

    peer: str | None = None

    async def start(self, connection: aiohttp.connector.Connection) -> aiohttp.ClientResponse:
        transport = connection.transport
        if transport is not None:
            peername = transport.get_extra_info("peername")
            if isinstance(peername, tuple):  # (host, port), or 4 items for IPv6
                self.peer = peername[0]
        return await super().start(connection)


class AiohttpTransport(httpx.AsyncBaseTransport):
    """httpx requests sent with aiohttp (HTTP/1.1): no decompression, no redirects, no cookies.

    httpx keeps doing what it does above the transport (URLs, default headers,
    proxies from the environment, which it routes through its own transports); this one
    only moves bytes.  The aiohttp session is made on the first request, inside the
    running event loop, and closed with the client.

    Each response says which address it came from (the ``PEER_ADDRESS`` extension).  A
    request with the ``PUBLIC_ONLY`` extension goes out through a second session, made on
    the first such request, whose resolver drops the addresses that rule refuses; an IP
    address in its URL is checked here.  Refused, it raises ``httpx.ConnectError`` caused
    by ``PrivateAddressRefused``, and nothing is sent.  The second session has connections
    of its own: one the first session holds to a private address is never reused for it.
    """

    # Response header limits: aiohttp's defaults (8 KiB a line) refuse real feeds that send
    # long Content-Security-Policy or Set-Cookie headers; h11, httpx's parser, allows 64 KiB.
    MAX_HEADER_LINE = 64 * 1024

    def __init__(self, *, max_connections: int = 100, keepalive_seconds: float = 5.0) -> None:
        self._max_connections = max_connections
        self._keepalive_seconds = keepalive_seconds
        self._session: aiohttp.ClientSession | None = None
        self._public_only: dict[Callable[[str], bool], aiohttp.ClientSession] = {}
        self._resolvers: list[_PublicOnlyResolver] = []  # a connector closes only its own
        self._tls: ssl.SSLContext | None = None

    def _open(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = self._new_session()
        return self._session

    def _open_public_only(self, allowed: Callable[[str], bool]) -> aiohttp.ClientSession:
        session = self._public_only.get(allowed)
        if session is None:
            resolver = _PublicOnlyResolver(allowed)
            self._resolvers.append(resolver)
            session = self._public_only[allowed] = self._new_session(resolver)
        return session

    def _new_session(self, resolver: aiohttp.abc.AbstractResolver | None = None) -> aiohttp.ClientSession:
        connector = aiohttp.TCPConnector(
            limit=self._max_connections,
            keepalive_timeout=self._keepalive_seconds,
            resolver=resolver,
        )
        return aiohttp.ClientSession(
            connector=connector,
            auto_decompress=False,  # the bounded inflater decodes (see _Inflater)
            cookie_jar=aiohttp.DummyCookieJar(),  # the Fetcher keeps them, per fetch
            trust_env=False,  # httpx routes proxied requests through its own transports
            timeout=aiohttp.ClientTimeout(total=None),  # per request, below
            max_line_size=self.MAX_HEADER_LINE,
            max_field_size=self.MAX_HEADER_LINE,
            response_class=_PeerResponse,
        )

    def _tls_context(self) -> ssl.SSLContext:
        # httpx's default: certifi's CA bundle, verified.  Made on the first https request.
        if self._tls is None:
            self._tls = httpx.create_ssl_context()
        return self._tls

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        allowed = request.extensions.get(PUBLIC_ONLY)
        if allowed is None:
            session = self._open()
        else:
            refused = refused_literal(request.url.host, allowed)
            if refused is not None:
                raise httpx.ConnectError(str(refused), request=request) from refused
            session = self._open_public_only(allowed)
        timeout = request.extensions.get("timeout", {})
        url = str(request.url)
        target = URL(url, encoded=True)  # exactly the bytes httpx built, not requoted
        if "@" in url and request.url.userinfo:
            # httpx has turned the credentials into an Authorization header; aiohttp refuses
            # a request that has both ("Cannot combine AUTHORIZATION header with ...").
            target = target.with_user(None)
        try:
            response = await session.request(
                request.method,
                target,
                headers=[(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers.raw],
                data=await request.aread() or None,
                allow_redirects=False,
                ssl=self._tls_context() if request.url.scheme == "https" else True,
                timeout=aiohttp.ClientTimeout(
                    total=None,
                    connect=timeout.get("pool"),
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                ),
            )
        except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError, ValueError) as exc:
            raise _httpx_error(exc, request) from _cause(exc)
        extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
        if response.reason:
            extensions["reason_phrase"] = response.reason.encode("latin-1", "replace")
        peer = getattr(response, "peer", None)  # a _PeerResponse's
        if peer is not None:
            extensions[PEER_ADDRESS] = peer
        return httpx.Response(
            status_code=response.status,
            headers=response.raw_headers,
            stream=_AiohttpStream(response, request),
            request=request,
            extensions=extensions,
        )

    async def aclose(self) -> None:
        sessions = [self._session, *self._public_only.values()]
        self._session = None
        self._public_only = {}
        resolvers, self._resolvers = self._resolvers, []
        for session in sessions:
            if session is not None:
                await session.close()
        for resolver in resolvers:
            await resolver.close()


class _AiohttpStream(httpx.AsyncByteStream):
    """A response body as it arrives, raw (still compressed), with aiohttp's errors mapped."""

    def __init__(self, response: aiohttp.ClientResponse, request: httpx.Request) -> None:
        self._response = response
        self._request = request

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for chunk in self._response.content.iter_any():
                yield chunk
        except (aiohttp.ClientError, aiohttp.http_exceptions.HttpProcessingError) as exc:
            raise _httpx_error(exc, self._request) from _cause(exc)

    async def aclose(self) -> None:
        # A body not read to the end leaves the connection unusable: close it, do not pool it.
        if self._response.content.at_eof():
            self._response.release()
        else:
            self._response.close()


def _cause(exc: Exception) -> BaseException:
    """What to chain: for a certificate failure, the ``ssl`` error itself (aiohttp's wrapper
    pretends to be one but lacks its attributes)."""
    if isinstance(exc, aiohttp.ClientConnectorCertificateError):
        return exc.certificate_error
    return exc


def _httpx_error(exc: Exception, request: httpx.Request) -> Exception:  # noqa: PLR0911 -- a flat table
    """The httpx exception that httpcore would have raised for aiohttp's ``exc``."""
    message = str(exc) or type(exc).__name__
    if isinstance(exc, aiohttp.ConnectionTimeoutError):
        return httpx.ConnectTimeout(message, request=request)
    if isinstance(exc, aiohttp.SocketTimeoutError):
        return httpx.ReadTimeout(message, request=request)
    if isinstance(exc, aiohttp.ServerTimeoutError):
        return httpx.TimeoutException(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectorError):  # refused, DNS, TLS: the cause says which
        return httpx.ConnectError(message, request=request)
    if isinstance(
        exc, aiohttp.ServerDisconnectedError | aiohttp.ClientPayloadError | aiohttp.ClientResponseError
    ):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.http_exceptions.HttpProcessingError):
        return httpx.RemoteProtocolError(message, request=request)
    if isinstance(exc, aiohttp.InvalidURL | ValueError):
        return httpx.UnsupportedProtocol(message, request=request)
    if isinstance(exc, aiohttp.ClientConnectionError):  # reset, broken pipe, closed
        return httpx.ReadError(message, request=request)
    return httpx.TransportError(message, request=request)


@dataclass(frozen=True, slots=True)
class FetchJob:
    """One feed to fetch in ``fetch_feeds``: its state, the URL to request, whether to skip validators."""

    state: FeedState
    location: str
    unconditional: bool = False


class _Failed(Exception):
    """A feed problem found deep in a fetch; ``Fetcher.fetch`` turns it into a FetchResult."""

    def __init__(
        self,
        message: str,
        *,
        status: FeedStatus = FeedStatus.ERROR,
        http_status: int | None = None,
        retry_after: datetime | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.http_status = http_status
        self.retry_after = retry_after
        self.headers = headers or {}


@dataclass(frozen=True, slots=True)
class _PublicOrigin:
    """A hop from a public address: the next one may not lead to a private address.

    ``hop`` names it ("redirect (HTTP 302) from URL") and ``why`` says what a refusal
    means, for the message; ``http_status`` is the redirect's, if it was one.  ``moved``:
    the hop is a feed's adopted new address, held before anyone knows whether the
    configured one is public (see ``Fetcher._fetch``).
    """

    hop: str
    why: str
    http_status: int | None = None
    moved: bool = False


class _MovedToPrivate(_Failed):
    """A feed's adopted new address refused as private: unless its configured host turns
    out to be private too (an intranet feed that moved inside the network)."""


@dataclass(slots=True)
class _Progress:
    """How far one fetch got; read when it fails half-way (e.g. a 301 then a 404)."""

    chain: list[str]
    permanent_redirect: str | None = None
    # The first hop that was not a 301/308, as (its status, the URL that answered it): from
    # there on the chain is no move, and a 410 at its end retires nothing.
    temporary_redirect: tuple[int, str] | None = None
    started: float = field(default_factory=time.monotonic)
    # Set along the redirect chain and sent back on the next hops (consent and anti-bot
    # pages set one, then redirect to the feed, which asks for it); gone with the fetch.
    # Made on the first Set-Cookie: most fetches never see one, and a jar costs a lock.
    cookies: httpx.Cookies | None = None
    # Each hop as (URL, the cookies held when it was requested): coming back to a URL with a
    # cookie it did not have is the consent pattern (/feed -> /consent sets one -> /feed),
    # not a loop; coming back with the same cookies is.
    visited: set[tuple[str, str]] = field(default_factory=set)
    # When the next hop may only reach public addresses: why (a redirect from one, ...).
    guard: _PublicOrigin | None = None
    peer: str | None = None  # the address that answered the last hop, when the transport says

    @property
    def url(self) -> str:
        return self.chain[-1]

    def cookie_state(self) -> str:
        if self.cookies is None:
            return ""
        return "; ".join(sorted(f"{c.domain}{c.path}:{c.name}={c.value}" for c in self.cookies.jar))

    def keep_cookies(self, response: httpx.Response) -> None:
        if self.cookies is None:
            self.cookies = httpx.Cookies()
        self.cookies.extract_cookies(response)


class Fetcher:
    """Fetches feeds through one shared AsyncClient, within global and per-host limits.

    Make one per poll cycle (or per process) inside a running event loop and share it:
    the limits only hold between fetches that go through the same Fetcher.  Of the
    client's settings, its headers, timeouts, transports and proxies apply; its cookies,
    query parameters and base URL do not (see ``_request``).
    """

    def __init__(self, client: httpx.AsyncClient, settings: FetchSettings | None = None) -> None:
        self._client = client
        self._settings = settings or FetchSettings()
        self._global = asyncio.Semaphore(self._settings.concurrency)
        self._hosts: dict[str, asyncio.Semaphore] = {}

    @property
    def settings(self) -> FetchSettings:
        return self._settings

    async def fetch(
        self,
        state: FeedState,
        location: str,
        now: datetime,
        *,
        unconditional: bool = False,
        linked_from: str | None = None,
    ) -> FetchResult:
        """Fetch ``location`` for the feed ``state.url``.

        The stored ETag/Last-Modified are sent and a 304 gives NOT_MODIFIED with no body,
        unless ``unconditional`` (pass ``polling.wants_unconditional(...)``): then none are
        sent, to catch servers whose validators never change.

        ``linked_from`` is the URL of a page at a public address that links to ``location``
        (``fetch_page`` says whether it was): ``location`` is then held to public addresses,
        as a redirect from that page would be.
        """
        progress = _Progress(chain=[location], guard=_linked_from(linked_from))
        return await self._fetch(state, location, now, progress, conditional=not unconditional)

    async def fetch_page(
        self,
        state: FeedState,
        location: str,
        now: datetime,
        *,
        unconditional: bool = False,
        linked_from: str | None = None,
    ) -> tuple[FetchResult, bool]:
        """``fetch``, and whether the answer came from a public address: then the links in it
        may not lead to private ones (pass its URL as ``linked_from`` when fetching them)."""
        progress = _Progress(chain=[location], guard=_linked_from(linked_from))
        result = await self._fetch(state, location, now, progress, conditional=not unconditional)
        public = progress.peer is not None and self._settings.address_is_global(progress.peer)
        return result, public

    async def _fetch(
        self, state: FeedState, location: str, now: datetime, progress: _Progress, *, conditional: bool
    ) -> FetchResult:
        try:
            scheme = _scheme(location)
            if scheme == "file":
                if progress.guard is not None:  # a page on the internet pointing at our disk
                    raise _Failed(
                        f"{progress.guard.hop} to {location} refused: only http and https are followed"
                    )
                return await self._fetch_file(state, location, now, conditional=conditional)
            if scheme not in ("http", "https"):
                raise _Failed(f"unsupported URL {location!r}: use http, https or a file path")
            if progress.guard is None and _moved_to_another_host(state, location):
                progress.guard = _moved_guard(state.url)
            return await self._fetch_moved_http(state, progress, now, conditional=conditional)
        except _Failed as failure:
            return self._failed(state, location, progress, now, failure, conditional=conditional)
        except TimeoutError:
            # asyncio.timeout's deadline (httpx's own timeouts are httpx.TimeoutException).
            slow = _Failed(
                f"timed out after {_seconds(self._settings.total_timeout)} at {progress.url}: "
                "the server is too slow (total time limit for one fetch)"
            )
            return self._failed(state, location, progress, now, slow, conditional=conditional)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            said = _describe_transport_error(exc, progress.url, self._settings)
            if len(progress.chain) > 1:  # else the user checks the server configured, which is fine
                said += f" (redirected there from {progress.chain[-2]})"
            broken = _Failed(said)
            return self._failed(state, location, progress, now, broken, conditional=conditional)
        except Exception as exc:  # a server found a case not handled above: its feed fails, not the poll
            log.exception("fetching %s failed unexpectedly", without_password(progress.url))
            odd = _Failed(f"fetching {progress.url} failed unexpectedly: {type(exc).__name__}: {exc}")
            return self._failed(state, location, progress, now, odd, conditional=conditional)

    async def _fetch_moved_http(
        self, state: FeedState, progress: _Progress, now: datetime, *, conditional: bool
    ) -> FetchResult:
        """``_fetch_http``; a feed's new address refused as private is fetched after all when
        the configured one is private too (an intranet feed that moved inside the network).

        The configured host is looked up only then, when it matters (rarely): a lookup on
        every poll of every moved feed would cost time, and hang on the dead domains feeds
        move away from.
        """
        try:
            return await self._fetch_http(state, progress, now, conditional=conditional)
        except _MovedToPrivate:
            if await self._configured_is_public(state.url):
                raise
            progress.guard = None  # refused at the first hop, before anything was sent
            return await self._fetch_http(state, progress, now, conditional=conditional)

    async def _configured_is_public(self, configured: str) -> bool:
        """Whether a moved feed's configured URL is at a public address (or cannot be told:
        then it is taken as public, the safe side: a feed meant to stay inside the network
        can be configured at its private URL).

        The polls that confirmed the move checked each redirect; its new address, polled
        directly since, is held to public addresses (``_moved_guard``): else a name that
        later resolves to 127.0.0.1 (or a move adopted before this check existed) would be
        fetched, and published, from the operator's own network.
        """
        try:
            url = httpx.URL(configured)
        except httpx.InvalidURL:
            return True
        address = literal_address(url.host)
        if address is not None:
            addresses = [address]
        else:
            try:
                async with asyncio.timeout(self._settings.connect_timeout):
                    found = await asyncio.get_running_loop().getaddrinfo(
                        url.host, _port(url), type=socket.SOCK_STREAM
                    )
                addresses = [str(info[4][0]) for info in found]
            except (OSError, TimeoutError, UnicodeError):
                return True
        return not addresses or any(self._settings.address_is_global(a) for a in addresses)

    # -- HTTP ---------------------------------------------------------------------------

    async def _fetch_http(
        self, state: FeedState, progress: _Progress, now: datetime, *, conditional: bool
    ) -> FetchResult:
        validators = _validator_headers(state) if conditional else {}
        loop = asyncio.get_running_loop()
        deadline: float | None = None
        hop_ended = 0.0  # when the last hop gave its slot back
        while True:
            url = _http_url(progress.url)
            if progress.guard is not None:  # before waiting for a slot; the transport checks again
                self._refuse_private_literal(url, progress.guard, progress.url)
            cookies_sent = progress.cookie_state()
            # Per host first, then global: feeds queued for a busy host must not sit on
            # global slots that other hosts could use.
            async with self._host_limit(url), self._global:
                # The clock runs only while we hold a slot: waiting for one is not the server's
                # fault, also not on a later hop (many feeds redirected to one busy host).
                if deadline is None:
                    progress.started = time.monotonic()
                    deadline = loop.time() + self._settings.total_timeout
                else:
                    waited = loop.time() - hop_ended
                    progress.started += waited
                    deadline += waited
                async with asyncio.timeout_at(deadline):
                    response = await self._send(url, validators, progress)
                    try:
                        if response.status_code not in REDIRECT_STATUSES:
                            return await self._finish(state, response, progress, now, bool(validators))
                        target = _redirect_target(response, progress.url)
                        if "set-cookie" in response.headers:  # for the next hop
                            progress.keep_cookies(response)
                    finally:
                        await response.aclose()
            hop_ended = loop.time()
            progress.visited.add((progress.url, cookies_sent))
            progress.guard = self._public_origin(response.status_code, progress)

            if progress.temporary_redirect is None:  # every hop so far was a 301/308
                if response.status_code in PERMANENT_REDIRECT_STATUSES:
                    progress.permanent_redirect = target
                else:
                    progress.temporary_redirect = (response.status_code, progress.url)
            if (target, progress.cookie_state()) in progress.visited:
                raise _Failed(
                    f"redirect loop: {' -> '.join([*progress.chain, target])}: {_SEE_WHERE_IT_WENT}"
                )
            progress.chain.append(target)
            if len(progress.chain) - 1 > self._settings.max_redirects:
                raise _Failed(
                    f"too many redirects (more than {self._settings.max_redirects}): "
                    f"{' -> '.join(progress.chain)}: {_SEE_WHERE_IT_WENT}"
                )

    async def _finish(
        self,
        state: FeedState,
        response: httpx.Response,
        progress: _Progress,
        now: datetime,
        conditional: bool,
    ) -> FetchResult:
        """Turn the last response of the redirect chain into a FetchResult."""
        code = response.status_code
        url = progress.url
        headers = dict(response.headers.items())  # lower-cased names, repeated headers joined
        # A date cannot be joined like ETags can: of two Last-Modified, send back the first.
        modified = response.headers.get_list("last-modified")
        if code == 304 and not conditional:
            # Not modified since *what*?  Taken as NOT_MODIFIED, a feed never polled would never
            # get a body, and the weekly unconditional fetch would never count as done.
            raise _Failed(
                f"{url} answered 304 Not Modified to a request without validators: the server or a "
                "proxy in between is misconfigured; will retry later",
                http_status=code,
                headers=headers,
            )
        # 200 and 203 (from a proxy) carry the feed; 204 carries none and a 206 only part of
        # it (nothing asked for a range): those, and the other 2xx, are errors to retry.
        if code in (200, 203, 304):
            body = await self._read_body(response, url) if code != 304 else None
            return FetchResult(
                url=state.url,
                requested_url=progress.chain[0],
                final_url=url,
                status=FeedStatus.NOT_MODIFIED if code == 304 else FeedStatus.OK,
                fetched_at=now,
                http_status=code,
                body=body,
                headers=headers,
                etag=_clean_validator(headers.get("etag")),
                last_modified=_last_modified(modified, headers, now),
                conditional=conditional,
                permanent_redirect=progress.permanent_redirect,
                cache_max_age=_cache_max_age(headers, now),
                elapsed=_elapsed(progress),
            )
        retry_after = _retry_after(headers, now) if code in (429, 503) else None
        if code == 410 and progress.temporary_redirect is not None:
            # A temporary redirect says the feed's address is still the URL that sent it:
            # where it points today being gone ends nothing.  Backoff, not retirement.
            raise _Failed(
                _describe_gone_for_now(url, *progress.temporary_redirect), http_status=code, headers=headers
            )
        raise _Failed(
            _describe_status(code, url),
            status=FeedStatus.RETIRED if code == 410 else FeedStatus.ERROR,
            http_status=code,
            retry_after=retry_after,
            headers=headers,
        )

    async def _read_body(self, response: httpx.Response, url: str) -> bytes:
        limit = self._settings.max_bytes
        length = response.headers.get("content-length", "").strip()
        if length.isdigit() and int(length) > limit:
            raise _Failed(
                f"response larger than {_size(limit)} at {url}: "
                f"Content-Length is {int(length)} bytes, not downloaded; {_RAISE_THE_CAP}",
                http_status=response.status_code,
            )
        too_large = _too_large(limit, url, response.status_code)
        chunks: list[bytes] = []
        total = 0
        async for data in self._decoded(response, url, too_large):
            total += len(data)
            if total > limit:
                raise too_large
            chunks.append(data)
        return b"".join(chunks)

    async def _decoded(self, response: httpx.Response, url: str, too_large: _Failed) -> AsyncIterator[bytes]:
        """The body, decoded, in pieces of at most ``_Inflater.PIECE`` bytes for gzip and deflate."""
        encoding = response.headers.get("content-encoding", "").strip().lower()
        if not encoding:  # the common case, as cheap as it can be
            async for raw in response.aiter_raw():
                yield raw
            return
        codings = _content_codings(encoding, url)
        if codings is None:
            # A coding we do not inflate ourselves (br when installed), or one that compresses
            # nothing ("none", "utf-8": misconfigured servers): httpx decodes or passes it on.
            async for data in response.aiter_bytes():
                yield data
            return
        # Applied in the order listed, so undone in reverse; each held to the cap, since an
        # outer layer's output is an inner one's input and costs as much to make.
        inflaters = [_Inflater(c, url, self._settings.max_bytes, too_large) for c in reversed(codings)]
        async for raw in response.aiter_raw():
            for data in _inflate(inflaters, raw):
                yield data
        for data in _flush(inflaters):
            yield data

    def _host_limit(self, url: httpx.URL) -> asyncio.Semaphore:
        key = _host_key(url)
        host = self._hosts.get(key)
        if host is None:
            host = self._hosts[key] = asyncio.Semaphore(self._settings.per_host)
        return host

    async def _send(
        self, url: httpx.URL, validators: Mapping[str, str], progress: _Progress
    ) -> httpx.Response:
        """One hop's request, sent; the response remembers which address answered it.

        A hop held to public addresses (``progress.guard``) that would connect to a private
        one is refused by the transport before anything is sent: ``_Failed`` says so.
        """
        guard = progress.guard
        request = self._request(url, validators, public_only=guard is not None)
        if progress.cookies:
            progress.cookies.set_cookie_header(request)
        try:
            response = await self._client.send(request, stream=True)
        except httpx.ConnectError as exc:
            if guard is not None and (refused := _private_address_refused(exc)) is not None:
                raise _refusal(guard, progress.url, refused) from exc
            raise
        progress.peer = response.extensions.get(PEER_ADDRESS)
        return response

    def _refuse_private_literal(self, url: httpx.URL, guard: _PublicOrigin, target: str) -> None:
        """A hop held to public addresses to an IP address that is private fails here, with
        any transport (the aiohttp one checks names at connect time, others cannot)."""
        refused = refused_literal(url.host, self._settings.address_is_global)
        if refused is not None:
            raise _refusal(guard, target, refused)

    def _public_origin(self, code: int, progress: _Progress) -> _PublicOrigin | None:
        """For the hop after a redirect: whether the server that sent it is at a public address.

        Judged by the address connected to, not by the host name (which could resolve
        anywhere).  Unknown when the transport does not say (a proxy from the environment,
        another transport): then the next hop is not held.
        """
        peer = progress.peer
        if peer is None or not self._settings.address_is_global(peer):
            return None
        why = "redirected from a public address to a private one"
        return _PublicOrigin(f"redirect (HTTP {code}) from {progress.url}", why, code)

    def _request(
        self, url: httpx.URL, validators: Mapping[str, str], *, public_only: bool = False
    ) -> httpx.Request:
        """The GET of one hop: the client's headers with ``validators``, and its timeouts.

        Not ``client.build_request``, which also merges the client's base URL, query
        parameters and cookies: a feed URL is absolute, and each fetch keeps cookies of its
        own (``_Progress``).  Merging nothing was about a tenth of the CPU of a fetch
        answered 304.
        """
        headers = self._client.headers.copy()
        if validators:
            headers.update(validators)
        extensions: dict[str, Any] = {"timeout": self._client.timeout.as_dict()}
        if public_only:
            extensions[PUBLIC_ONLY] = self._settings.address_is_global
        return httpx.Request("GET", url, headers=headers, extensions=extensions)

    # -- files --------------------------------------------------------------------------

    async def _fetch_file(
        self, state: FeedState, location: str, now: datetime, *, conditional: bool
    ) -> FetchResult:
        parts = urlsplit(location)
        if parts.netloc not in ("", "localhost"):
            raise _Failed(f"unsupported file URL {location!r}: only local files (file:///path)")
        path = Path(url2pathname(parts.path))
        if "\0" in str(path):  # from "%00": os.stat would raise ValueError, no OSError
            raise _Failed(
                f"not a valid file path: {location!r}: it contains a NUL character; fix it in feeds.yaml"
            )
        started = time.monotonic()
        async with self._global:
            # Reading can block (network file systems): keep it off the event loop, and stop
            # waiting at the total time limit, as for a server that never finishes.
            limit = self._settings.total_timeout
            try:
                async with asyncio.timeout(limit):
                    return await _in_daemon_thread(
                        lambda: self._read_file(
                            state, location, path, now=now, conditional=conditional, started=started
                        ),
                        name=f"aggregator: read {path}",
                        key=str(path),
                    )
            except _StillReading:
                raise _Failed(
                    f"an earlier read of file {path} has not returned yet: the file system does not "
                    "answer (is it on a network mount that is down?); not read again until it does"
                ) from None
            except TimeoutError:
                raise _Failed(
                    f"timed out after {_seconds(limit)} reading file {path}: the file system did not "
                    "answer (total time limit for one fetch); is it on a network mount that is down?"
                ) from None

    def _read_file(
        self,
        state: FeedState,
        location: str,
        path: Path,
        *,
        now: datetime,
        conditional: bool,
        started: float,
    ) -> FetchResult:
        limit = self._settings.max_bytes
        try:
            stat = path.stat()
            if not path.is_file():
                raise _Failed(f"not a file: {path}")
            # The ETag has nanosecond mtime and size: Last-Modified alone has one-second
            # resolution and would miss a quick second edit.
            etag = f'"{stat.st_mtime_ns:x}-{stat.st_size:x}"'
            last_modified = format_datetime(datetime.fromtimestamp(int(stat.st_mtime), UTC), usegmt=True)
            headers = {"etag": etag, "last-modified": last_modified}
            content_type, _ = mimetypes.guess_type(path.name)
            if content_type:
                headers["content-type"] = content_type
            sent = conditional and bool(state.etag or state.last_modified)
            unchanged = state.etag == etag if state.etag else state.last_modified == last_modified
            if sent and unchanged:
                return FetchResult(
                    url=state.url,
                    requested_url=location,
                    final_url=location,
                    status=FeedStatus.NOT_MODIFIED,
                    fetched_at=now,
                    headers=headers,
                    etag=etag,
                    last_modified=last_modified,
                    conditional=True,
                    elapsed=timedelta(seconds=time.monotonic() - started),
                )
            if stat.st_size > limit:
                raise _Failed(f"file larger than {_size(limit)}: {path}: not read; {_RAISE_THE_CAP}")
            with path.open("rb") as file:
                body = file.read(limit + 1)
        except FileNotFoundError as exc:
            raise _Failed(
                f"file not found: {path}: fix the path in feeds.yaml (a relative path is taken from "
                "the folder feeds.yaml is in)"
            ) from exc
        except PermissionError as exc:
            raise _Failed(f"cannot read file: {path}: permission denied") from exc
        except OSError as exc:
            raise _Failed(f"cannot read file: {path}: {exc.strerror or exc}") from exc
        if len(body) > limit:  # it grew since stat()
            raise _Failed(f"file larger than {_size(limit)}: {path}: stopped reading; {_RAISE_THE_CAP}")
        headers["content-length"] = str(len(body))
        return FetchResult(
            url=state.url,
            requested_url=location,
            final_url=location,
            status=FeedStatus.OK,
            fetched_at=now,
            body=body,
            headers=headers,
            etag=etag,
            last_modified=last_modified,
            conditional=sent,
            elapsed=timedelta(seconds=time.monotonic() - started),
        )

    # -- results ------------------------------------------------------------------------

    def _failed(
        self,
        state: FeedState,
        location: str,
        progress: _Progress,
        now: datetime,
        failure: _Failed,
        *,
        conditional: bool,
    ) -> FetchResult:
        return FetchResult(
            url=state.url,
            requested_url=location,
            final_url=progress.url,
            status=failure.status,
            fetched_at=now,
            http_status=failure.http_status,
            headers=failure.headers,
            error=without_password(failure.message),
            conditional=conditional and bool(state.etag or state.last_modified),
            permanent_redirect=progress.permanent_redirect,
            retry_after=failure.retry_after,
            elapsed=_elapsed(progress),
        )


class _StillReading(Exception):
    """A thread left behind by an earlier fetch still reads the same file."""


# The files whose reading thread has not returned (see _in_daemon_thread): a long-running
# scheduler polling a feed on a dead mount would otherwise leave one more blocked thread
# behind at every poll, for days.
_READING: set[str] = set()
_READING_LOCK = threading.Lock()


async def _in_daemon_thread(work: Callable[[], FetchResult], *, name: str, key: str) -> FetchResult:
    """``work()`` run in a daemon thread of its own; its result, or its exception, awaited.

    Not ``asyncio.to_thread``: a read that never returns (a hung network mount) would hold
    a worker of the loop's default executor for good, the one the store's work shares, and
    ``asyncio.run`` waits for those workers before it returns, so the command would hang at
    its end instead.  A daemon thread is left behind when the caller stops waiting (it cannot
    be killed) and does not hold up the exit; what it produces after that goes nowhere: the
    future is cancelled by then, or its loop closed.  While one left behind for ``key`` (a
    file) still runs, ``_StillReading`` is raised instead of starting another.
    """
    with _READING_LOCK:
        if key in _READING:
            raise _StillReading(key)
        _READING.add(key)
    loop = asyncio.get_running_loop()
    future: asyncio.Future[FetchResult] = loop.create_future()

    def deliver(settle: Callable[[], None]) -> None:  # in the loop
        if not future.done():  # done is cancelled: the caller stopped waiting
            settle()

    def run() -> None:  # in the thread
        settle: Callable[[], None]
        try:
            settle = functools.partial(future.set_result, work())
        except BaseException as exc:  # handed to the caller, as to_thread does
            settle = functools.partial(future.set_exception, exc)
        finally:
            with _READING_LOCK:
                _READING.discard(key)
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
            loop.call_soon_threadsafe(deliver, settle)

    try:
        threading.Thread(target=run, name=name, daemon=True).start()
    except BaseException:  # no thread (the process is at its limit): nothing reads the file
        with _READING_LOCK:
            _READING.discard(key)
        raise
    return await future


async def fetch_feeds(fetcher: Fetcher, jobs: Iterable[FetchJob], now: datetime) -> list[FetchResult]:
    """Fetch every job concurrently (within the fetcher's limits); results in the jobs' order.

    To handle results as they arrive instead (and not hold every body at once), call
    ``fetcher.fetch`` from tasks of your own: the limits live in the Fetcher.
    """
    async with asyncio.TaskGroup() as group:
        tasks = [
            group.create_task(fetcher.fetch(job.state, job.location, now, unconditional=job.unconditional))
            for job in jobs
        ]
    return [task.result() for task in tasks]


class _Inflater:
    """One gzip or deflate layer of a body, inflated in bounded pieces (zlib's ``max_length``).

    httpx's own decoders inflate a whole network read at once: 64 KiB of gzipped zeros
    is 64 MiB in one allocation.  Here no piece is larger than ``PIECE``, and a layer
    that has put out more than ``limit`` bytes raises ``too_large``, so the caller holds
    at most the cap plus one piece, however many layers are stacked.

    A gzip body may hold several members one after the other (RFC 1952: ``gzip -c a b``,
    streaming compressors): each is inflated in turn, after any zero padding, as Python's
    ``gzip`` module does; it used to stop after the first and store a truncated feed.
    Bytes after the last member that do not begin another are ignored, as they always
    were.  "deflate" is meant to be zlib-wrapped, but many servers send raw deflate: the
    first two bytes say which, so they are held until both have come (a network read can
    be one byte long).
    """

    CODINGS = frozenset({"identity", "gzip", "x-gzip", "deflate"})
    PIECE = 64 * 1024
    _GZIP_MAGIC = b"\x1f\x8b"

    def __init__(self, coding: str, url: str, limit: int, too_large: _Failed) -> None:
        self._coding = coding
        self._url = url
        self._limit = limit
        self._too_large = too_large
        self._inflated = 0
        # None before the first bytes, and between two gzip members.
        self._zlib: zlib._Decompress | None = None
        self._held = b""  # bytes too few yet to tell what comes
        self._started = 0  # gzip members (or the one deflate stream) begun
        self._ended = False  # past the end of the compressed data: the rest is ignored

    def decode(self, data: bytes) -> Iterator[bytes]:
        pending = self._held + data
        self._held = b""
        while pending and not self._ended:
            if self._zlib is None:
                pending = self._begin(pending)
                if self._zlib is None:  # too few bytes to tell yet, or the end
                    self._held = pending
                    return
            try:
                out = self._zlib.decompress(pending, self.PIECE)
            except zlib.error as exc:
                raise self._broken(exc) from exc
            if self._zlib.eof:
                pending = self._zlib.unused_data  # another gzip member, padding, or trailing bytes
                self._zlib = None
            else:
                # Input left over because the piece was full; an empty tail means all consumed.
                pending = self._zlib.unconsumed_tail
            if out:
                yield self._counted(out)

    def flush(self) -> bytes:
        if self._zlib is None:
            if self._held and self._coding == "deflate":  # a single byte of deflate
                raise self._cut_off()
            return b""  # nothing came, or the body ended after a whole gzip member
        try:
            tail = self._zlib.flush()
        except zlib.error as exc:
            raise self._broken(exc) from exc
        if not self._zlib.eof:
            # Cut off in transfer (no Content-Length to tell): storing what came would keep
            # the rest of the feed out until the validators change.
            raise self._cut_off()
        return self._counted(tail)

    def _begin(self, data: bytes) -> bytes:
        """Start the decompressor ``data`` asks for; without one, ``data`` is to be held or dropped."""
        if self._coding == "deflate":
            if self._started:  # one stream per body: what follows it was always ignored
                self._ended = True
                return b""
            if len(data) < 2:
                return data
            # RFC 1950: compression method 8, and the first two bytes a multiple of 31.  Raw
            # deflate passes this only if it begins with a non-final stored block, 1 in 31.
            zlib_wrapped = (data[0] & 0x0F) == 8 and ((data[0] << 8) | data[1]) % 31 == 0
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS if zlib_wrapped else -zlib.MAX_WBITS)
        elif not self._started:
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)  # zlib itself says if it is no gzip
        else:
            data = data.lstrip(b"\0")
            if len(data) < 2:
                return data
            if not data.startswith(self._GZIP_MAGIC):
                self._ended = True
                return b""
            self._zlib = zlib.decompressobj(zlib.MAX_WBITS | 16)
        self._started += 1
        return data

    def _counted(self, out: bytes) -> bytes:
        self._inflated += len(out)
        if self._inflated > self._limit:
            raise self._too_large
        return out

    def _broken(self, exc: zlib.error) -> _Failed:
        return _Failed(f"cannot decompress the {self._coding} response from {self._url}: {exc}")

    def _cut_off(self) -> _Failed:
        return _Failed(
            f"the {self._coding} response from {self._url} ended before its compressed data "
            "did: it was cut off on the way; the next poll tries again"
        )


def _inflate(inflaters: list[_Inflater], data: bytes, start: int = 0) -> Iterator[bytes]:
    """``data`` through ``inflaters[start:]``, the outermost coding first."""
    if start == len(inflaters):
        if data:
            yield data
        return
    for piece in inflaters[start].decode(data):
        yield from _inflate(inflaters, piece, start + 1)


def _flush(inflaters: list[_Inflater]) -> Iterator[bytes]:
    """What each inflater still holds at the end of the body, through the ones inside it."""
    for i, inflater in enumerate(inflaters):
        yield from _inflate(inflaters, inflater.flush(), i + 1)


# -- small pure helpers ---------------------------------------------------------------------


# What to do about a response over the size cap, and about redirects that lead nowhere.
_RAISE_THE_CAP = "if the feed really is that large, raise polling.max_response_size in feeds.yaml"
_TRY_AGAIN = "the next poll tries again"
_NOT_A_WEB_SERVER = "is it a web server, and is it http or https? check the url in feeds.yaml"
_SEE_WHERE_IT_WENT = "open the url in a browser to see where the feed is now, and update it in feeds.yaml"


def _too_large(limit: int, url: str, http_status: int) -> _Failed:
    return _Failed(
        f"response larger than {_size(limit)} at {url}: stopped reading; {_RAISE_THE_CAP}",
        http_status=http_status,
    )


def _content_codings(encoding: str, url: str) -> list[str] | None:
    """The codings of a (lower-cased) Content-Encoding to inflate here, in the order applied;
    None when httpx is to handle it; ``_Failed`` when nobody can.

    Repeated Content-Encoding headers come joined (``gzip, gzip``), as a list does.
    """
    codings = [part.strip() for part in encoding.split(",") if part.strip()]
    if len(codings) > 1:
        # A token that names no compression ("utf-8", "none": misconfigured servers) changes
        # nothing, alone or in a stack; httpx skips it too.
        codings = [c for c in codings if c in _COMPRESSIONS or c in _Inflater.CODINGS] or ["identity"]
    unknown = [c for c in codings if c in _COMPRESSIONS and c not in _DECODABLE]
    if unknown:
        # httpx would pass such a body on as it came, and the parser would call it broken XML.
        named = ", ".join(c[:40] for c in unknown)
        raise _Failed(
            f"{url} sent the feed compressed as {named}, which was not asked for "
            f"(Accept-Encoding: {ACCEPT_ENCODING}) and cannot be decoded here; the site must fix "
            "its server"
        )
    if all(c in _Inflater.CODINGS for c in codings):
        return [c for c in codings if c != "identity"]
    if len(codings) == 1:
        return None
    # httpx would inflate the gzip layers of such a stack without a bound: a 1 KB body of
    # gzip in gzip took 1 GiB of memory.
    odd = next(c for c in codings if c not in _Inflater.CODINGS)
    raise _Failed(
        f"cannot decode the response from {url}: unsupported content coding {odd[:40]!r} in "
        f"Content-Encoding {encoding[:200]!r}: only gzip, deflate and identity can be stacked; "
        "the site must fix its server"
    )


def _redirect_target(response: httpx.Response, url: str) -> str:
    """Where a redirect from ``url`` leads, as an absolute http(s) URL; else ``_Failed`` naming
    the Location (not ``url``, which is fine: only the server's answer is wrong)."""
    location = response.headers.get("location", "").strip()
    code = response.status_code
    if not location:
        raise _Failed(f"redirect (HTTP {code}) without a Location header at {url}", http_status=code)
    try:
        base = httpx.URL(url)
        target = base.join(location).copy_with(fragment=None)
    except httpx.InvalidURL as exc:
        raise _unusable_location(code, url, location, str(exc)) from exc
    if target.scheme not in ("http", "https"):
        # Never let a web server point us at file:///etc/passwd or the like.
        raise _unusable_location(code, url, location, "only http and https are followed")
    if base.userinfo and not target.userinfo and _same_site(base, target):
        # A relative Location keeps the feed's credentials, an absolute one (most servers
        # write those) has none: the same site gets them either way, as from httpx or curl.
        target = target.copy_with(userinfo=base.userinfo)
    try:
        return str(_http_url(str(target)))
    except _Failed as exc:
        raise _unusable_location(code, url, location, exc.message) from exc


def _same_site(origin: httpx.URL, target: httpx.URL) -> bool:
    """Whether ``target`` may have ``origin``'s credentials: the same scheme, host and port,
    or the upgrade of http to https on the default ports (httpx's rule)."""
    if origin.host != target.host:
        return False
    if origin.scheme == target.scheme:
        return _port(origin) == _port(target)
    upgrade = origin.scheme == "http" and target.scheme == "https"
    return upgrade and (_port(origin), _port(target)) == (80, 443)


def _moved_to_another_host(state: FeedState, location: str) -> bool:
    """Whether ``location`` is the feed's adopted new address, on another host than the
    configured one (an http -> https move on the same host needs no holding: the host is
    the one the feed is configured at)."""
    if state.fetch_url is None or location != state.fetch_url or location == state.url:
        return False
    try:
        return httpx.URL(location).host != httpx.URL(state.url).host
    except httpx.InvalidURL:
        return True


def _moved_guard(configured: str) -> _PublicOrigin:
    return _PublicOrigin(
        f"the permanent redirect (moved) from {configured}",
        "the feed moved from a public address to a private one",
        moved=True,
    )


def _linked_from(page: str | None) -> _PublicOrigin | None:
    if page is None:
        return None
    return _PublicOrigin(f"feed link on {page}", "a page at a public address points to a private one")


def _private_address_refused(exc: Exception) -> PrivateAddressRefused | None:
    """The transport's refusal of a private address, if that is what ``exc`` is."""
    for cause in _causes(exc):
        if isinstance(cause, PrivateAddressRefused):
            return cause
    return None


def _refusal(origin: _PublicOrigin, target: str, refused: PrivateAddressRefused) -> _Failed:
    """The error for a hop from a public address to a private one: which hop, which address."""
    addresses = ", ".join(refused.addresses[:4]) + (", ..." if len(refused.addresses) > 4 else "")
    if not addresses:
        where = f"{refused.host} has no public address"
    elif literal_address(refused.host) is not None:
        where = addresses
    else:
        where = f"{refused.host} is at {addresses}"
    failure = _MovedToPrivate if origin.moved else _Failed
    return failure(
        f"{origin.hop} to {target} refused: {origin.why} ({where}); if this is intended, configure "
        "the private URL directly in feeds.yaml",
        http_status=origin.http_status,
    )


def _unusable_location(code: int, url: str, location: str, why: str) -> _Failed:
    shown = location if len(location) <= 200 else location[:200] + "..."
    return _Failed(
        f"redirect (HTTP {code}) from {url} to an unusable Location {shown!r}: {why}; {_SEE_WHERE_IT_WENT}",
        http_status=code,
    )


def _scheme(text: str) -> str:
    # http(s), nearly every feed, without urlsplit, which costs more.  A "[" (an IPv6 host)
    # still goes through it: its "Invalid IPv6 URL" is clearer than httpx's port complaint.
    if text.startswith(("http://", "https://")) and "[" not in text:
        return text[: text.index(":")]
    try:
        return urlsplit(text).scheme.lower()
    except ValueError as exc:  # e.g. "Invalid IPv6 URL"
        raise _Failed(f"not a valid URL: {text!r}: {exc}") from exc


def _http_url(text: str) -> httpx.URL:
    """``text`` as an http(s) URL we can connect to, or ``_Failed`` saying why not.

    httpx accepts some URLs that only fail deep in the socket layer (port 99999 raises
    OverflowError, not an httpx error), so they are checked here first.
    """
    try:
        url = httpx.URL(text)
    except httpx.InvalidURL as exc:
        raise _Failed(f"not a valid URL: {text!r}: {exc}") from exc
    if not url.host or any(c.isspace() or c in "%\\" for c in url.host):
        raise _Failed(f"not a valid URL: {text!r}: no usable host name")
    if url.port is not None and not 0 < url.port < 65536:
        raise _Failed(f"not a valid URL: {text!r}: port {url.port} is out of range")
    return url


def _describe_status(code: int, url: str) -> str:  # noqa: PLR0911
    # One sentence per case: a flat list reads better than a lookup table with holes.  No
    # time for a 429 or 503: polling decides when to come back (it caps a Retry-After, and
    # never comes back sooner than the interval after a 429) and says so in the state.
    phrase = _reason(code)
    if code == 404:
        return f"not found (HTTP 404) at {url}: check the url in feeds.yaml"
    if code == 410:
        return f"gone (HTTP 410) at {url}: the server says this feed was removed; remove it from feeds.yaml"
    if code in (401, 403):
        return (
            f"access denied (HTTP {code} {phrase}) at {url}: the server refuses feed readers or wants "
            "a login; check the url in feeds.yaml"
        )
    if code == 429:
        return f"rate limited (HTTP 429) at {url}: the server asks us to poll less often"
    if code == 503:
        return f"service unavailable (HTTP 503) at {url}: the server is down or overloaded"
    if 500 <= code < 600:
        return f"server error (HTTP {code} {phrase}) at {url}: a problem on the site's side; will retry later"
    if 400 <= code < 500:
        return f"request refused (HTTP {code} {phrase}) at {url}: check the url in feeds.yaml"
    if code == 206:
        return (
            f"partial content (HTTP 206) at {url}: part of the feed, though no part was asked for; "
            "will retry later"
        )
    if 200 <= code < 300:
        return f"no feed in the response (HTTP {code} {phrase}) at {url}: will retry later"
    return f"unexpected response (HTTP {code} {phrase}) at {url}: expected a feed"


def _describe_gone_for_now(url: str, redirect: int, origin: str) -> str:
    return (
        f"gone (HTTP 410) at {url}, reached through a temporary redirect (HTTP {redirect}) from "
        f"{origin}: the redirect keeps {origin} as the feed's address, so the feed is not retired; "
        "will retry later"
    )


def _reason(code: int) -> str:
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "unknown status"


def _describe_transport_error(  # noqa: PLR0911, PLR0912 -- one sentence per case, flat on purpose
    exc: Exception, url: str, settings: FetchSettings
) -> str:
    """A sentence for a failure below HTTP: DNS, refused, TLS, reset, httpx timeouts."""
    try:
        parsed = httpx.URL(url)
        host = _host_key(parsed)
    except httpx.InvalidURL:
        return f"not a valid URL: {url!r}: {exc}"
    detail = str(exc) or type(exc).__name__
    if isinstance(exc, httpx.InvalidURL | httpx.UnsupportedProtocol):
        return f"not a valid URL: {url!r}: {detail}"
    if isinstance(exc, httpx.ConnectTimeout):
        limit = _seconds(settings.connect_timeout)
        return f"cannot connect to {host}: no answer within {limit} (connect timeout)"
    if isinstance(exc, httpx.ReadTimeout):
        limit = _seconds(settings.read_timeout)
        return f"no data from {url} for {limit}: the server stopped sending (read timeout)"
    if isinstance(exc, httpx.TimeoutException):
        return f"timed out talking to {host} ({type(exc).__name__}) for {url}"
    if isinstance(exc, httpx.ConnectError):
        for cause in _causes(exc):
            if isinstance(cause, ssl.SSLCertVerificationError):
                # getattr: aiohttp's ClientConnectorCertificateError is an instance too, without them.
                why = getattr(cause, "verify_message", None) or getattr(cause, "reason", None) or cause
                return f"TLS certificate verify failed for {host}: {why}"
            if isinstance(cause, ssl.SSLError):
                return f"TLS handshake with {host} failed: {cause.reason or cause}"
            if isinstance(cause, ConnectionRefusedError):
                return f"connection refused by {host}: is the server running and is the port right?"
            if isinstance(cause, socket.gaierror):
                return f"cannot resolve host name {parsed.host!r}: check the url in feeds.yaml"
        return f"cannot connect to {host}: {detail}"
    if isinstance(exc, httpx.RemoteProtocolError):
        return _describe_bad_http(exc, host, url, detail)
    if isinstance(exc, httpx.ReadError | httpx.WriteError | httpx.CloseError):
        return f"connection to {host} lost while fetching {url}: {detail}"
    if isinstance(exc, httpx.DecodingError):
        return f"cannot decode the response from {url}: {detail}"
    if isinstance(exc, httpx.ProxyError):
        return f"proxy error for {url}: {detail}"
    return f"request to {url} failed: {type(exc).__name__}: {detail}"


def _describe_bad_http(exc: Exception, host: str, url: str, detail: str) -> str:
    """A sentence for aiohttp's parser refusing a response.

    Its own text reads "400, message='...'" (a code of aiohttp's, no status the server
    sent) and can run over several lines with a caret under the offending byte.
    """
    found = None
    for cause in _causes(exc):
        # aiohttp re-raises a parser error as a plain HttpProcessingError: the one under it says which.
        if isinstance(cause, aiohttp.http_exceptions.HttpProcessingError) and (
            found is None or type(found) is aiohttp.http_exceptions.HttpProcessingError
        ):
            found = cause
    if found is None:
        return f"bad HTTP from {host} for {url}: {detail}"
    # One line, without the caret lines, and not a whole 64 KiB header.
    lines = (line.strip() for line in found.message.splitlines())
    why = " ".join(line for line in lines if line.strip("^~ ")).rstrip(".")[:300]
    errors = aiohttp.http_exceptions
    if isinstance(found, errors.ContentLengthError | errors.TransferEncodingError):
        return f"the response from {url} ended early ({why}): it was cut off on the way; {_TRY_AGAIN}"
    if isinstance(found, errors.BadStatusLine):
        # A port that speaks something else, or TLS bytes on an http:// URL.
        return f"bad HTTP from {host} for {url}: {why}: {_NOT_A_WEB_SERVER}"
    return f"bad HTTP from {host} for {url}: {why}: the site must fix its server"


def _causes(exc: BaseException) -> Iterable[BaseException]:
    """``exc`` and everything chained to it, through exception groups (anyio's connect)."""
    seen: set[int] = set()
    stack: list[BaseException] = [exc]
    while stack:
        current = stack.pop()
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            stack.extend(current.exceptions)
        for chained in (current.__context__, current.__cause__):  # a stack: the cause comes out first
            if chained is not None:
                stack.append(chained)


def _port(url: httpx.URL) -> int:
    return url.port or (443 if url.scheme == "https" else 80)


def _host_key(url: httpx.URL) -> str:
    # An IPv6 address in brackets, as in a URL: "::1:8080" does not say where the port starts.
    host = f"[{url.host}]" if ":" in url.host else url.host
    return f"{host}:{_port(url)}"


def _validator_headers(state: FeedState) -> dict[str, str]:
    headers = {}
    if etag := _clean_validator(state.etag):
        headers["If-None-Match"] = etag
    if last_modified := _clean_validator(state.last_modified):
        headers["If-Modified-Since"] = last_modified
    return headers


def _clean_validator(value: str | None) -> str | None:
    """A header value safe to store and send back, or None (over-long, control characters)."""
    if value is None:
        return None
    value = value.strip()
    if not value or len(value) > _MAX_VALIDATOR_LENGTH or _UNSAFE_IN_HEADER.search(value):
        return None
    return value


def _last_modified(values: list[str], headers: Mapping[str, str], now: datetime) -> str | None:
    """The (first) Last-Modified to store and send back, or None when it is later than the
    response's Date (ours when it has none).

    RFC 9110 8.8.2.1 forbids such a date (a wrong clock, a post scheduled ahead).  Sent back
    as If-Modified-Since, it made servers that answer 304 to anything older (Django, Rails)
    hide every change until that day came.  One that is no date at all is kept: a server
    that compares the text as it is still understands it.
    """
    value = _clean_validator(values[0] if values else None)
    when = _parse_http_date(value)
    if when is not None and when > (_parse_http_date(headers.get("date")) or now):
        return None
    return value


def _parse_http_date(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        parsed = parsedate_to_datetime(value.strip())
        return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)
    except (TypeError, ValueError, IndexError, OverflowError):  # year 9999 at -01:00 is past datetime
        return None


def _delta_seconds(value: str) -> timedelta | None:
    if not _DELTA_SECONDS.fullmatch(value):
        return None
    return timedelta(seconds=_MAX_HEADER_SECONDS if len(value) > 10 else min(int(value), _MAX_HEADER_SECONDS))


def _retry_after(headers: Mapping[str, str], now: datetime) -> datetime | None:
    """Retry-After as an absolute time on *our* clock.

    A date is taken relative to the response's Date header when there is one, so that a
    server whose clock is off still gets the delay it meant.  Not capped here: polling caps.
    """
    value = headers.get("retry-after", "").strip()
    if not value:
        return None
    if (delta := _delta_seconds(value)) is not None:
        return now + delta
    when = _parse_http_date(value)
    if when is None:
        return None
    server_now = _parse_http_date(headers.get("date")) or now
    return now + min(max(when - server_now, timedelta(0)), timedelta(seconds=_MAX_HEADER_SECONDS))


def _cache_max_age(headers: Mapping[str, str], now: datetime) -> timedelta | None:
    """How much longer the server says the response stays fresh: its freshness lifetime
    (Cache-Control max-age, else Expires - Date) less its Age, never below zero.  None when
    it says nothing.

    The Age counts (RFC 9111 4.2.3): a CDN's copy with ``max-age=600`` and ``Age: 590`` is
    fresh for 10 more seconds, not 600.  An Age that is no delta-seconds is ignored.

    Not s-maxage: it is for shared caches (CDNs), which a site purges when it publishes;
    Next.js sends ``s-maxage=31536000`` for a page built once, and taken as ours it held
    such feeds to one poll a week.
    """
    directives: dict[str, str] = {}
    for part in headers.get("cache-control", "").split(","):
        name, _, value = part.partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    lifetime = _delta_seconds(directives.get("max-age", ""))
    if lifetime is None:
        if "expires" not in headers:
            return None
        expires = _parse_http_date(headers["expires"])
        if expires is None:
            lifetime = timedelta(0)  # RFC 9111: an invalid Expires ("0", "-1") means already expired
        else:
            date = _parse_http_date(headers.get("date")) or now
            lifetime = min(max(expires - date, timedelta(0)), timedelta(seconds=_MAX_HEADER_SECONDS))
    if "age" in headers and (age := _delta_seconds(headers["age"].strip())) is not None:
        return max(lifetime - age, timedelta(0))
    return lifetime


def _elapsed(progress: _Progress) -> timedelta:
    return timedelta(seconds=time.monotonic() - progress.started)


def _size(n: int) -> str:
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= scale:
            return f"{n // scale} {unit}" if n % scale == 0 else f"{n / scale:.1f} {unit}"
    return f"{n} bytes"


def _seconds(value: float) -> str:
    return f"{value:g} s"
