"""The parse worker pool when its processes cannot start: feeds still parse, in the caller."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from aggregator import parsepool
from aggregator.identity import entry_hashes
from aggregator.parsepool import ParsePool
from tests.test_parse import FEEDS, FIXTURES

RSS = (Path(__file__).parent / "feeds" / "rss20.xml").read_bytes()
HEADERS = {"content-type": "application/rss+xml"}


def _parse_in_a_pool_of_two(count: int, *, timeout: float) -> list[parsepool.ParseOutcome]:
    """``count`` parses of the sample feed at once in a ``ParsePool(2)``."""

    async def parse_all() -> list[parsepool.ParseOutcome]:
        async with ParsePool(2) as pool:
            feeds = (pool.parse(RSS, HEADERS, "https://example.com/feed") for _ in range(count))
            return await asyncio.wait_for(asyncio.gather(*feeds), timeout=timeout)

    return asyncio.run(parse_all())


@pytest.mark.parametrize("failure", [OSError("fork failed"), RuntimeError("unexpected")])
def test_a_worker_that_cannot_start_leaves_no_parse_waiting(
    monkeypatch: pytest.MonkeyPatch, failure: Exception
) -> None:
    async def refuse() -> parsepool._Worker:
        raise failure

    monkeypatch.setattr(parsepool._Worker, "start", staticmethod(refuse))

    outcomes = _parse_in_a_pool_of_two(2, timeout=10)
    assert all(o.feed is not None and o.feed.entries for o in outcomes)


def test_known_source_keys_reach_the_worker_process() -> None:
    async def parse_twice() -> tuple[parsepool.ParseOutcome, parsepool.ParseOutcome]:
        async with ParsePool(1) as pool:
            first = await pool.parse(RSS, HEADERS, "https://example.com/feed")
            assert first.feed is not None
            known = dict(zip(first.feed.source_keys, (e.guid for e in first.feed.entries), strict=True))
            return first, await pool.parse(RSS, HEADERS, "https://example.com/feed", known)

    first, again = asyncio.run(parse_twice())
    assert first.feed is not None
    assert again.feed is not None
    assert again.feed.entries == ()
    assert again.feed.unchanged == tuple(e.guid for e in first.feed.entries)
    assert again.hashes == ()


def test_a_worker_process_imports_the_parser_but_not_the_pools_asyncio() -> None:
    # A worker's memory is what it imports: the parent side of the module must not come along,
    # nor ssl, nor OpenSSL's hashlib (parsepool._BOOT says why).
    assert parsepool._BOOT.endswith("; p.serve()")
    report = (
        "from aggregator import parse; print(json.dumps([m for m in sys.argv[2:] if sys.modules.get(m)]))"
    )
    code = parsepool._BOOT.replace("p.serve()", report)
    watched = ["asyncio", "logging", "ssl", "_hashlib", "aggregator.parse"]
    done = subprocess.run(
        [sys.executable, "-c", code, json.dumps(sys.path), *watched],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(done.stdout) == ["aggregator.parse"]


def test_every_fixture_parses_in_a_worker_as_in_the_caller() -> None:
    # The worker runs without ssl (parsepool._BOOT): every reader (fast path, feedparser, JSON
    # Feed), every charset path and every refusal must come out the same as in this process.
    async def parse_all() -> list[parsepool.ParseOutcome]:
        async with ParsePool(1) as pool:
            return [
                await pool.parse((FEEDS / name).read_bytes(), headers, url)
                for name, (headers, url) in FIXTURES.items()
            ]

    in_workers = asyncio.run(parse_all())
    here = [parsepool.parse_safely((FEEDS / n).read_bytes(), h, u) for n, (h, u) in FIXTURES.items()]
    assert [(o.feed, o.error) for o in in_workers] == [(o.feed, o.error) for o in here]
    # Its hashes too, made without OpenSSL's hashlib: the digests the store compares with.
    assert [o.hashes for o in in_workers] == [entry_hashes(o.feed.entries) if o.feed else None for o in here]
    assert sum(o.feed is not None for o in here) >= len(FIXTURES) - 3  # not all refusals


def test_a_worker_that_answers_garbage_fails_that_feed_alone(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    # A worker whose stdout carries something else (a C library or a site hook printing to
    # fd 1, a corrupted process): the UnpicklingError went up through the poll and stopped
    # every other feed.  The first worker answers garbage; its replacement parses.
    marker = tmp_path / "answered"
    garbage = (
        f"import os, struct, sys\nif not os.path.exists({str(marker)!r}):\n open({str(marker)!r}, 'w')\n"
        " sys.stdin.buffer.read(8); sys.stdout.buffer.write(struct.pack('!Q', 5) + b'junk!')\n"
        " sys.stdout.buffer.flush()\n" + parsepool._BOOT
    )
    monkeypatch.setattr(parsepool, "_BOOT", garbage)

    async def parse_two() -> list[parsepool.ParseOutcome]:
        async with ParsePool(1) as pool:
            return [await pool.parse(RSS, HEADERS, "https://example.com/feed") for _ in range(2)]

    bad, good = asyncio.run(parse_two())
    assert bad.feed is None
    assert "parser process" in (bad.error or "")
    assert good.feed is not None  # the worker was replaced


def test_a_second_worker_that_cannot_start_leaves_the_first_parsing(monkeypatch: pytest.MonkeyPatch) -> None:
    # Out of processes (fork: EAGAIN) for the second worker only: every feed was then parsed
    # in the caller, blocking the event loop and without PARSE_TIMEOUT_S, beside an idle worker.
    real_start = parsepool._Worker.start
    started: list[None] = []

    async def second_fails() -> parsepool._Worker:
        started.append(None)
        if len(started) > 1:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        return await real_start()

    monkeypatch.setattr(parsepool._Worker, "start", staticmethod(second_fails))

    outcomes = _parse_in_a_pool_of_two(4, timeout=30)
    assert all(o.feed is not None for o in outcomes)
    assert all(o.hashes is not None for o in outcomes)  # only a worker computes them


def _process_gone(pid: int) -> bool:
    """Whether ``pid`` has exited (a zombie nobody reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] == "Z"


@pytest.mark.skipif(
    not sys.platform.startswith("linux"), reason="the kernel's parent-death signal is Linux's"
)
def test_a_worker_hung_on_a_feed_dies_with_a_poll_killed_by_sigkill() -> None:
    # A poll killed (kill -9, a supervisor's timeout, the OOM killer) while a pathological
    # feed hangs its parser: the worker only reads its closed stdin between parses, and went
    # on burning a core for minutes after the poll was gone.
    hostile = RSS.replace(b"<item>", b"<item><author>" + b"a" * 300_000 + b"@x</author>", 1)
    poll = (
        "import asyncio, sys\n"
        "from aggregator.parsepool import ParsePool\n"
        "async def main():\n"
        "    async with ParsePool(1) as pool:\n"
        "        parsing = asyncio.ensure_future(pool.parse(sys.stdin.buffer.read(), {}, 'https://x/'))\n"
        "        while not pool._all:\n"
        "            await asyncio.sleep(0.01)\n"
        "        print(next(iter(pool._all)).process.pid, flush=True)\n"
        "        await parsing\n"
        "asyncio.run(main())\n"
    )
    with subprocess.Popen(
        [sys.executable, "-c", poll], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    ) as parent:
        assert parent.stdin is not None
        assert parent.stdout is not None
        parent.stdin.write(hostile)
        parent.stdin.close()
        worker = int(parent.stdout.readline())
        try:
            time.sleep(1.0)  # the worker has the document and is stuck in it
            assert not _process_gone(worker)
            parent.kill()
            parent.wait(timeout=10)
            deadline = time.monotonic() + 5
            while not _process_gone(worker) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert _process_gone(worker), "the parse worker outlived its killed poll"
        finally:
            parent.kill()
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
