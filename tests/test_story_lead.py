"""A story's lead through the real command: unrelated articles never change what it shows.

Two outlets report one event; every later run brings a feed of unrelated articles.  The
story's entry in public/feed.json must keep its headline, link and ``date_modified``: a
reader's feed program shows an entry whose update time moved as changed again.
"""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from aggregator.cli import app

GLACIER = [
    (
        "Greenland glacier melt speeds up sharply",
        "Ice loss from Greenland's glaciers has sped up sharply this decade, satellite data show.",
    ),
    (
        "Melting of Greenland glaciers accelerates, researchers warn",
        "Researchers warn that Greenland's glaciers are melting faster than expected, satellite data show.",
    ),
]
# Unrelated articles are random strings of these.
WORDS = ["amber", "bridge", "cobalt", "dune", "ember", "falcon", "granite", "harbor", "iris", "juniper"]


def rss(name: str, items: list[tuple[str, str, datetime]]) -> str:
    body = "".join(
        f"<item><title>{title}</title><link>https://{name}.example/{n}</link>"
        f"<guid>{name}-{n}</guid><pubDate>{format_datetime(date)}</pubDate>"
        f"<author>desk@{name}.example ({name} desk)</author>"
        f"<description>{text}</description></item>"
        for n, (title, text, date) in enumerate(items)
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{name}</title><link>https://{name}.example/</link>{body}</channel></rss>"
    )


def run_once(config: Path) -> dict[str, Any]:
    ran = CliRunner().invoke(app, ["--config", str(config), "run", "--once"], catch_exceptions=False)
    assert ran.exit_code == 0, ran.output
    return json.loads((config.parent / "public" / "feed.json").read_text(encoding="utf-8"))


def glacier_item(feed: dict[str, Any]) -> dict[str, Any]:
    (item,) = [i for i in feed["items"] if "Greenland" in i["title"]]
    return item


def test_unrelated_feeds_added_run_after_run_never_swap_a_storys_lead(tmp_path: Path) -> None:
    event = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=3)
    urls = []
    for n, (title, text) in enumerate(GLACIER):
        path = tmp_path / f"outlet{n}.xml"
        path.write_text(
            rss(f"outlet{n}", [(title, text, event + timedelta(minutes=30 * n))]), encoding="utf-8"
        )
        urls.append(str(path))
    config = tmp_path / "feeds.yaml"

    def configure() -> None:
        lines = ["feeds:", *(f"  - url: {url}" for url in urls), "newsletters: []"]
        config.write_text("\n".join(lines) + "\n", encoding="utf-8")

    configure()
    first = glacier_item(run_once(config))
    assert first["title"] == GLACIER[0][0]  # two equally central headlines: the earliest leads
    assert first["_aggregator"]["also_reported_by"]

    words = random.Random(3)
    seen = []
    for run in range(8):
        path = tmp_path / f"unrelated{run}.xml"
        items = [
            (
                " ".join(words.choice(WORDS) for _ in range(4)).capitalize(),
                " ".join(words.choice(WORDS) for _ in range(20)),
                event + timedelta(minutes=run),
            )
            for _ in range(3)
        ]
        path.write_text(rss(f"unrelated{run}", items), encoding="utf-8")
        urls.append(str(path))
        configure()
        item = glacier_item(run_once(config))
        seen.append(item["title"])
        assert (item["id"], item["url"], item["date_modified"]) == (
            first["id"],
            first["url"],
            first["date_modified"],
        ), (run, seen)
    assert seen == [first["title"]] * len(seen)
