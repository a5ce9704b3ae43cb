"""A real HTTP server on 127.0.0.1 (port 0) that serves feeds and misbehaves on demand.

It runs in a thread of the test process (``http.server.ThreadingHTTPServer``), starts in
milliseconds and stops in about 50 ms.  Use the ``feed_server`` fixture::

    pytest_plugins = ("tests.feedserver",)          # in a test module (or conftest.py)

    async def test_x(feed_server: FeedServer) -> None:
        url = feed_server.url("/feed.xml")
        ...
        assert feed_server.count("/feed.xml") == 2
        assert feed_server.last("/feed.xml").headers["if-none-match"] == FEED_ETAG

or ``with FeedServer() as server:`` anywhere.  Every request is recorded (path, query,
lower-cased headers); the server also counts bytes sent per path and the largest number of
requests in flight at once, overall and per Host header (``127.0.0.1:PORT`` and
``localhost:PORT`` reach the same server as two hosts).

Paths (``add_feed`` adds more, with ETag/Last-Modified and 304s like ``/feed.xml``):

==========================  ===============================================================
``/feed.xml``               RSS 2.0, ETag and Last-Modified; 304 on If-None-Match/If-Modified-Since
``/atom.xml``               Atom, same validators behaviour
``/gzip.xml``               the RSS gzip-encoded; ``/deflate.xml`` zlib, ``/raw-deflate.xml`` raw deflate
``/wrong-type``             the RSS served as ``text/html``
``/page.html``              an HTML page (with a ``<link rel="alternate">``) instead of a feed
``/big-feed.xml``           a valid 5 MB RSS feed
``/cached``                 RSS with ``Cache-Control: max-age=7200``
``/expires``                RSS with ``Date`` and ``Expires`` three hours later
``/slow?delay=S``           RSS after sleeping S seconds (default 0.2): for concurrency limits
``/trickle``                200, Content-Length 1 MB, then one byte every ``trickle_interval`` s
``/endless``                200, no length, 64 KiB chunks until the client gives up
``/gzip-bomb``              ~50 KB of gzip that inflates to 50 MB of zeros
``/big-length``             ``Content-Length: 104857600``, then a trickle
``/moved``                  301 to ``/feed.xml``; ``/moved-308`` is the same with 308
``/temporary``              302 to ``/feed.xml``
``/moved-then-temporary``   301 to ``/temporary``
``/moved-to-missing``       301 to ``/missing``
``/redirect-loop``          302 to ``/redirect-loop-2``, which 302s back
``/redirect-chain/N``       N 302s in a row, then ``/feed.xml``
``/redirect-to-file``       302 to ``file:///etc/passwd``
``/missing`` (and unknown)  404
``/gone``                   410
``/rate-limited``           429 with ``Retry-After: 120``
``/unavailable``            503 with ``Retry-After`` an HTTP date one hour after its ``Date``
``/error``                  500
``/hang-up``                closes the connection without answering
``/cookie-gate``            302 to ``/cookie-gate/feed`` with ``Set-Cookie``, which serves RSS
                            only to a request that sends that cookie (403 otherwise)
``/gzip-members.xml``       the RSS gzip-encoded in two members, one after the other
``/raw-deflate-split.xml``  the RSS raw deflate, its first byte alone, then the rest 50 ms later
``/gzip-gzip-bomb``         the gzip bomb gzipped again (~1 KB), ``Content-Encoding: gzip, gzip``;
                            ``/gzip-twice-bomb`` the same in two Content-Encoding headers;
                            ``/identity-gzip-bomb`` the gzip bomb as ``identity, gzip``
``/private.xml``            RSS for Basic auth ``reader:s3cret`` (``PRIVATE_USER``), else 401
``/always-304``             304 Not Modified, validators or not
``/redirect-to-data``       302 to ``data:text/xml,<rss/>``; ``/redirect-to-mailto`` to a
                            ``mailto:``, ``/redirect-to-broken`` to ``http://[::1/x``
``/cut-short``              200 with a Content-Length 100 bytes more than the RSS it sends, then
                            closes; ``/cut-chunked`` the RSS chunked, closed before the last chunk
``/not-http``               answers with a line that is no HTTP status line
==========================  ===============================================================

``FeedServer(address="127.0.0.2")`` listens on another loopback address, a second machine
as far as the client can tell (the ``public_feed_server`` fixture is one, on
``PRETEND_PUBLIC_ADDRESS``, for tests that declare that address public).

PYTEST_DONT_REWRITE: test modules import this module before pytest loads it as a plugin,
too late for assertion rewriting; that marker keeps pytest from warning about it.
"""

from __future__ import annotations

import base64
import functools
import gzip
import socket
import ssl
import sys
import threading
import time
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.utils import formatdate, parsedate_to_datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

FEED_ETAG = '"feed-v1"'
FEED_LAST_MODIFIED = "Mon, 18 Aug 2025 10:00:00 GMT"
RSS_TYPE = "application/rss+xml; charset=utf-8"
GZIP_BOMB_SIZE = 50 * 1024 * 1024
BIG_FEED_SIZE = 5 * 1024 * 1024
CLAIMED_LENGTH = 100 * 1024 * 1024
PRIVATE_USER = "reader:s3cret"  # user:password that /private.xml wants

RSS = b"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0">
  <channel>
    <title>Loopback News</title>
    <link>http://127.0.0.1/</link>
    <description>A feed served by the test server</description>
    <ttl>60</ttl>
    <item>
      <title>First story</title>
      <link>http://127.0.0.1/first</link>
      <guid>http://127.0.0.1/first</guid>
      <pubDate>Mon, 18 Aug 2025 09:00:00 GMT</pubDate>
      <description>Something happened.</description>
    </item>
  </channel>
</rss>
"""

ATOM = b"""<?xml version="1.0" encoding="utf-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title>Loopback Atom</title>
  <id>urn:uuid:60a76c80-d399-11d9-b93C-0003939e0af6</id>
  <updated>2025-08-18T10:00:00Z</updated>
  <entry>
    <title>First entry</title>
    <id>urn:uuid:1225c695-cfb8-4ebb-aaaa-80da344efa6a</id>
    <updated>2025-08-18T09:00:00Z</updated>
    <link href="http://127.0.0.1/entry"/>
  </entry>
</feed>
"""

HTML_PAGE = b"""<!doctype html>
<html><head><title>Loopback News</title>
<link rel="alternate" type="application/rss+xml" title="RSS" href="/feed.xml">
</head><body><h1>Loopback News</h1><p>Not a feed.</p></body></html>
"""


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    method: str
    path: str  # without the query
    query: str
    headers: dict[str, str]  # lower-cased names


@dataclass(slots=True)
class Resource:
    """A document with validators: 304 when the request's validators match."""

    body: bytes
    content_type: str = RSS_TYPE
    etag: str | None = None
    last_modified: str | None = None
    headers: dict[str, str] = field(default_factory=dict)


@functools.cache
def gzip_bomb() -> bytes:
    """50 MB of zeros, gzipped (~50 KB).  Built in 1 MiB pieces so building it costs no 50 MB."""
    packer = zlib.compressobj(9, zlib.DEFLATED, zlib.MAX_WBITS | 16)
    zeros = bytes(1024 * 1024)
    parts = [packer.compress(zeros) for _ in range(GZIP_BOMB_SIZE // len(zeros))]
    parts.append(packer.flush())
    return b"".join(parts)


@functools.cache
def gzip_gzip_bomb() -> bytes:
    """The gzip bomb gzipped once more: about 1 KB that inflates to 50 KB, then to 50 MB."""
    return gzip.compress(gzip_bomb())


def _raw_deflate(data: bytes) -> bytes:
    """Deflate without the zlib wrapper: wrong for "Content-Encoding: deflate", and common."""
    packer = zlib.compressobj(wbits=-zlib.MAX_WBITS)
    return packer.compress(data) + packer.flush()


@functools.cache
def big_feed() -> bytes:
    """A valid RSS document of about 5 MB."""
    head, tail = RSS.split(b"  </channel>")
    items = []
    size = len(RSS)
    n = 0
    while size < BIG_FEED_SIZE:
        item = (
            f"    <item><title>Story {n}</title><link>http://127.0.0.1/s/{n}</link>"
            f"<guid>http://127.0.0.1/s/{n}</guid><description>{'lorem ipsum ' * 40}</description></item>\n"
        ).encode()
        items.append(item)
        size += len(item)
        n += 1
    return head + b"".join(items) + b"  </channel>" + tail


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, like real servers
    timeout = 5  # an idle keep-alive connection does not hold a thread for long
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: tests assert on recorded requests, not on stderr."""

    def do_GET(self) -> None:
        owner = self.server.owner
        parts = urlsplit(self.path)
        request = RecordedRequest(
            method=self.command,
            path=parts.path,
            query=parts.query,
            headers={k.lower(): v for k, v in self.headers.items()},
        )
        host = request.headers.get("host", "")
        owner._begin(request, host)
        try:
            owner._dispatch(self, request)
        except (ConnectionError, TimeoutError, ssl.SSLError):
            # The client gave up (size cap, timeout): exactly what many tests provoke.
            self.close_connection = True
        finally:
            owner._end(host)

    # -- writing, with bytes counted per path ---------------------------------------------

    def write(self, path: str, data: bytes) -> None:
        self.wfile.write(data)
        self.wfile.flush()
        self.server.owner._sent(path, len(data))

    def respond(
        self,
        request: RecordedRequest,
        status: int,
        body: bytes = b"",
        headers: dict[str, str] | None = None,
        *,
        date: str | None = None,
    ) -> None:
        self.send_response_only(status)
        self.send_header("Date", date or formatdate(usegmt=True))
        self.send_header("Server", "feedserver")
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if status != 304:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.server.owner._sent(request.path, 0)
        if body and status != 304:
            self.write(request.path, body)


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a trickling handler must not keep the test process alive
    owner: FeedServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up is normal here; anything else is still reported."""
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError | ssl.SSLError):
            super().handle_error(request, client_address)


class FeedServer:
    """The loopback server.  ``start()``/``stop()`` or use it as a context manager."""

    def __init__(
        self,
        *,
        trickle_interval: float = 0.05,
        ssl_context: ssl.SSLContext | None = None,
        address: str = "127.0.0.1",
    ) -> None:
        self.trickle_interval = trickle_interval
        # Where to listen: another loopback address (127.0.0.2) stands in for a second
        # machine, e.g. one a test declares to be on the public internet.
        self.address = address
        self.resources: dict[str, Resource] = {
            "/feed.xml": Resource(RSS, etag=FEED_ETAG, last_modified=FEED_LAST_MODIFIED),
            "/atom.xml": Resource(
                ATOM, "application/atom+xml", etag='"atom-v1"', last_modified=FEED_LAST_MODIFIED
            ),
            "/wrong-type": Resource(RSS, "text/html; charset=utf-8"),
            "/page.html": Resource(HTML_PAGE, "text/html; charset=utf-8"),
            "/cached": Resource(RSS, headers={"Cache-Control": "public, max-age=7200"}),
            "/gzip.xml": Resource(gzip.compress(RSS), headers={"Content-Encoding": "gzip"}),
            "/deflate.xml": Resource(zlib.compress(RSS), headers={"Content-Encoding": "deflate"}),
            "/raw-deflate.xml": Resource(_raw_deflate(RSS), headers={"Content-Encoding": "deflate"}),
            "/gzip-members.xml": Resource(
                gzip.compress(RSS[:200]) + gzip.compress(RSS[200:]), headers={"Content-Encoding": "gzip"}
            ),
        }
        self.redirects: dict[str, tuple[int, str]] = {
            "/moved": (301, "/feed.xml"),
            "/moved-308": (308, "/feed.xml"),
            "/temporary": (302, "/feed.xml"),
            "/moved-then-temporary": (301, "/temporary"),
            "/moved-to-missing": (301, "/missing"),
            "/redirect-loop": (302, "/redirect-loop-2"),
            "/redirect-loop-2": (302, "/redirect-loop"),
            "/redirect-to-file": (302, "file:///etc/passwd"),
            "/redirect-to-data": (302, "data:text/xml,<rss/>"),
            "/redirect-to-mailto": (302, "mailto:feeds@example.org"),
            "/redirect-to-broken": (302, "http://[::1/x"),
        }
        self._specials: dict[str, Callable[[_Handler, RecordedRequest], None]] = {
            "/big-feed.xml": self._big_feed,
            "/expires": self._expires,
            "/slow": self._slow,
            "/trickle": self._trickle,
            "/endless": self._endless,
            "/gzip-bomb": self._gzip_bomb,
            "/big-length": self._big_length,
            "/gone": lambda h, r: h.respond(r, 410, b"gone", {"Content-Type": "text/plain"}),
            "/rate-limited": lambda h, r: h.respond(r, 429, b"slow down", {"Retry-After": "120"}),
            "/unavailable": self._unavailable,
            "/error": lambda h, r: h.respond(r, 500, b"oops", {"Content-Type": "text/plain"}),
            "/hang-up": self._hang_up,
            "/cookie-gate": self._cookie_gate,
            "/cookie-gate/feed": self._cookie_gated_feed,
            "/raw-deflate-split.xml": self._raw_deflate_split,
            "/gzip-gzip-bomb": self._stacked_gzip_bomb,
            "/gzip-twice-bomb": self._stacked_gzip_bomb,
            "/identity-gzip-bomb": self._stacked_gzip_bomb,
            "/private.xml": self._private,
            "/always-304": lambda h, r: h.respond(r, 304, b"", {"ETag": '"always"'}),
            "/cut-short": self._cut_short,
            "/cut-chunked": self._cut_short,
            "/not-http": self._not_http,
        }
        self._ssl_context = ssl_context
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._requests: list[RecordedRequest] = []
        self._bytes_sent: Counter[str] = Counter()
        self._in_flight: Counter[str] = Counter()
        self._max_in_flight: dict[str, int] = defaultdict(int)
        self._total_in_flight = 0
        self._max_total_in_flight = 0
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> FeedServer:
        httpd = _Server((self.address, 0), _Handler)
        httpd.owner = self
        if self._ssl_context is not None:
            httpd.socket = self._ssl_context.wrap_socket(httpd.socket, server_side=True)
        self._httpd = httpd
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="feedserver", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FeedServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- addresses ------------------------------------------------------------------------

    @property
    def port(self) -> int:
        assert self._httpd is not None, "FeedServer not started"
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{self.address}:{self.port}"

    def url(self, path: str, *, host: str | None = None) -> str:
        """The absolute URL of ``path``; ``host="localhost"`` reaches the same server as another host."""
        scheme = "https" if self._ssl_context else "http"
        return f"{scheme}://{host or self.address}:{self.port}{path}"

    # -- configuration --------------------------------------------------------------------

    def add_feed(
        self,
        path: str,
        body: bytes,
        *,
        content_type: str = RSS_TYPE,
        etag: str | None = None,
        last_modified: str | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        """Serve ``body`` at ``path`` (replacing what was there), with validators if given."""
        self.resources[path] = Resource(body, content_type, etag, last_modified, dict(headers or {}))

    # -- what happened --------------------------------------------------------------------

    def requests(self, path: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [r for r in self._requests if path is None or r.path == path]

    def count(self, path: str) -> int:
        return len(self.requests(path))

    def last(self, path: str) -> RecordedRequest:
        found = self.requests(path)
        assert found, f"no request to {path}"
        return found[-1]

    def bytes_sent(self, path: str) -> int:
        """Body and header bytes written for ``path`` (bodies only count what was accepted by the socket)."""
        with self._lock:
            return self._bytes_sent[path]

    def max_in_flight(self, host: str | None = None) -> int:
        """The most requests handled at once, overall or for one Host header ("127.0.0.1:PORT")."""
        with self._lock:
            return self._max_total_in_flight if host is None else self._max_in_flight[host]

    def host(self, name: str = "127.0.0.1") -> str:
        return f"{name}:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self._requests.clear()
            self._bytes_sent.clear()
            self._max_in_flight.clear()
            self._max_total_in_flight = 0

    # -- called from handler threads ------------------------------------------------------

    def _begin(self, request: RecordedRequest, host: str) -> None:
        with self._lock:
            self._requests.append(request)
            self._in_flight[host] += 1
            self._total_in_flight += 1
            self._max_in_flight[host] = max(self._max_in_flight[host], self._in_flight[host])
            self._max_total_in_flight = max(self._max_total_in_flight, self._total_in_flight)

    def _end(self, host: str) -> None:
        with self._lock:
            self._in_flight[host] -= 1
            self._total_in_flight -= 1

    def _sent(self, path: str, n: int) -> None:
        with self._lock:
            self._bytes_sent[path] += n

    def _dispatch(self, handler: _Handler, request: RecordedRequest) -> None:
        path = request.path
        if path in self.resources:
            self._serve(handler, request, self.resources[path])
        elif path in self.redirects:
            status, location = self.redirects[path]
            handler.respond(request, status, b"", {"Location": location})
        elif path.startswith("/redirect-chain/"):
            left = int(path.rsplit("/", 1)[1])
            location = f"/redirect-chain/{left - 1}" if left > 0 else "/feed.xml"
            handler.respond(request, 302, b"", {"Location": location})
        elif path in self._specials:
            self._specials[path](handler, request)
        else:
            handler.respond(request, 404, b"not found", {"Content-Type": "text/plain"})

    def _serve(self, handler: _Handler, request: RecordedRequest, resource: Resource) -> None:
        headers = {"Content-Type": resource.content_type, **resource.headers}
        if resource.etag:
            headers["ETag"] = resource.etag
        if resource.last_modified:
            headers["Last-Modified"] = resource.last_modified
        if _not_modified(request, resource):
            handler.respond(request, 304, b"", headers)
        else:
            handler.respond(request, 200, resource.body, headers)

    # -- misbehaviours --------------------------------------------------------------------

    def _big_feed(self, handler: _Handler, request: RecordedRequest) -> None:
        handler.respond(request, 200, big_feed(), {"Content-Type": RSS_TYPE})

    def _expires(self, handler: _Handler, request: RecordedRequest) -> None:
        now = time.time()
        expires = formatdate(now + 3 * 3600, usegmt=True)
        headers = {"Content-Type": RSS_TYPE, "Expires": expires}
        handler.respond(request, 200, RSS, headers, date=formatdate(now, usegmt=True))

    def _slow(self, handler: _Handler, request: RecordedRequest) -> None:
        delay = float(parse_qs(request.query).get("delay", ["0.2"])[0])
        self._stopping.wait(delay)
        handler.respond(request, 200, RSS, {"Content-Type": RSS_TYPE})

    def _cookie_gate(self, handler: _Handler, request: RecordedRequest) -> None:
        # As consent and anti-bot pages do: a cookie, then on to the feed, which wants it.
        headers = {
            "Location": "/cookie-gate/feed",
            "Set-Cookie": "gate=open; Path=/",
            "Content-Type": "text/plain",
        }
        handler.respond(request, 302, b"one moment", headers)

    def _cookie_gated_feed(self, handler: _Handler, request: RecordedRequest) -> None:
        if "gate=open" in request.headers.get("cookie", ""):
            handler.respond(request, 200, RSS, {"Content-Type": RSS_TYPE})
        else:
            handler.respond(request, 403, b"no cookie, no feed", {"Content-Type": "text/plain"})

    def _unavailable(self, handler: _Handler, request: RecordedRequest) -> None:
        now = int(time.time())
        headers = {"Retry-After": formatdate(now + 3600, usegmt=True), "Content-Type": "text/plain"}
        handler.respond(request, 503, b"down for maintenance", headers, date=formatdate(now, usegmt=True))

    def _drip(self, handler: _Handler, request: RecordedRequest, headers: dict[str, str]) -> None:
        """Send the headers, then one byte every ``trickle_interval`` until the client hangs up."""
        handler.send_response_only(200)
        for name, value in headers.items():
            handler.send_header(name, value)
        handler.end_headers()
        handler.close_connection = True
        while not self._stopping.wait(self.trickle_interval):
            handler.write(request.path, b" ")

    def _trickle(self, handler: _Handler, request: RecordedRequest) -> None:
        self._drip(handler, request, {"Content-Type": RSS_TYPE, "Content-Length": str(1024 * 1024)})

    def _big_length(self, handler: _Handler, request: RecordedRequest) -> None:
        self._drip(handler, request, {"Content-Type": RSS_TYPE, "Content-Length": str(CLAIMED_LENGTH)})

    def _endless(self, handler: _Handler, request: RecordedRequest) -> None:
        handler.send_response_only(200)
        handler.send_header("Content-Type", RSS_TYPE)
        handler.send_header("Connection", "close")  # no length: the body ends when we close
        handler.end_headers()
        handler.close_connection = True
        chunk = b"<item><title>again</title></item>\n" * 1900  # ~64 KiB
        while not self._stopping.is_set():
            handler.write(request.path, chunk)

    def _gzip_bomb(self, handler: _Handler, request: RecordedRequest) -> None:
        headers = {"Content-Type": RSS_TYPE, "Content-Encoding": "gzip"}
        handler.respond(request, 200, gzip_bomb(), headers)

    def _raw_deflate_split(self, handler: _Handler, request: RecordedRequest) -> None:
        # A network read can be one byte long: too short to tell zlib from raw deflate.
        body = _raw_deflate(RSS)
        handler.send_response_only(200)
        for name, value in (("Content-Type", RSS_TYPE), ("Content-Encoding", "deflate"),
                            ("Content-Length", str(len(body)))):  # fmt: skip
            handler.send_header(name, value)
        handler.end_headers()
        handler.write(request.path, body[:1])
        self._stopping.wait(0.05)
        handler.write(request.path, body[1:])

    def _stacked_gzip_bomb(self, handler: _Handler, request: RecordedRequest) -> None:
        codings = {
            "/gzip-gzip-bomb": [("Content-Encoding", "gzip, gzip")],
            "/gzip-twice-bomb": [("Content-Encoding", "gzip"), ("Content-Encoding", "gzip")],
            "/identity-gzip-bomb": [("Content-Encoding", "identity, gzip")],
        }[request.path]
        body = gzip_bomb() if request.path == "/identity-gzip-bomb" else gzip_gzip_bomb()
        handler.send_response_only(200)
        for name, value in [("Content-Type", RSS_TYPE), ("Content-Length", str(len(body))), *codings]:
            handler.send_header(name, value)
        handler.end_headers()
        handler.write(request.path, body)

    def _private(self, handler: _Handler, request: RecordedRequest) -> None:
        expected = "Basic " + base64.b64encode(PRIVATE_USER.encode()).decode()
        if request.headers.get("authorization") == expected:
            handler.respond(request, 200, RSS, {"Content-Type": RSS_TYPE})
        else:
            headers = {"WWW-Authenticate": 'Basic realm="feeds"', "Content-Type": "text/plain"}
            handler.respond(request, 401, b"who are you?", headers)

    def _cut_short(self, handler: _Handler, request: RecordedRequest) -> None:
        # The connection closes before the end the headers announced: a proxy or a server
        # that crashed half-way.
        handler.send_response_only(200)
        handler.send_header("Content-Type", RSS_TYPE)
        if request.path == "/cut-chunked":
            handler.send_header("Transfer-Encoding", "chunked")
            body = b"%x\r\n%s\r\n" % (len(RSS), RSS)  # and no "0\r\n\r\n"
        else:
            handler.send_header("Content-Length", str(len(RSS) + 100))
            body = RSS
        handler.end_headers()
        handler.close_connection = True
        handler.write(request.path, body)

    def _not_http(self, handler: _Handler, request: RecordedRequest) -> None:
        handler.close_connection = True
        handler.write(request.path, b"SSH-2.0-OpenSSH_9.6\r\n\r\n")

    def _hang_up(self, handler: _Handler, request: RecordedRequest) -> None:
        handler.close_connection = True
        handler.connection.shutdown(socket.SHUT_RDWR)


def _not_modified(request: RecordedRequest, resource: Resource) -> bool:
    """RFC 9110: If-None-Match wins over If-Modified-Since when both are sent."""
    if_none_match = request.headers.get("if-none-match")
    if if_none_match is not None:
        tags = {tag.strip() for tag in if_none_match.split(",")}
        return resource.etag is not None and (resource.etag in tags or "*" in tags)
    since = request.headers.get("if-modified-since")
    if since is None or resource.last_modified is None:
        return False
    try:
        return parsedate_to_datetime(resource.last_modified) <= parsedate_to_datetime(since)
    except (TypeError, ValueError):
        return False


def unused_port() -> int:
    """A loopback port nothing listens on (bound then released), for "connection refused"."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def feed_server() -> Iterator[FeedServer]:
    """A started FeedServer, stopped after the test."""
    with FeedServer() as server:
        yield server


PRETEND_PUBLIC_ADDRESS = "127.0.0.2"  # a test declares it public (FetchSettings.address_is_global)


@pytest.fixture
def public_feed_server() -> Iterator[FeedServer]:
    """A started FeedServer on 127.0.0.2, the address tests declare public."""
    with FeedServer(address=PRETEND_PUBLIC_ADDRESS) as server:
        yield server
