"""aggregator: poll feeds, collapse near-identical copies, group stories, publish feeds and digests."""

import sys

__version__ = "0.1.0"
PROJECT_URL = "https://github.com/aggregator-project/aggregator"
USER_AGENT = f"aggregator/{__version__} (+{PROJECT_URL})"

# ``import httpx`` also imports httpx's own command-line client (click, rich.syntax and
# pygments: about 40 ms and 5 MB of every start-up) whenever click is installed, as it is
# here for uvicorn, and falls back to a stub when that import fails.  We never run httpx's
# command line, so its module is marked as absent before anything imports httpx.
sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
