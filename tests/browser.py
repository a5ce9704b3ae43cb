"""A real browser for tests: Debian's Chromium, driven by Playwright (never its own download).

Fixtures (registered in tests/conftest.py):

``chromium``  the path of the Chromium binary, for tests that run it directly (``--screenshot``).
``browser``   a Playwright ``Browser`` on that binary, headless, with the flags this machine needs.

When Chromium or Playwright is missing the test is skipped with the reason, unless
``AGGREGATOR_REQUIRE_BROWSER=1`` (CI), which makes it a failure.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# No sandbox (we run as root), no GPU, and nothing that reaches out to the network at start.
CHROMIUM_ARGS = (
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
REQUIRE_BROWSER = os.environ.get("AGGREGATOR_REQUIRE_BROWSER") == "1"


def _unavailable(reason: str) -> None:
    if REQUIRE_BROWSER:
        pytest.fail(f"{reason} (AGGREGATOR_REQUIRE_BROWSER=1)")
    pytest.skip(reason)


@pytest.fixture
def chromium() -> Path:
    if not CHROMIUM.exists():
        _unavailable(f"{CHROMIUM} is not installed: apt-get install chromium")
    return CHROMIUM


@pytest.fixture
def browser(chromium: Path) -> Iterator[Any]:
    if importlib.util.find_spec("playwright") is None:
        _unavailable(
            "the playwright package is not installed (pip install playwright; never `playwright install`)"
        )
    from playwright.sync_api import sync_playwright  # noqa: PLC0415 -- only when it is installed

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=list(CHROMIUM_ARGS)
        )
        try:
            yield launched
        finally:
            launched.close()
