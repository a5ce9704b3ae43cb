"""The peer: lemon24's ``reader`` polling the benchmark feeds, through its public API only.

Adapted from the shared reference harness (/work/shared/bench/peer_reader.py).  It runs
with the Python of reader's own virtualenv (bench/poll.py makes it), never ours: reader
brings its own feedparser and requests, which must not mix with the project's.

In: the feed server's base URL, ``workers`` and the phases.  Out: one JSON line on stdout:

    {"tool": "reader", "reader_version": "3.26", "workers": 16, "feeds": 1000,
     "phases": [{"phase": "add", ...}, {"phase": "cold", "wall_s": ..., "cpu_s": ...,
                 "peak_rss_mb": ..., "ok": ..., "not_modified": ..., "error": ...,
                 "new_entries": ..., "entries_total": ..., "server": {...}}, ...]}

Phases, each timed on its own (wall, CPU of the whole process, peak RSS so far):

    add    make_reader(db) and add_feed() for every URL (not part of "cold")
    cold   update_feeds_iter(scheduled=False, workers=W) on the empty database
    warm   the same again; the server answers 304 to every feed
    bump   the server first gives a fraction of the feeds two new entries; the rest 304

The server's counters are read around each phase, so the numbers say how many 200 and
304 responses the phase really saw.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any


def server_get(base: str, path: str) -> dict[str, Any]:
    with urllib.request.urlopen(base + path, timeout=120) as resp:
        data: dict[str, Any] = json.loads(resp.read())
    return data


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux: KiB


class Phase:
    """Times one phase and reads the server's counters around it."""

    def __init__(self, name: str, server: str) -> None:
        self.server = server
        self.out: dict[str, Any] = {"phase": name}

    def __enter__(self) -> Phase:
        server_get(self.server, "/__reset")
        self.ru0 = resource.getrusage(resource.RUSAGE_SELF)
        self.t0 = time.perf_counter()
        return self

    def __exit__(self, *exc: object) -> None:
        wall = time.perf_counter() - self.t0
        ru1 = resource.getrusage(resource.RUSAGE_SELF)
        cpu = (ru1.ru_utime - self.ru0.ru_utime) + (ru1.ru_stime - self.ru0.ru_stime)
        self.out.update(wall_s=round(wall, 3), cpu_s=round(cpu, 3), peak_rss_mb=round(peak_rss_mb(), 1))
        stats = server_get(self.server, "/__stats")
        self.out["server"] = {k: stats[k] for k in ("requests", "s200", "s304", "bytes_out", "server_cpu_s")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--server", required=True, help="feed server base URL, e.g. http://127.0.0.1:PORT")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--phases", default="cold,warm,bump", help="comma list of cold, warm, bump")
    ap.add_argument("--bump-fraction", type=float, default=0.1)
    ap.add_argument("--bump-items", type=int, default=2)
    ap.add_argument("--db", help="SQLite file (default: one in a new temporary folder)")
    args = ap.parse_args()

    import reader as reader_pkg  # noqa: PLC0415  (only in reader's own virtualenv)
    from reader import make_reader  # noqa: PLC0415

    with urllib.request.urlopen(args.server + "/__urls", timeout=120) as resp:
        urls = [u for u in resp.read().decode().split() if u]

    with tempfile.TemporaryDirectory(prefix="bench-reader-") as tmp:
        db = args.db or str(Path(tmp) / "reader.sqlite")
        result: dict[str, Any] = {
            "tool": "reader",
            "reader_version": reader_pkg.__version__,
            "workers": args.workers,
            "feeds": len(urls),
            "phases": [],
        }
        with Phase("add", args.server) as ph:
            rd = make_reader(db)
            for url in urls:
                rd.add_feed(url, exist_ok=True)
        result["phases"].append(ph.out)

        for name in [p for p in args.phases.split(",") if p]:
            if name == "bump":
                server_get(args.server, f"/__bump?fraction={args.bump_fraction}&items={args.bump_items}")
            counts = {"ok": 0, "not_modified": 0, "error": 0, "new_entries": 0}
            errors: list[str] = []
            with Phase(name, args.server) as ph:
                for res in rd.update_feeds_iter(scheduled=False, workers=args.workers):
                    if res.error is not None:
                        counts["error"] += 1
                        errors.append(f"{res.url}: {res.error}")
                    elif res.value is None:
                        counts["not_modified"] += 1
                    else:
                        counts["ok"] += 1
                        counts["new_entries"] += res.value.new
            ph.out.update(counts, errors=errors[:5], entries_total=rd.get_entry_counts().total)
            result["phases"].append(ph.out)

        rd.close()
        result["db_mb"] = round(Path(db).stat().st_size / 1e6, 1)
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
