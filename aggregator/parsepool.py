"""Parsing on every core: ``parse_feed`` in child processes that import nothing else.

In: feed bytes, response headers and the final URL.  Out: a ``ParseOutcome`` (the parsed feed,
or the message of why the bytes are not a feed; from a worker, also the entries' content
hashes, so that the parent's writer thread, which shares a core with the event loop, does
not compute them).  Parsing is the CPU-bound part of a poll
(feedparser is pure Python), so a poll of many feeds spreads it over worker processes.

The workers are fresh interpreters (``python -c``) that import only the parser (and
``aggregator.parseworker``, their side of the protocol), talking to the event loop over
their stdin and stdout: one length-prefixed pickle in (body, headers,
URL, the feed's known source keys), one out (the outcome).  Not ``multiprocessing``: a
forked worker starts with a copy of everything the parent imported (the HTTP client,
SQLAlchemy, pydantic…), and a spawned ``ProcessPoolExecutor`` starts a resource-tracker
process, a manager thread and queue threads besides, before it is known whether anything
needs parsing.  Here:

- nothing starts until the first body arrives (a poll where every feed answers 304 starts
  no process), unless the caller expects bodies and calls ``start()`` early, so that the
  workers' imports overlap the first fetches;
- a worker that crashes or hangs costs one feed, not the poll: that feed gets an error
  outcome (a hang after ``PARSE_TIMEOUT_S``), the worker is replaced, the others go on;
- a worker exits when its stdin closes, so none outlives the poll, even when the parent
  is killed; on Linux one in the middle of a parse is killed with its parent, so that a
  poll killed while a document hangs its parser leaves no process burning a core.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import pickle
import signal
import sys
from collections.abc import Mapping

from aggregator.parseworker import HEADER, ParseOutcome, parse_safely

__all__ = ["PARSE_TIMEOUT_S", "ParseOutcome", "ParsePool", "parse_safely"]

log = logging.getLogger(__name__)

# Generous: a 10 MB feed through feedparser takes seconds on a busy machine.  A worker that
# takes longer is stuck (a pathological document) and is killed.
PARSE_TIMEOUT_S = 120.0

# The worker's first lines: ssl marked absent (below), then the parent's sys.path (as
# multiprocessing's spawn does), so that the child imports the same aggregator package
# however the parent found it.
#
# ssl: feedparser and fastfeedparser import urllib.request (for fetching, which a worker is
# never asked to do: it gets bytes), and with it http.client and ssl, which both treat ssl as
# optional (a Python built without it).  A None entry in sys.modules makes "import ssl" fail,
# as in such a build: 2 MB less in each worker (the module and libssl), and no way to open
# an https connection from a process that must not touch the network anyway.
#
# _hashlib: hashlib's OpenSSL half, which maps libcrypto (3.5 MB of each worker's memory).
# Without it hashlib uses CPython's own SHA-256 and BLAKE2, the same digests; they are
# slower, but hashing is a sliver of parsing: a cold poll of 1,000 feeds took 10.74 s
# against 10.60 s (medians of 4) and its processes' peak memory 141 MB against 148 MB.
_BOOT = (
    "import json, sys; sys.modules['ssl'] = None; sys.modules['_hashlib'] = None;"
    " sys.path[:] = json.loads(sys.argv[1]); import aggregator.parseworker as p; p.serve()"
)
# The worker's second argument is the pool's process id: a worker whose parent is gone
# (killed by SIGKILL, say) ends at once rather than finish a parse nobody will read, which
# a pathological document can make last many minutes (see parseworker.die_with_parent).


class _Worker:
    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.answered = False  # whether it ever answered: whether its program runs at all

    @classmethod
    async def start(cls) -> _Worker:
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-c",
            _BOOT,
            json.dumps(sys.path),
            str(os.getpid()),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(process)

    async def call(self, request: bytes) -> ParseOutcome:
        stdin, stdout = self.process.stdin, self.process.stdout
        assert stdin is not None  # noqa: S101 -- PIPE was asked for
        assert stdout is not None  # noqa: S101
        stdin.write(HEADER.pack(len(request)))
        stdin.write(request)  # not joined to the header: a copy of the whole request
        del request  # what the pipe did not take at once, the transport has copied
        await stdin.drain()
        size = HEADER.unpack(await stdout.readexactly(HEADER.size))[0]
        outcome = pickle.loads(await stdout.readexactly(size))  # noqa: S301 -- our own child
        if not isinstance(outcome, ParseOutcome):  # not assert: it must hold under python -O too
            raise TypeError(f"a {type(outcome).__name__}, not a ParseOutcome")
        self.answered = True
        return outcome

    async def close(self) -> None:
        if self.process.stdin is not None and not self.process.stdin.is_closing():
            self.process.stdin.close()  # the worker's cue to exit
        try:
            await asyncio.wait_for(self.process.wait(), timeout=5)
        except TimeoutError:
            self.kill()
            await self.process.wait()

    def kill(self) -> None:
        # os.kill, not Process.kill: that polls first and may reap a dead worker itself,
        # leaving asyncio's child watcher to log "Unknown child process" and exit status 255.
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)


class ParsePool:
    """``parse_safely`` in up to ``workers`` child processes; ``workers=0`` parses in the caller.

    Use inside one running event loop: ``async with ParsePool(n) as pool: await pool.parse(...)``.
    """

    def __init__(self, workers: int) -> None:
        self._size = workers
        self._idle: list[_Worker] = []
        self._all: set[_Worker] = set()
        self._starting = 0
        self._waiters: list[asyncio.Future[_Worker]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False

    def start(self, count: int | None = None) -> None:
        """Start ``count`` workers (default: all) now, in the background: their imports
        overlap what comes next.  More start when parses wait, up to the pool's size."""
        if self._closed:
            return  # a parse that outlived the pool (a stopped poll) starts nothing
        limit = self._size if count is None else min(self._size, count)
        while limit and len(self._all) + self._starting < limit:
            self._starting += 1
            task = asyncio.get_running_loop().create_task(self._add_worker())
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def parse(
        self, body: bytes, headers: Mapping[str, str], url: str, known: Mapping[str, str] | None = None
    ) -> ParseOutcome:
        """``parse_safely`` in a worker; ``known`` as ``parse_feed`` takes it."""
        if self._size == 0:
            return parse_safely(body, headers, url, known)
        known = dict(known) if known else None
        worker = await self._acquire()
        if worker is None:  # no process could be started: parse here rather than not at all
            return parse_safely(body, headers, url, known)
        try:
            async with asyncio.timeout(PARSE_TIMEOUT_S):
                # Pickled once a worker is ours: a parse waiting for one holds no copy of its body.
                request = (body, dict(headers), url, known)
                outcome = await worker.call(pickle.dumps(request, protocol=pickle.HIGHEST_PROTOCOL))
        except TimeoutError:
            await self._discard(worker)
            return ParseOutcome(
                None, f"parser gave up after {PARSE_TIMEOUT_S:g} s: the document is pathological"
            )
        except (asyncio.IncompleteReadError, ConnectionError):
            await self._discard(worker, replace=False)
            code = worker.process.returncode or 0
            if code > 0 and not worker.answered:
                # It exited by itself before its first answer: its program cannot run here
                # (its imports failed), which is no feed's fault; as when none can start.
                self._shrink(f"a parser process exited with status {code} before its first answer")
                return parse_safely(body, headers, url, known)
            if self._waiters:
                self.start()  # a replacement for whoever waits
            how = f"killed by signal {-code}" if code < 0 else f"exit status {code}"
            outcome = ParseOutcome(
                None, f"parser process died ({how}) while parsing this feed; it was restarted"
            )
        except Exception as exc:
            # An answer that is no ParseOutcome: something else wrote to the worker's stdout
            # (a C library, a site hook).  The stream is out of step, so the worker goes, and
            # only this feed fails, not the poll.
            await self._discard(worker)
            outcome = ParseOutcome(
                None, f"parser process answered garbage ({type(exc).__name__}); it was restarted"
            )
        except BaseException:
            # Cancelled mid-message: the worker's stream is out of step; never reuse it.
            await asyncio.shield(self._discard(worker))
            raise
        else:
            self._release(worker)
        return outcome

    async def _acquire(self) -> _Worker | None:
        if self._idle:
            return self._idle.pop()
        if len(self._all) + self._starting < self._size:
            self.start()
        waiter: asyncio.Future[_Worker] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except _NoWorkers:
            return None

    def _release(self, worker: _Worker) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    async def _add_worker(self) -> None:
        try:
            worker = await _Worker.start()
        except Exception as exc:  # any failure: waiters must not hang, the feeds parse here
            self._starting -= 1
            self._shrink(f"cannot start a parser process ({exc})")
            return
        self._starting -= 1
        if self._closed:  # the pool closed while this one started
            await worker.close()
            return
        self._all.add(worker)
        self._release(worker)

    def _shrink(self, why: str) -> None:
        """A worker could not start or run.  Out of processes for this one (fork's EAGAIN,
        say), the workers already running, or still starting, go on parsing; only with none
        left do the feeds parse in the caller."""
        self._size = len(self._all) + self._starting
        if self._size:
            log.warning("%s: parsing in the %d parser process(es) left", why, self._size)
            return
        log.warning("%s: parsing in the main process", why)
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(_NoWorkers())
        self._waiters.clear()

    async def _discard(self, worker: _Worker, *, replace: bool = True) -> None:
        self._all.discard(worker)
        worker.kill()
        await worker.process.wait()
        if replace and self._waiters:
            self.start()  # a replacement for whoever waits

    async def aclose(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        workers, self._all, self._idle = list(self._all), set(), []
        await asyncio.gather(*(w.close() for w in workers))

    async def __aenter__(self) -> ParsePool:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()


class _NoWorkers(Exception):
    """No worker process could be started; the waiting parse runs in the caller."""
