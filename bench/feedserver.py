"""Loopback HTTP server for N generated feeds (stdlib asyncio; uvloop if installed).

Adapted from the shared reference harness (/work/shared/bench/feedserver.py) so the
project's benchmark runs from a fresh clone: the same protocol and the same feeds
(bench/feedgen.py), trimmed to what bench/poll.py needs, plus ``/__restore``.

In: command-line options.  Out: on stdout one line ``READY <base-url> <n-feeds>`` once every
feed is rendered, then HTTP on 127.0.0.1 only:

    GET /feeds/<i>.xml   the feed; ETag + Last-Modified; 304 on a matching If-None-Match
                         (or, without one, If-Modified-Since); gzip when accepted
    GET /__urls          the feed URLs, one a line
    GET /__stats         JSON counters since the last reset (requests, 200/304, bytes, CPU)
    GET /__reset         zero the counters
    GET /__config?latency_ms=20
                         change the added latency at run time
    GET /__bump?fraction=0.1&items=2
                         give a deterministic fraction of the feeds new items (new ETag and
                         Last-Modified), as a later poll would find them
    GET /__restore       every feed back to version 0, so each tool starts from the same feeds

Latency is added to every feed response without blocking (``loop.call_later``), so many
requests wait at once, as they do on the internet.

Bounded: the server exits after ``--max-seconds``, on SIGTERM/SIGINT, and, with
``--exit-on-stdin-eof``, as soon as its stdin closes, which happens when the parent exits or
dies (the parent holds the write end of the pipe).
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import random
import signal
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from typing import Any, cast
from urllib.parse import parse_qs, urlsplit

sys.path.insert(0, str(Path(__file__).resolve().parent))
import feedgen  # a sibling script, not an installed package

REASONS = {200: "OK", 304: "Not Modified", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed"}
MAX_REQUEST_HEAD = 65536


def render_feed(seed: int, feed_id: int, n_feeds: int, version: int, base: str) -> tuple[bytes, bytes]:
    """The body of one feed at one version, and its gzip form (module level: it runs in workers)."""
    body = feedgen.FeedSpec(seed, feed_id, n_feeds).render(version, f"{base}/feeds/{feed_id}.xml")
    # mtime=0 keeps the gzip bytes a pure function of the body.
    return body, gzip.compress(body, compresslevel=6, mtime=0)


class Feed:
    """One served feed at its current version."""

    __slots__ = ("body", "ctype", "etag", "gz", "last_modified", "lm_dt", "spec", "version")

    def __init__(self, spec: feedgen.FeedSpec) -> None:
        self.spec = spec
        self.ctype = spec.content_type()
        self.version = -1
        self.body = self.gz = b""
        self.etag = self.last_modified = ""

    def set(self, version: int, body: bytes, gz: bytes) -> None:
        self.version = version
        self.body, self.gz = body, gz
        self.etag = self.spec.etag(version)
        self.lm_dt = self.spec.newest_date(version)
        self.last_modified = format_datetime(self.lm_dt, usegmt=True)


class State:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = ""  # known once the socket is bound
        self.latency = args.latency_ms / 1000.0
        self.feeds = [Feed(feedgen.FeedSpec(args.seed, i, args.feeds)) for i in range(args.feeds)]
        self.reset()

    def render(self, feeds: list[Feed], version_of: dict[int, int]) -> None:
        """Render ``feeds`` at their new versions, on two processes when there are many."""
        jobs = [
            (self.args.seed, f.spec.feed_id, self.args.feeds, version_of[f.spec.feed_id], self.base)
            for f in feeds
        ]
        if len(jobs) >= 100 and self.args.render_workers > 1:
            with ProcessPoolExecutor(self.args.render_workers) as pool:
                results = list(pool.map(render_feed, *zip(*jobs, strict=True), chunksize=25))
        else:
            results = [render_feed(*job) for job in jobs]
        for feed, (body, gz) in zip(feeds, results, strict=True):
            feed.set(version_of[feed.spec.feed_id], body, gz)

    def urls_text(self) -> str:
        return "".join(f"{self.base}/feeds/{i}.xml\n" for i in range(len(self.feeds)))

    def reset(self) -> None:
        self.stats = {"requests": 0, "s200": 0, "s304": 0, "s404": 0, "bytes_out": 0, "connections": 0}
        self.cpu0 = time.process_time()

    def snapshot(self) -> dict[str, Any]:
        return {
            **self.stats,
            "server_cpu_s": round(time.process_time() - self.cpu0, 3),
            "latency_ms": self.latency * 1000,
            "feeds": len(self.feeds),
            "total_body_bytes": sum(len(f.body) for f in self.feeds),
        }


def etag_matches(header: str, etag: str) -> bool:
    if header.strip() == "*":
        return True
    return any(tag.strip().removeprefix("W/") == etag for tag in header.split(","))


class HTTPProtocol(asyncio.Protocol):
    """Minimal HTTP/1.1 with keep-alive; one request at a time per connection, in order."""

    def __init__(self, state: State) -> None:
        self.state = state
        self.buf = b""
        self.busy = False
        self.closed = False
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # A stream transport, but not always an asyncio.Transport subclass: uvloop's
        # TCPTransport is not one (an isinstance check stopped every connection under uvloop).
        self.transport = cast(asyncio.Transport, transport)
        self.state.stats["connections"] += 1

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if len(self.buf) > MAX_REQUEST_HEAD:
            self._send(400, [], b"request too large\n", close=True)
            return
        self._process()

    def _process(self) -> None:
        if self.busy or self.closed:
            return
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head, self.buf = self.buf[:end].decode("latin-1"), self.buf[end + 4 :]
        lines = head.split("\r\n")
        try:
            method, target, version = lines[0].split(" ", 2)
        except ValueError:
            self._send(400, [], b"bad request line\n", close=True)
            return
        headers: dict[str, str] = {}
        for line in lines[1:]:
            key, _, value = line.partition(":")
            headers[key.strip().lower()] = value.strip()
        conn = headers.get("connection", "").lower()
        close = conn == "close" or (version == "HTTP/1.0" and conn != "keep-alive")
        self.busy = True
        path = urlsplit(target).path
        if path.startswith("/feeds/"):
            self.state.stats["requests"] += 1
            if self.state.latency > 0:
                loop = asyncio.get_running_loop()
                loop.call_later(self.state.latency, self._feed, method, path, headers, close)
            else:
                self._feed(method, path, headers, close)
        else:
            self._admin(target, close)

    def _send(
        self,
        status: int,
        hdrs: list[tuple[str, str]],
        body: bytes,
        close: bool,
        *,
        head_only: bool = False,
        count: bool = False,
    ) -> None:
        if self.closed or self.transport is None:
            return
        out = [f"HTTP/1.1 {status} {REASONS.get(status, 'OK')}\r\nServer: feedserver-bench\r\n".encode()]
        out.extend(f"{k}: {v}\r\n".encode() for k, v in hdrs)
        out.append(f"Content-Length: {len(body)}\r\n".encode())
        if close:
            out.append(b"Connection: close\r\n")
        out.append(b"\r\n")
        if not head_only:
            out.append(body)
        data = b"".join(out)
        if count:  # feed requests only, not the admin ones
            self.state.stats["bytes_out"] += len(data)
            key = f"s{status}"
            if key in self.state.stats:
                self.state.stats[key] += 1
        self.transport.write(data)
        if close:
            self.transport.close()
            self.closed = True
            return
        self.busy = False
        if self.buf:
            self._process()

    def _feed(self, method: str, path: str, headers: dict[str, str], close: bool) -> None:
        if method not in ("GET", "HEAD"):
            self._send(405, [], b"", close, count=True)
            return
        try:
            feed = self.state.feeds[int(path.removeprefix("/feeds/").split(".", 1)[0])]
        except (ValueError, IndexError):
            self._send(404, [("Content-Type", "text/plain")], b"no such feed\n", close, count=True)
            return
        common = [("ETag", feed.etag), ("Last-Modified", feed.last_modified), ("Cache-Control", "max-age=0")]
        inm = headers.get("if-none-match")
        ims = headers.get("if-modified-since")
        not_modified = False
        if inm is not None:  # RFC 9110 13.1.3: If-None-Match wins over If-Modified-Since
            not_modified = etag_matches(inm, feed.etag)
        elif ims:
            try:
                not_modified = parsedate_to_datetime(ims) >= feed.lm_dt
            except (TypeError, ValueError):
                not_modified = False
        if not_modified:
            self._send(304, common, b"", close, count=True)
            return
        hdrs = [("Content-Type", feed.ctype), *common, ("Vary", "Accept-Encoding")]
        body = feed.body
        if "gzip" in headers.get("accept-encoding", ""):
            hdrs.append(("Content-Encoding", "gzip"))
            body = feed.gz
        self._send(200, hdrs, body, close, head_only=method == "HEAD", count=True)

    def _admin(self, target: str, close: bool) -> None:
        st = self.state
        parts = urlsplit(target)
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        as_json = [("Content-Type", "application/json")]
        if parts.path == "/__urls":
            self._send(200, [("Content-Type", "text/plain")], st.urls_text().encode(), close)
        elif parts.path == "/__stats":
            self._send(200, as_json, json.dumps(st.snapshot()).encode(), close)
        elif parts.path == "/__reset":
            st.reset()
            self._send(200, as_json, b"{}", close)
        elif parts.path == "/__config":
            if "latency_ms" in query:
                st.latency = float(query["latency_ms"]) / 1000.0
            self._send(200, as_json, json.dumps(st.snapshot()).encode(), close)
        elif parts.path == "/__bump":
            # Same seed, same chosen feeds: every tool's bump phase sees the same change.
            fraction = float(query.get("fraction", "0.1"))
            items = int(query.get("items", "2"))
            rng = random.Random(int(query.get("seed", "7")))
            chosen = [f for f in st.feeds if rng.random() < fraction]
            st.render(chosen, {f.spec.feed_id: f.version + items for f in chosen})
            body = json.dumps({"bumped": len(chosen), "items_each": items}).encode()
            self._send(200, as_json, body, close)
        elif parts.path == "/__restore":
            changed = [f for f in st.feeds if f.version != 0]
            st.render(changed, {f.spec.feed_id: 0 for f in changed})
            self._send(200, as_json, json.dumps({"restored": len(changed)}).encode(), close)
        else:
            self._send(404, [("Content-Type", "text/plain")], b"not found\n", close)


async def serve(args: argparse.Namespace) -> None:
    loop = asyncio.get_running_loop()
    state = State(args)
    server = await loop.create_server(
        lambda: HTTPProtocol(state),
        "127.0.0.1",
        args.port,
        backlog=4096,
        reuse_address=True,
    )
    base = state.base = f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"
    t0 = time.perf_counter()
    state.render(state.feeds, dict.fromkeys(range(args.feeds), 0))
    if args.urls_file:
        Path(args.urls_file).write_text(state.urls_text())
    state.reset()
    total_mb = sum(len(f.body) for f in state.feeds) / 1e6
    print(f"READY {base} {args.feeds}", flush=True)
    print(
        f"feedserver: {args.feeds} feeds, {total_mb:.1f} MB of XML, rendered in "
        f"{time.perf_counter() - t0:.1f}s",
        file=sys.stderr,
        flush=True,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    if args.exit_on_stdin_eof:

        def stdin_readable() -> None:
            if not os.read(sys.stdin.fileno(), 4096):  # EOF: the parent is gone
                stop.set()

        loop.add_reader(sys.stdin.fileno(), stdin_readable)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.max_seconds)
    except TimeoutError:
        print("feedserver: --max-seconds reached, stopping", file=sys.stderr, flush=True)
    server.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--feeds", type=int, default=200)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--port", type=int, default=0, help="0 = any free port")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--render-workers", type=int, default=2, help="processes that render the feeds")
    ap.add_argument("--urls-file", help="also write the feed URLs here, one a line")
    ap.add_argument("--max-seconds", type=float, default=3600.0)
    ap.add_argument("--exit-on-stdin-eof", action="store_true")
    args = ap.parse_args()
    try:
        import uvloop  # type: ignore[import-not-found]  # noqa: PLC0415  (optional)

        uvloop.install()
    except ImportError:
        pass
    asyncio.run(serve(args))


if __name__ == "__main__":
    main()
