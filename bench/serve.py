"""Requests per second for ``feed.atom`` from the web side: 200s and 304s on loopback.

Usage::

    .venv/bin/python bench/serve.py [--stories 50] [--connections 32] [--requests 20000] [--seconds 10]

It publishes a realistic feed (``--stories`` stories, each with coverage from three
outlets) into a temporary folder with ``aggregator.publish``, starts the web side in a
child process exactly as ``aggregator serve`` runs it (one uvicorn process, the same app
factory), and drives it with a raw-socket asyncio load generator in this process: HTTP/1.1
keep-alive, ``--connections`` connections, each sending its next request when the previous
response has been read in full.  Every run stops at ``--requests`` requests or after
``--seconds``, whichever comes first, and every response's status is checked.

Four runs: a full 200 (identity), a 200 with gzip, a conditional request answered 304 by
ETag (``If-None-Match``), and one answered 304 by date (``If-Modified-Since``).  One JSON
line per run is appended to ``bench/results/serve.jsonl`` with the machine's CPU count.
The server and the load generator share the machine (2 cores here), so the figures are a
floor for what the server does alone.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import uvicorn

from aggregator import mail, web
from aggregator.publish import PublishSettings, publish_feeds
from aggregator.snapshot import build_snapshot
from aggregator.types import Entry, StoredEntry

ROOT = Path(__file__).resolve().parent.parent

RESULTS = ROOT / "bench" / "results" / "serve.jsonl"


# --------------------------------------------------------------------------- the feed


def publish_sample(folder: Path, stories: int) -> None:
    start = datetime(2025, 8, 1, tzinfo=UTC)
    outlets = ["https://ledger.example/rss", "https://wire.example/atom", "https://dispatch.example/rdf"]
    entries = []
    paragraph = "<p>" + " ".join(["The summit produced statements but few commitments."] * 12) + "</p>"
    for i in range(stories):
        for k, outlet in enumerate(outlets):
            moment = start + timedelta(hours=i, minutes=k)
            entries.append(
                StoredEntry(
                    id=f"{i:05d}{k}",
                    feed_url=outlet,
                    entry=Entry(
                        guid=f"{i}-{k}",
                        url=f"https://outlet{k}.example/2025/story-{i}",
                        canonical_url=None,
                        title=f"Story {i}: leaders meet again as talks continue (report {k})",
                        authors=("Desk",),
                        published=moment,
                        content_html=paragraph * 4,
                        text="",
                    ),
                    first_seen=moment,
                    last_updated=moment,
                    story=f"story-{i}",
                    topics=("World",) if i % 2 else ("World", "Economy"),
                )
            )
    titles = dict(zip(outlets, ["The Ledger", "Wire", "Dispatch"], strict=True))
    snapshot = build_snapshot(entries, titles, start + timedelta(days=30))
    publish_feeds(snapshot, folder, PublishSettings(max_stories=stories))


# --------------------------------------------------------------------------- the server


def run_server(folder: Path, port: int) -> None:
    """The child process: the web side as ``aggregator serve`` runs it, on ``folder``."""
    settings = web.WebSettings(
        public_dir=folder, archive_dir=folder / "archive", title="Bench", base_url="http://127.0.0.1/",
        secret_key=b"bench-key-bench-key-bench-key!!",
    )  # fmt: skip

    class NoSubscribers:
        def subscribers(self, newsletter: str) -> dict[str, bool]:
            return {}

        def set_subscriber(self, newsletter: str, address: str, active: bool, now: datetime) -> None:
            pass

    app = web.create_app(settings, NoSubscribers(), lambda: mail.Outbox(folder / "outbox"))
    uvicorn.run(app, host="127.0.0.1", port=port, access_log=False, server_header=False, log_level="warning")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"the server did not start listening on 127.0.0.1:{port} within {timeout:.0f}s")


# --------------------------------------------------------------------------- the load


@dataclass
class Tally:
    done: int = 0
    bytes: int = 0
    wrong: int = 0
    first_wrong: str = ""


async def one_connection(
    port: int, request: bytes, expect: int, *, budget: list[int], deadline: float, tally: Tally
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while budget[0] > 0 and time.monotonic() < deadline:
            budget[0] -= 1
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            tally.done += 1
            tally.bytes += len(head) + length
            if status != expect:
                tally.wrong += 1
                tally.first_wrong = tally.first_wrong or head.decode("latin-1").splitlines()[0]
    finally:
        writer.close()


async def drive(
    port: int, request: bytes, expect: int, *, connections: int, requests: int, seconds: float
) -> dict[str, object]:
    tally = Tally()
    budget = [requests]
    started = time.monotonic()
    deadline = started + seconds
    await asyncio.gather(
        *(
            one_connection(port, request, expect, budget=budget, deadline=deadline, tally=tally)
            for _ in range(connections)
        )
    )
    elapsed = time.monotonic() - started
    return {
        "requests": tally.done,
        "seconds": round(elapsed, 3),
        "rps": round(tally.done / elapsed, 1),
        "mb_per_s": round(tally.bytes / elapsed / 1e6, 2),
        "unexpected": tally.wrong,
        "first_unexpected": tally.first_wrong or None,
    }


def request_for(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"GET {path} HTTP/1.1", "Host: 127.0.0.1", "User-Agent: bench/serve.py"]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


def validators(port: int) -> tuple[str, str, int]:
    with socket.create_connection(("127.0.0.1", port)) as s:
        s.sendall(request_for("/feed.atom", {"Connection": "close"}))
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    fields = {k.lower(): v.strip() for k, _, v in (line.partition(":") for line in head[1:])}
    return fields["etag"], fields["last-modified"], len(data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stories", type=int, default=50)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--requests", type=int, default=20_000, help="at most this many requests per run")
    parser.add_argument("--seconds", type=float, default=10.0, help="at most this long per run")
    parser.add_argument("--serve", nargs=2, metavar=("FOLDER", "PORT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        run_server(Path(args.serve[0]), int(args.serve[1]))
        return

    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        folder = Path(tmp)
        publish_sample(folder, args.stories)
        port = free_port()
        server = subprocess.Popen([sys.executable, __file__, "--serve", str(folder), str(port)])
        try:
            wait_for(port)
            etag, last_modified, size = validators(port)
            runs = {
                "200": (request_for("/feed.atom", {}), 200),
                "200 gzip": (request_for("/feed.atom", {"Accept-Encoding": "gzip"}), 200),
                "304 If-None-Match": (request_for("/feed.atom", {"If-None-Match": etag}), 304),
                "304 If-Modified-Since": (
                    request_for("/feed.atom", {"If-Modified-Since": last_modified}),
                    304,
                ),
            }
            # Warm up: imports, caches, the gzip copy.
            asyncio.run(drive(port, runs["200 gzip"][0], 200, connections=4, requests=200, seconds=5))
            for name, (request, expect) in runs.items():
                result = asyncio.run(
                    drive(
                        port,
                        request,
                        expect,
                        connections=args.connections,
                        requests=args.requests,
                        seconds=args.seconds,
                    )
                )
                row = {
                    "when": datetime.now(UTC).isoformat(timespec="seconds"),
                    "run": name,
                    "feed_bytes": size,
                    "stories": args.stories,
                    "connections": args.connections,
                    "cpus": os.cpu_count(),
                    "python": platform.python_version(),
                    **result,
                }
                print(json.dumps(row))
                RESULTS.parent.mkdir(parents=True, exist_ok=True)
                with RESULTS.open("a", encoding="utf-8") as out:
                    out.write(json.dumps(row) + "\n")
        finally:
            server.terminate()
            server.wait(timeout=10)


if __name__ == "__main__":
    main()
