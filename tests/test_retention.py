"""Retention: old entries are removed for good, and do not come back from their feed.

Real parts: local feed files polled by the real pipeline, real SQLite and PostgreSQL (the
``database_url`` fixture), the ``aggregator`` command in-process.  Time is passed in: the
entries are stored "in the past" by polls given an earlier ``now``, and pruning is run
later on the same clock, or by the command on the real one.
"""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from aggregator import pipeline, retention
from aggregator.cli import app
from aggregator.clock import ManualClock
from aggregator.config import LoadedConfig, load_config
from aggregator.runlock import ingest_lock
from aggregator.store import IssueRecord, Store, entry_id
from aggregator.types import DuplicateEvidence, PruneReport

T0 = datetime(2025, 1, 10, 8, 0, tzinfo=UTC)
DAY = timedelta(days=1)


def feed_xml(*guids: str) -> str:
    """An RSS feed with one item per guid, each with a title and body of its own."""
    items = "".join(
        f"<item><title>Report {guid}</title><link>https://news.example/{guid}</link>"
        f"<guid>https://news.example/{guid}</guid>"
        f"<description>Unrelated words number {guid}: {guid * 3} {guid[::-1]}.</description></item>"
        for guid in guids
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>News</title>'
        f"<link>https://news.example/</link><description>d</description>{items}</channel></rss>"
    )


def project(folder: Path, database: str, *, retention_yaml: str = "", newsletters: str = "[]") -> Path:
    config = folder / "feeds.yaml"
    config.write_text(
        f"feeds:\n  - url: news.xml\n    title: News\nnewsletters: {newsletters}\n"
        f"{retention_yaml}database: {database}\n",
        encoding="utf-8",
    )
    return config


def carry(folder: Path, *guids: str) -> None:
    (folder / "news.xml").write_text(feed_xml(*guids), encoding="utf-8")


def poll(loaded: LoadedConfig, store: Store, now: datetime) -> int:
    """Poll every feed at ``now``; how many entries were new."""
    summary = asyncio.run(pipeline.poll_feeds(loaded, store, now))
    assert summary.failed == 0, summary
    return summary.new_entries


def prune(loaded: LoadedConfig, store: Store, now: datetime) -> PruneReport:
    with ingest_lock(loaded.database_url, exclusive=True):
        report = pipeline.prune_entries(loaded, store, now)
    assert report is not None
    return report


def guids(store: Store) -> list[str]:
    return sorted(e.entry.guid.rsplit("/", 1)[1] for e in store.iter_entries(bodies=False))


def eid(guid: str) -> str:
    return entry_id("news.xml", f"https://news.example/{guid}")


def invoke(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


# --------------------------------------------------------------------------- the rule, pure


def test_a_copy_group_goes_whole_or_not_at_all_chains_included() -> None:
    duplicate_of = {"a": None, "a2": "a", "b": None, "b2": "b", "c": None, "d": "e", "e": "f", "f": None}
    groups, kept = retention.removable_groups(["a", "a2", "b", "c", "d", "e"], duplicate_of)
    # b's copy b2 is newer: b stays; f is newer, so its chain d → e → f stays whole.
    assert groups == [["a", "a2"], ["c"]]
    assert kept == 3
    assert list(retention.in_chunks([["a", "a2"], ["c"], ["x", "y", "z"]], 3)) == [
        ["a", "a2", "c"],
        ["x", "y", "z"],
    ]


def test_the_cutoff_waits_for_the_next_issue_of_every_newsletter() -> None:
    now = T0 + 200 * DAY
    assert retention.retention_cutoff(now, 180 * DAY, {}) == (T0 + 20 * DAY, None)
    holds = {"daily": now - DAY, "monthly": T0 + 5 * DAY}
    assert retention.retention_cutoff(now, 180 * DAY, holds) == (T0 + 5 * DAY, "monthly")
    # A max_age reaching before year 1 removes nothing, rather than failing.
    assert retention.retention_cutoff(now, timedelta(days=999_999_999), {})[0].year == 1


# --------------------------------------------------------------------------- end to end


def test_old_entries_are_removed_and_a_feed_still_carrying_one_does_not_bring_it_back(
    tmp_path: Path, database_url: str
) -> None:
    # There was no retention at all: the database grew forever.
    loaded = load_config(project(tmp_path, database_url))
    clock = ManualClock(T0)
    with Store.open(loaded.database_url) as store:
        carry(tmp_path, "old1", "old2")
        assert poll(loaded, store, clock.now()) == 2
        clock.advance(100 * DAY)
        carry(tmp_path, "old1", "old2", "mid")  # a feed that keeps its whole archive
        assert poll(loaded, store, clock.now()) == 1
        clock.advance(100 * DAY)

        report = prune(loaded, store, clock.now())
        assert (report.removed, report.cutoff, report.held_by) == (
            (("news.xml", 2),),
            clock.now() - 180 * DAY,
            None,
        )
        assert guids(store) == ["mid"]
        assert store.entry_counts() == {"news.xml": 1}

        # The feed still carries both, and a new one: only that one is stored.
        carry(tmp_path, "old1", "old2", "mid", "new")
        clock.advance(timedelta(hours=1))
        assert poll(loaded, store, clock.now()) == 1
        assert guids(store) == ["mid", "new"]
        assert prune(loaded, store, clock.now()).entries == 0  # and nothing twice


def test_entries_a_newsletter_has_not_had_its_chance_at_are_kept_and_issues_are_untouched(
    tmp_path: Path, database_url: str
) -> None:
    letters = '[{name: monthly, title: Monthly, schedule: "0 7 1 * *"}, {name: daily, title: Daily}]'
    loaded = load_config(project(tmp_path, database_url, newsletters=letters))
    now = T0 + 200 * DAY
    with Store.open(loaded.database_url) as store:
        carry(tmp_path, "before")
        poll(loaded, store, T0)
        carry(tmp_path, "before", "pending")
        poll(loaded, store, T0 + 2 * DAY)
        # monthly's latest issue ended between the two (its publisher paused it since).
        issue = IssueRecord("monthly", 1, None, T0 + DAY, T0 + DAY, "sending", 1, '{"frozen": true}')
        store.freeze_issue(issue, ["reader@example.org"], T0 + DAY)
        daily = IssueRecord("daily", 1, None, now - DAY, now - DAY, "done", 0, "{}")
        store.freeze_issue(daily, [], now - DAY)

        report = prune(loaded, store, now)
        assert (report.cutoff, report.held_by, report.entries) == (T0 + DAY, "monthly", 1)
        assert guids(store) == ["pending"]  # what monthly's next issue is to carry
        # The frozen issue keeps its own snapshot and its deliveries.
        assert store.latest_issue("monthly") == issue
        assert [d.recipient for d in store.deliveries("monthly", 1)] == ["reader@example.org"]


def test_a_copy_group_straddling_the_cutoff_is_kept_whole_and_emptied_stories_go(
    tmp_path: Path, database_url: str
) -> None:
    loaded = load_config(project(tmp_path, database_url))
    with Store.open(loaded.database_url) as store:
        carry(tmp_path, "wire", "alone", "pair1", "pair2")
        poll(loaded, store, T0)
        carry(tmp_path, "wire", "alone", "pair1", "pair2", "copy")
        poll(loaded, store, T0 + 190 * DAY)
        # "copy" (new) is a copy of "wire" (old); "pair2" of "pair1", both old.
        store.save_duplicates(
            [
                DuplicateEvidence(eid("copy"), eid("wire"), "content", 0.9),
                DuplicateEvidence(eid("pair2"), eid("pair1"), "content", 0.9),
            ],
            signatures=[(e.id, b"sig") for e in store.iter_entries(bodies=False)],
        )
        store.save_stories(
            [("s-wire", "Wire", ()), ("s-alone", "Alone", ()), ("s-pair", "Pair", ())],
            [
                (eid("wire"), "s-wire"),
                (eid("copy"), "s-wire"),
                (eid("alone"), "s-alone"),
                (eid("pair1"), "s-pair"),
                (eid("pair2"), "s-pair"),
            ],
            T0,
        )

        report = prune(loaded, store, T0 + 200 * DAY)
        assert (report.entries, report.kept_copies, report.stories) == (3, 1, 2)
        assert guids(store) == ["copy", "wire"]
        kept = store.get_entry(eid("copy"))
        assert kept is not None
        assert kept.duplicate_of == eid("wire")
        assert [s.id for s in store.iter_stories()] == ["s-wire"]
        with store.engine.connect() as conn:
            stories = conn.execute(sa.text("SELECT id FROM stories")).scalars().all()
            signatures = conn.execute(sa.text("SELECT count(*) FROM entry_signatures")).scalar()
        assert (stories, signatures) == (["s-wire"], 2)  # the removed entries' went with them


# --------------------------------------------------------------------------- the command


def test_prune_dry_run_then_prune_then_status_and_export_show_it(tmp_path: Path, database_url: str) -> None:
    config = project(tmp_path, database_url)
    loaded = load_config(config)
    real_now = datetime.now(UTC)
    with Store.open(loaded.database_url) as store:
        carry(tmp_path, "old1", "old2")
        poll(loaded, store, real_now - 300 * DAY)
        carry(tmp_path, "old1", "old2", "recent")
        poll(loaded, store, real_now - 10 * DAY)

    code, stdout, stderr = invoke(config, "prune", "--dry-run")
    assert code == 0, stderr
    assert "would remove 2 entries stored before" in stdout
    assert "(retention.max_age: 180d)" in stdout
    assert "  News (news.xml): 2 entries" in stdout
    assert "dry run: nothing was removed" in stdout
    assert json.loads(invoke(config, "status", "--format", "json")[1])[0]["entries"] == 3

    code, stdout, stderr = invoke(config, "prune")
    assert code == 0, stderr
    assert stdout.startswith("removed 2 entries stored before")
    assert "  News (news.xml): 2 entries" in stdout
    assert json.loads(invoke(config, "status", "--format", "json")[1])[0]["entries"] == 1
    exported = [json.loads(line)["guid"] for line in invoke(config, "export")[1].splitlines()]
    assert exported == ["https://news.example/recent"]

    code, stdout, _ = invoke(config, "prune")
    assert (code, stdout.split(":")[0]) == (0, "nothing to remove")


def test_prune_with_retention_off_removes_nothing(tmp_path: Path) -> None:
    config = project(
        tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}", retention_yaml="retention:\n  max_age: null\n"
    )
    loaded = load_config(config)
    with Store.open(loaded.database_url) as store:
        carry(tmp_path, "ancient")
        poll(loaded, store, datetime.now(UTC) - 3000 * DAY)
    code, stdout, stderr = invoke(config, "prune")
    assert (code, stderr) == (0, "")
    assert stdout == "retention is off in feeds.yaml (retention.max_age: null): nothing removed\n"
    with Store.open(loaded.database_url) as store:
        assert guids(store) == ["ancient"]
        assert pipeline.prune_entries(loaded, store, datetime.now(UTC)) is None


def test_prune_on_a_fresh_install_creates_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = project(tmp_path, "sqlite:///data/aggregator.sqlite")
    carry(tmp_path, "a")
    monkeypatch.chdir(tmp_path)
    before = set(tmp_path.rglob("*"))
    code, stdout, stderr = invoke(config, "prune")
    assert (code, stdout) == (0, "")
    assert stderr.startswith("no database yet at data/aggregator.sqlite")
    assert set(tmp_path.rglob("*")) == before


def test_run_once_prunes_last_and_says_how_many_entries_went(tmp_path: Path) -> None:
    config = project(tmp_path, f"sqlite:///{tmp_path / 'db.sqlite'}")
    loaded = load_config(config)
    with Store.open(loaded.database_url) as store:
        carry(tmp_path, "old1", "old2")
        poll(loaded, store, datetime.now(UTC) - 300 * DAY)
    carry(tmp_path, "old1", "old2", "fresh")
    code, _, stderr = invoke(config, "run", "--once")
    assert code == 0, stderr
    assert stderr.rstrip().splitlines()[-1].startswith("retention: 2 old entries removed (stored before ")
    assert "1 new" in stderr  # polled before pruning, as a cycle comes first
    with Store.open(loaded.database_url) as store:
        assert guids(store) == ["fresh"]
    # The combined feeds, written before the prune, are written again without them.
    atom = (tmp_path / "public" / "feed.atom").read_text(encoding="utf-8")
    assert "Report fresh" in atom
    assert "Report old1" not in atom
    code, _, stderr = invoke(config, "run", "--once")
    assert code == 0, stderr
    assert "old entries removed" not in stderr  # said only when some went


def test_run_once_whose_retention_fails_still_reports_what_it_polled_and_sent(tmp_path: Path) -> None:
    # A failing prune jumped past the reports: exit 2 and one error line, though an issue
    # had gone out and the feeds were polled.
    config = project(
        tmp_path,
        f"sqlite:///{tmp_path / 'db.sqlite'}",
        newsletters="[{name: daily, title: Daily, subscribers: [a@example.org]}]",
    )
    loaded = load_config(config)
    with Store.open(loaded.database_url) as store:
        carry(tmp_path, "old")
        poll(loaded, store, datetime.now(UTC) - 300 * DAY)
        with store.engine.begin() as conn:  # the database refuses the prune's deletes
            conn.execute(
                sa.text(
                    "CREATE TRIGGER refuse_deletes BEFORE DELETE ON entries "
                    "BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END"
                )
            )
    carry(tmp_path, "old", "fresh")
    code, _, stderr = invoke(config, "run", "--once")
    assert code == 1, stderr
    assert "1 new" in stderr
    assert "daily #1:" in stderr  # the issue that went out is still reported
    assert stderr.rstrip().splitlines()[-1].startswith("error: retention: ")
    assert "disk I/O error" in stderr
