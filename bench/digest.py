"""Digest benchmark: one 100-story issue to 1,000 recipients, written to the outbox.

Runs the real path (``newsletters.run_due_newsletters``: freeze the snapshot, render
once, build, record and write one message per recipient) on a throw-away project in a
temporary folder, with entries made from the seed articles.  Prints one JSON line:
time per message (the whole run divided by the recipients, send log included), the
render time, the HTML size of the email and of one ``.eml``.  Targets: ≤ 10 ms per
message, HTML ≤ 90 KB.

    .venv/bin/python bench/digest.py [--stories 100] [--recipients 1000]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from aggregator import digest, newsletters  # noqa: E402
from aggregator.config import load_config  # noqa: E402
from aggregator.store import Store  # noqa: E402
from aggregator.types import Entry, FeedState, FeedStatus  # noqa: E402

NOW = datetime(2025, 8, 18, 12, 0, tzinfo=UTC)
CONFIG = """
feeds:
  - url: https://bench.example/feed-{i}.xml
    title: Bench Outlet {i}
newsletters:
  - name: bench
    title: The Benchmark Digest
    max_stories: {stories}
    sender: digest@example.com
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stories", type=int, default=100)
    parser.add_argument("--recipients", type=int, default=1000)
    args = parser.parse_args()
    articles = sorted((ROOT / "seeds" / "articles").glob("*.txt"))
    texts = [p.read_text(encoding="utf-8") for p in articles]
    with tempfile.TemporaryDirectory(prefix="bench-digest-") as folder:
        path = Path(folder) / "feeds.yaml"
        path.write_text(CONFIG.format(i=0, stories=args.stories))
        loaded = load_config(path)
        with Store.open(loaded.database_url) as store:
            feed = loaded.config.feeds[0].url
            entries = []
            for i in range(args.stories):
                text = texts[i % len(texts)]
                title = text.strip().splitlines()[0][:90] + f" ({i})"
                entries.append(
                    Entry(
                        guid=f"bench-{i}",
                        url=f"https://bench.example/story/{i}",
                        canonical_url=None,
                        title=title,
                        published=NOW - timedelta(minutes=i),
                        text=text,
                    )
                )
            store.save_poll(FeedState(url=feed, status=FeedStatus.OK, last_fetch=NOW), entries, NOW)
            for n in range(args.recipients):
                store.set_subscriber("bench", f"reader{n:05d}@example.com", True, NOW)

            record_issue = newsletters.compose_issue(loaded, store, loaded.config.newsletters[0], None, NOW)
            started = time.perf_counter()
            rendered = digest.render_digest(
                record_issue, archive_url="https://example.org/archive/bench/0001.html"
            )
            render_s = time.perf_counter() - started

            started = time.perf_counter()
            [outcome] = newsletters.run_due_newsletters(loaded, store, NOW)
            total_s = time.perf_counter() - started
            emls = sorted(newsletters.outbox_dir(loaded).glob("*.eml"))
            result = {
                "stories": args.stories,
                "shown": rendered.shown,
                "recipients": args.recipients,
                "sent": outcome.sent,
                "html_bytes": len(rendered.html.encode()),
                "text_bytes": len(rendered.text.encode()),
                "eml_bytes": emls[0].stat().st_size if emls else 0,
                "render_ms": round(render_s * 1000, 1),
                "run_s": round(total_s, 2),
                "ms_per_message": round(total_s * 1000 / max(1, args.recipients), 2),
                "target_ms_per_message": 10,
                "target_html_bytes": digest.MAX_HTML_BYTES,
            }
    result["ok"] = result["ms_per_message"] <= 10 and result["html_bytes"] <= digest.MAX_HTML_BYTES
    print(json.dumps(result))


if __name__ == "__main__":
    main()
