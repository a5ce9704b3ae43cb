"""Run the aggregator unattended: ``python scheduler.py [--config feeds.yaml] [--log-format json]``.

The composition root of the long-running process, with no logic of its own: it reads the
command line and hands over to ``aggregator.service.run_forever``, which polls the feeds
that are due, sends each newsletter on its schedule, reloads ``feeds.yaml`` when it is
edited (at once on SIGHUP), and stops cleanly on SIGTERM or Ctrl-C.  ``aggregator run``
does the same.

Exit codes: 0 after a clean stop, 2 for a bad ``feeds.yaml`` or an unusable database,
3 when another scheduler already runs on the same database, 4 when its lock on a
PostgreSQL database was lost while running (a database restart): restart it.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from aggregator.config import DEFAULT_CONFIG_NAME
from aggregator.service import run_forever


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scheduler.py",
        description="Poll feeds when due and send newsletters on schedule until stopped (SIGTERM, Ctrl-C).",
    )
    parser.add_argument(
        "--config",
        "-c",
        type=Path,
        default=Path(os.environ.get("AGGREGATOR_CONFIG", DEFAULT_CONFIG_NAME)),
        help="the feeds.yaml to use (default: $AGGREGATOR_CONFIG or ./feeds.yaml)",
    )
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text lines for people, or one JSON object a line for log collectors",
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="also log every feed polled")
    args = parser.parse_args(argv)
    return run_forever(args.config, args.log_format, verbose=args.verbose)


if __name__ == "__main__":
    sys.exit(main())
