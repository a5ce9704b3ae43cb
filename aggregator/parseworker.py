"""The parse worker's side of ``aggregator.parsepool``: what a worker process runs.

A worker is a fresh interpreter (see ``parsepool._BOOT``) that imports this module and
calls ``serve``: length-prefixed pickles in on stdin (body, headers, URL, the feed's known
source keys), one ``ParseOutcome`` out on stdout per request.  Kept apart from the pool so
that a worker imports only this, the parser and what they need: the pool's asyncio and
logging were 2.3 MB of the 35 MB a worker held before its first parse.
"""

from __future__ import annotations

import os
import pickle
import signal
import struct
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, BinaryIO

from aggregator.errors import ParseError

if TYPE_CHECKING:
    from aggregator.types import ParsedFeed

HEADER = struct.Struct("!Q")  # the length of the pickle that follows


@dataclass(frozen=True, slots=True)
class ParseOutcome:
    feed: ParsedFeed | None
    error: str | None
    # identity.entry_hashes(feed.entries), when a worker computed them; else the store does.
    hashes: tuple[str, ...] | None = None


def parse_safely(
    body: bytes, headers: Mapping[str, str], url: str, known: Mapping[str, str] | None = None
) -> ParseOutcome:
    """``parse_feed`` with every failure turned into a message: one feed must not stop the others.

    ``known``: the source keys stored for the feed, as ``parse_feed`` takes them.
    """
    # Imported here: the parent of a pool never parses, so it never pays for feedparser.
    from aggregator.parse import parse_feed  # noqa: PLC0415

    try:
        return ParseOutcome(parse_feed(body, headers, url, known=known), None)
    except ParseError as exc:
        return ParseOutcome(None, str(exc))
    except Exception as exc:  # a parser bug must not take the other feeds down
        return ParseOutcome(None, f"parser failed unexpectedly: {type(exc).__name__}: {exc}")


def serve(requests: BinaryIO | None = None, replies: BinaryIO | None = None) -> None:
    """The worker's loop: read a request, parse it, write the outcome, until stdin closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if requests is None or replies is None:
        if len(sys.argv) > 2:  # started by parsepool, which names itself: see die_with_parent
            die_with_parent(int(sys.argv[2]))
        requests = sys.stdin.buffer
        # The protocol owns the real stdout; a stray print() goes to stderr instead.
        replies = os.fdopen(os.dup(sys.stdout.fileno()), "wb")
        sys.stdout = sys.stderr
    from aggregator import identity, parse  # noqa: F401, PLC0415 -- import before the first request arrives

    while True:
        head = requests.read(HEADER.size)
        if len(head) < HEADER.size:
            return  # the parent closed our stdin: the poll is over
        reply = _answer(requests.read(HEADER.unpack(head)[0]))
        replies.write(HEADER.pack(len(reply)))
        replies.write(reply)  # not joined to the header: a copy of the whole reply
        replies.flush()
        del reply  # the next parse need not share the memory with this one's reply


# prctl(2) option: the signal the kernel sends this process when its parent dies.
_PR_SET_PDEATHSIG = 1


def die_with_parent(parent: int) -> None:
    """Have the kernel kill this worker when ``parent`` (the pool's process) dies.

    The closed stdin that ends a worker is only read between parses: a worker whose parent
    was killed (SIGKILL from a supervisor, the OOM killer) in the middle of a parse that
    hangs (a pathological document, stuck in a regular expression that holds the GIL, so no
    watchdog thread could run) went on burning a core for as long as the parse took.  Linux
    only (``prctl``); elsewhere the worker still ends after its current parse.
    """
    if not sys.platform.startswith("linux"):
        return
    try:
        import ctypes  # noqa: PLC0415 -- Linux workers only; about 0.4 MB

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
            return
    except (OSError, AttributeError):  # no libc to load, or no prctl in it
        return
    if os.getppid() != parent:  # the parent died before the line above: nobody will ask
        os._exit(0)


def _answer(request: bytes) -> bytes:
    """One request to one reply, in a function of its own so that nothing of this parse
    (request, body, parsed feed) is still referenced while the worker waits for the next."""
    from aggregator.identity import entry_hashes  # noqa: PLC0415 -- the worker's, not the parent's

    body, headers, url, known = pickle.loads(request)  # noqa: S301 -- our parent
    del request
    outcome = parse_safely(body, headers, url, known)
    del body
    if outcome.feed is not None:
        outcome = ParseOutcome(outcome.feed, None, entry_hashes(outcome.feed.entries))
    return pickle.dumps(outcome, protocol=pickle.HIGHEST_PROTOCOL)
