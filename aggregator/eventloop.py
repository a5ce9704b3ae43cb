"""The event loop a command's poll runs on: uvloop where it is installed, else asyncio's own.

A poll of many feeds is bound by the CPU of its one event loop (each request is a few
hundred microseconds of Python: httpx, aiohttp, the Fetcher), and uvloop's loop and
transports take less of it: a poll of 1,000 feeds that all answer 304 took about 45 ms
less of its ~1 s (bench/poll.py's feeds, interleaved runs).  The behaviour is asyncio's:
everything here runs on either loop, and the tests run on both (the CLI's commands on
this one, the pipeline's own tests on asyncio's).  uvloop has no Windows build; there,
and wherever it is missing, ``run`` is ``asyncio.run``.

The scheduler (``service.py``) keeps asyncio's loop: it runs for days, a cycle's few
milliseconds do not matter there, and its signal handling is tested on that loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run(main: Coroutine[Any, Any, T]) -> T:
    """Run ``main`` to the end on a new event loop, as ``asyncio.run`` does, and close it."""
    try:
        import uvloop  # noqa: PLC0415 -- optional, and only for commands that poll
    except ImportError:  # pragma: no cover -- installed everywhere but Windows
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)
