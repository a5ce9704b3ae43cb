"""Parsing on every core: ``parse_feed`` in worker processes that import nothing else.

In: feed bytes, response headers and the final URL.  Out: a ``ParseOutcome`` (the parsed feed,
or the message of why the bytes are not a feed).  Parsing is the CPU-bound part of a poll
(feedparser is pure Python), so a poll of many feeds spreads it over worker processes.

The workers are *spawned*, not forked: a forked worker would start with a copy of
everything the parent imported (the HTTP client, SQLAlchemy, pydantic…), so each would
cost as much memory as the parent.  A spawned worker imports this module, which imports
only the parser.  (The console script's module, ``aggregator.__main__``, is kept tiny for
the same reason: a spawned worker runs it first.)
"""

from __future__ import annotations

import asyncio
import multiprocessing
from collections.abc import Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass

from aggregator.errors import ParseError
from aggregator.parse import parse_feed
from aggregator.types import ParsedFeed


@dataclass(frozen=True, slots=True)
class ParseOutcome:
    feed: ParsedFeed | None
    error: str | None


def parse_safely(body: bytes, headers: Mapping[str, str], url: str) -> ParseOutcome:
    """``parse_feed`` with every failure turned into a message: one feed must not stop the others."""
    try:
        return ParseOutcome(parse_feed(body, headers, url), None)
    except ParseError as exc:
        return ParseOutcome(None, str(exc))
    except Exception as exc:  # a parser bug must not take the other feeds down
        return ParseOutcome(None, f"parser failed unexpectedly: {type(exc).__name__}: {exc}")


class ParsePool:
    """``parse_safely`` on ``workers`` spawned processes; ``workers=0`` parses in the caller."""

    def __init__(self, workers: int) -> None:
        self._executor = (
            ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context("spawn"))
            if workers > 0
            else None
        )

    async def parse(self, body: bytes, headers: Mapping[str, str], url: str) -> ParseOutcome:
        if self._executor is None:
            return parse_safely(body, headers, url)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, parse_safely, body, dict(headers), url)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> ParsePool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
