"""The CLI's event loop (aggregator/eventloop.py): uvloop where installed, asyncio's semantics."""

from __future__ import annotations

import asyncio
import sys

import pytest

from aggregator import eventloop


async def _loop_module() -> str:
    await asyncio.sleep(0)
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(sys.platform == "win32", reason="uvloop has no Windows build")
def test_commands_poll_on_uvloop_and_get_the_coroutines_result() -> None:
    assert eventloop.run(_loop_module()).startswith("uvloop")


def test_an_exception_in_the_coroutine_reaches_the_caller_and_the_loop_is_closed() -> None:
    loops: list[asyncio.AbstractEventLoop] = []

    async def fail() -> None:
        loops.append(asyncio.get_running_loop())
        raise LookupError("from the poll")

    with pytest.raises(LookupError, match="from the poll"):
        eventloop.run(fail())
    assert loops[0].is_closed()
