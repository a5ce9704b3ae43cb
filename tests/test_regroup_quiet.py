"""A cycle that brings nothing new changes no story, and one new article changes only its own.

End to end through ``aggregator run --once`` on local feed files, as a fresh install whose
feeds carry older items sees it: one feed dated years back, one without dates, one Latin-1.
The first run groups them all; the story stage then regroups only the recent entries, and
the automatic topics (named from the whole population) must not be renamed because of that.
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from typer.testing import CliRunner

from aggregator.cli import app

# Subjects the stories are about: each gives several different stories sharing two or three
# names, so that automatic topics form.
SUBJECTS = [
    ("Tesla", "Gigafactory", "battery", ["recalls", "opens", "delays", "expands", "cuts"]),
    ("Airbus", "A350", "engines", ["orders", "inspects", "grounds", "delivers", "tests"]),
    ("Bundesbank", "inflation", "rates", ["warns", "forecasts", "raises", "reviews", "holds"]),
    ("Nintendo", "Switch", "console", ["launches", "discounts", "patches", "ships", "reveals"]),
    ("Siemens", "Energy", "turbines", ["sells", "repairs", "builds", "wins", "loses"]),
    ("Lufthansa", "pilots", "strike", ["ends", "plans", "calls", "settles", "extends"]),
]
WORDS = [
    f"{a}{b}{c}"
    for a in ("kor", "mel", "sav", "dun", "pri", "tol", "ves", "gar")
    for b in ("an", "ix", "ol", "ur", "em")
    for c in ("dt", "sk", "ve", "ra", "lo")
]
PLACES = ["Berlin", "Hamburg", "Munich", "Cologne", "Dresden", "Leipzig", "Bremen", "Kiel"]


def article(number: int) -> tuple[str, str]:
    """The title and text of the ``number``th article: an event of its own (two of them per
    event), named with two of its subject's words."""
    event = number // 2
    name, thing, what, verbs = SUBJECTS[event % len(SUBJECTS)]
    verb = verbs[(event // len(SUBJECTS)) % len(verbs)]
    words = [WORDS[(event * 7 + k * 13) % len(WORDS)] for k in range(5)]
    pair = [name, thing] if event % 2 else [name, what]
    title = f"{pair[0]} {verb} {pair[1]} {words[0]} {words[1]} {words[2]}"
    if number % 2:
        title = f"{words[1]} {words[0]} {pair[1]}: {pair[0]} {verb}"
    text = f"{' '.join(words)} {pair[0]} {pair[1]} {words[3]} {words[4]} {words[2]}."
    return title, text


def rss(items: list[tuple[int, datetime | None]], encoding: str = "utf-8") -> bytes:
    parts = []
    for number, date in items:
        title, text = article(number)
        when = f"<pubDate>{format_datetime(date)}</pubDate>" if date is not None else ""
        parts.append(
            f"<item><guid>https://news.example/{number}</guid><title>{escape(title)}</title>"
            f"<link>https://news.example/{number}</link>{when}"
            f"<description>{escape(text)}</description></item>"
        )
    body = (
        f'<?xml version="1.0" encoding="{encoding}"?>\n<rss version="2.0"><channel>'
        "<title>Wire</title><link>https://news.example/</link><description>d</description>"
        + "".join(parts)
        + "</channel></rss>\n"
    )
    return body.encode(encoding)


OLD = datetime(2018, 3, 5, 9, 0, tzinfo=UTC)
RECENT = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)


def feeds(tmp_path: Path, extra: int = 0) -> Path:
    """Three feeds: the first dated 2018, the second undated, the third Latin-1 and recent;
    ``extra`` more undated articles at the top of the second."""
    (tmp_path / "old.xml").write_bytes(rss([(n, OLD + timedelta(hours=n)) for n in range(0, 30)]))
    undated = [(n, None) for n in range(30, 55)]
    undated = [(n, None) for n in range(100, 100 + extra)] + undated
    (tmp_path / "undated.xml").write_bytes(rss(undated))
    (tmp_path / "latin1.xml").write_bytes(
        rss([(n, RECENT - timedelta(minutes=n)) for n in range(55, 75)], encoding="iso-8859-1")
    )
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds:\n  - url: old.xml\n  - url: undated.xml\n  - url: latin1.xml\nnewsletters: []\n",
        encoding="utf-8",
    )
    return config


def cli(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def stories(config: Path) -> dict[str, dict[str, Any]]:
    """Each exported entry's story, topics and story updated time, by guid."""
    exported = [json.loads(line) for line in cli(config, "export", "--format", "jsonl").stdout.splitlines()]
    return {e["guid"]: e for e in exported}


def output_files(config: Path) -> dict[str, bytes]:
    public = config.parent / "public"
    return {str(p.relative_to(public)): p.read_bytes() for p in sorted(public.rglob("*")) if p.is_file()}


def atom_entries(config: Path) -> dict[str, tuple[str, ...]]:
    """Each entry of public/feed.atom by id: its updated time, title and categories."""
    ns = {"a": "http://www.w3.org/2005/Atom"}
    root = ET.parse(config.parent / "public" / "feed.atom").getroot()
    return {
        entry.findtext("a:id", namespaces=ns) or "": (
            entry.findtext("a:updated", namespaces=ns) or "",
            entry.findtext("a:title", namespaces=ns) or "",
            *(c.get("term", "") for c in entry.findall("a:category", ns)),
        )
        for entry in root.findall("a:entry", ns)
    }


def test_a_second_run_with_nothing_new_changes_no_story_and_no_file(tmp_path: Path) -> None:
    config = feeds(tmp_path)
    cli(config, "run", "--once")
    before, files_before = stories(config), output_files(config)
    assert any(e["topics"] for e in before.values()), "the articles should get automatic topics"

    second = cli(config, "run", "--once")
    assert "(0 of" in second.output, second.output
    assert stories(config) == before
    assert output_files(config) == files_before


def test_one_new_article_changes_only_the_story_it_joins(tmp_path: Path) -> None:
    config = feeds(tmp_path)
    cli(config, "run", "--once")
    cli(config, "run", "--once")
    before, atom_before = stories(config), atom_entries(config)

    feeds(tmp_path, extra=1)  # one more undated article, about a subject already in the news
    polled = cli(config, "poll")  # the feeds are not due yet for `run --once`
    assert "1 new and 0 updated entries" in polled.output, polled.output
    third = cli(config, "run", "--once")
    assert "1 stories regrouped" in third.output, third.output
    after = stories(config)
    new = after.pop("https://news.example/100")
    assert new["story"] is not None
    assert new["topics"], new  # it joined a story with a topic, and is in that topic
    touched = {guid for guid, e in after.items() if e != before[guid]}
    # only entries of the story the new article joined (if any) may change
    assert all(after[guid]["story"] == new["story"] for guid in touched), touched
    atom_after = atom_entries(config)
    changed = {id for id in atom_after if atom_before.get(id) != atom_after[id]}
    assert len(changed) <= 1, changed
    assert {id: atom_after[id] for id in atom_before if id not in changed and id in atom_after} == {
        id: entry for id, entry in atom_before.items() if id not in changed and id in atom_after
    }
