"""Edits of the topics in feeds.yaml reach the stories grouped before (``pipeline.relabel_stories``).

The story stage regroups only the last few days, and the bundled sample's articles are from
August 2025: every story here is an old one, as on a clone run some days after its first run.
Real SQLite and PostgreSQL, the bundled sample feeds, a whole cycle each time.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from aggregator import pipeline
from aggregator.config import load_config
from aggregator.store import Store
from tests.test_pipeline import cli, copy_bundled_sample, export_of

AUTOMATIC = "Morning / summer / Northern"  # the sample's automatic topic (its briefings)
LEDGER = "seeds/northern-ledger.rss.xml"


def sample_project(tmp_path: Path, database_url: str) -> Path:
    config = copy_bundled_sample(tmp_path)
    with config.open("a", encoding="utf-8") as file:
        file.write(f'database: "{database_url}"\n')
    return config


def edit(config: Path, old: str, new: str) -> None:
    text = config.read_text(encoding="utf-8")
    assert old in text
    config.write_text(text.replace(old, new, 1), encoding="utf-8")


def add_summits_topic(config: Path) -> None:
    edit(config, "topics:\n  - name: US", "topics:\n  - name: Summits\n    keywords: [summit]\n  - name: US")


def run_cycle(config: Path) -> None:
    loaded = load_config(config)
    with Store.open(loaded.database_url) as store:
        asyncio.run(pipeline.run_cycle(loaded, store, datetime.now(UTC)))


def topic_files(config: Path) -> set[str]:
    folder = config.parent / "public" / "topics"
    return {path.name for path in folder.iterdir()} if folder.exists() else set()


def stories_of(config: Path) -> dict[str, tuple[tuple[str, ...], datetime]]:
    """Story id → (topics, updated), as stored."""
    with Store.open(load_config(config).database_url) as store:
        return {s.id: (s.topics, s.updated) for s in store.iter_stories()}


def story_titles(config: Path) -> dict[str, list[str]]:
    titles: dict[str, list[str]] = {}
    for entry in export_of(config):
        titles.setdefault(entry["story"], []).append(entry["title"])
    return titles


def feed_items(config: Path) -> list[dict[str, Any]]:
    feed = json.loads((config.parent / "public" / "feed.json").read_text(encoding="utf-8"))
    items: list[dict[str, Any]] = feed["items"]
    return items


def date_modified(config: Path) -> dict[str, str]:
    return {item["id"]: item["date_modified"] for item in feed_items(config)}


def test_a_keyword_topic_added_takes_in_the_old_stories_that_mention_it(
    tmp_path: Path, database_url: str
) -> None:
    config = sample_project(tmp_path, database_url)
    assert cli(config, "run", "--once").exit_code == 0
    assert not {name for name in topic_files(config) if name.startswith("summits")}
    before = stories_of(config)
    assert any(AUTOMATIC in topics for topics, _ in before.values())
    modified_before = date_modified(config)

    add_summits_topic(config)
    result = cli(config, "run", "--once")

    assert result.exit_code == 0, result.output
    assert {"summits.atom", "summits.rss", "summits.json"} <= topic_files(config)
    after = stories_of(config)
    mentioning = {
        sid for sid, titles in story_titles(config).items() if any("summit" in t.lower() for t in titles)
    }
    assert mentioning
    assert {sid for sid, (topics, _) in after.items() if "Summits" in topics} >= mentioning
    for sid, (topics, updated) in after.items():
        old_topics, old_updated = before[sid]
        assert updated == old_updated, sid  # filed anew, not news: no digest shows it "Updated"
        # The configured topics first, in rule order, the automatic one kept, last.
        assert [t for t in topics if t != "Summits"] == list(old_topics)
    for entry in export_of(config):  # each article follows its story
        assert tuple(entry["topics"]) == after[entry["story"]][0]
    # The combined feed files them anew but says no news: each item keeps its time.
    assert date_modified(config) == modified_before
    assert {"Summits"} <= {tag for item in feed_items(config) for tag in item.get("tags", ())}


@pytest.mark.parametrize("now_given", ["", "    topics: [Regional]\n"], ids=["removed", "replaced"])
def test_a_feeds_topics_removed_leave_its_old_stories_and_their_files_go(
    tmp_path: Path, database_url: str, now_given: str
) -> None:
    config = sample_project(tmp_path, database_url)
    edit(config, f"  - url: {LEDGER}\n", f"  - url: {LEDGER}\n    topics: [Local]\n")
    run_cycle(config)
    assert {"local.atom", "local.rss", "local.json"} <= topic_files(config)
    before = stories_of(config)
    ledger = {e["story"] for e in export_of(config) if e["feed"] == LEDGER}
    assert ledger

    edit(config, "    topics: [Local]\n", now_given)  # as `aggregator feeds set URL topics=...` does
    run_cycle(config)

    assert not {name for name in topic_files(config) if name.startswith("local")}
    after = stories_of(config)
    assert all("Local" not in entry["topics"] for entry in export_of(config))
    for sid, (topics, updated) in after.items():
        kept = [t for t in before[sid][0] if t not in {"Local", AUTOMATIC}]
        given = ["Regional"] if now_given and sid in ledger else []
        automatic = [AUTOMATIC] if AUTOMATIC in before[sid][0] else []  # last, as ever
        assert (topics, updated) == ((*kept, *given, *automatic), before[sid][1])
    if now_given:
        assert {"regional.atom", "regional.rss", "regional.json"} <= topic_files(config)


@contextmanager
def statements_of(store: Store) -> Iterator[list[str]]:
    """The SQL statements ``store`` sends meanwhile."""
    sent: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        sent.append(statement)

    sa.event.listen(store.engine, "before_cursor_execute", record)
    try:
        yield sent
    finally:
        sa.event.remove(store.engine, "before_cursor_execute", record)


def test_after_a_relabel_an_unchanged_config_costs_one_small_read(tmp_path: Path, database_url: str) -> None:
    config = sample_project(tmp_path, database_url)
    run_cycle(config)
    add_summits_topic(config)
    run_cycle(config)
    assert any("Summits" in topics for topics, _ in stories_of(config).values())

    loaded = load_config(config)
    with Store.open(loaded.database_url) as store, statements_of(store) as sent:
        assert pipeline.group_into_stories(loaded.config, store, datetime.now(UTC)) == 0
    # No story is read or written: only the recent entries are looked for (none) and the record read.
    assert not [s for s in sent if "stories" in s or s.lstrip().upper().startswith(("UPDATE", "INSERT"))]
    assert len([s for s in sent if "meta" in s]) == 1


def test_the_first_run_after_the_upgrade_relabels_the_old_stories_once(
    tmp_path: Path, database_url: str
) -> None:
    config = sample_project(tmp_path, database_url)
    run_cycle(config)
    before = stories_of(config)
    # The database as the previous version left it: schema revision 0007, no record of a relabel
    # (nor what later revisions added: 0009's column).
    engine = sa.create_engine(load_config(config).database_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("DROP TABLE IF EXISTS meta"))
            conn.execute(sa.text("ALTER TABLE feeds DROP COLUMN last_warning"))
            conn.execute(sa.text("UPDATE alembic_version SET version_num = '0007'"))
    finally:
        engine.dispose()

    add_summits_topic(config)
    run_cycle(config)

    assert {"summits.atom", "summits.rss", "summits.json"} <= topic_files(config)
    after = stories_of(config)
    assert any("Summits" in topics for topics, _ in after.values())
    # Unknown before: every stored topic but those now configured is kept as automatic.
    assert any(AUTOMATIC in topics for topics, _ in after.values())
    assert {sid: updated for sid, (_, updated) in after.items()} == {
        sid: updated for sid, (_, updated) in before.items()
    }
    loaded = load_config(config)
    with Store.open(loaded.database_url) as store:
        assert store.meta_value(pipeline.TOPICS_RECORD) is not None
        assert pipeline.relabel_stories(loaded.config, store) == 0  # done once, recorded
