"""An entry's updated time in the combined feeds, end to end through ``aggregator run --once``.

A story's entry can change what it shows with no copy of it changed in the store: the feed
of its lead removed from feeds.yaml (the entry is then shown from another outlet's copy),
an outlet renamed.  Its <updated> / date_modified stayed put, and readers that refresh an
entry only when that moves kept showing the old link, often to the outlet removed.
"""

from __future__ import annotations

from datetime import datetime
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from aggregator.cli import app
from tests.test_publish import ATOM, assert_valid_atom, assert_valid_json_feed, assert_valid_rss

ITEM_FEED = """<?xml version="1.0"?><rss version="2.0"><channel><title>{host}</title>
<link>https://{host}/</link><description>d</description>
<item><title>Harbour bridge closes for repairs</title><link>https://{host}/bridge</link><guid>bridge</guid>
<pubDate>Mon, 18 Aug 2025 {hour}:00:00 GMT</pubDate>
<description>The harbour bridge closes for three weeks of repairs from Monday, the city said.</description>
</item></channel></rss>"""


def cli(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def two_outlets(tmp_path: Path) -> Path:
    """a.rss ("Outlet A", 01:00) and b.rss ("Outlet B", 02:00) carrying the same article."""
    for name, host, hour in (("a.rss", "a.example", "01"), ("b.rss", "b.example", "02")):
        (tmp_path / name).write_text(ITEM_FEED.format(host=host, hour=hour), encoding="utf-8")
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds:\n  - url: a.rss\n    title: Outlet A\n  - url: b.rss\n    title: Outlet B\nnewsletters: []\n",
        encoding="utf-8",
    )
    return config


def shown(public: Path) -> dict[str, tuple[datetime, str]]:
    """Format → (the bridge story's updated time in that file, what its entry shows)."""
    atom = assert_valid_atom((public / "feed.atom").read_bytes())
    (entry,) = atom.iter(f"{ATOM}entry")
    rss = assert_valid_rss((public / "feed.rss").read_bytes())
    (item,) = rss.iter("item")
    (json_item,) = assert_valid_json_feed((public / "feed.json").read_bytes())["items"]
    return {
        "atom": (
            datetime.fromisoformat(entry.findtext(f"{ATOM}updated") or ""),
            (entry.find(f"{ATOM}link[@rel='alternate']").get("href") or "")
            + (entry.findtext(f"{ATOM}content") or ""),
        ),
        # RSS 2.0 has no updated time of an item: the channel's lastBuildDate tells of the change.
        "rss": (
            parsedate_to_datetime(rss.findtext("channel/lastBuildDate") or ""),
            (item.findtext("link") or "") + (item.findtext("description") or ""),
        ),
        "json": (
            datetime.fromisoformat(json_item["date_modified"]),
            json_item["url"] + json_item["content_html"],
        ),
    }


def files_as_written(public: Path) -> dict[str, tuple[bytes, int]]:
    return {
        str(p.relative_to(public)): (p.read_bytes(), p.stat().st_mtime_ns)
        for p in sorted(public.rglob("*"))
        if p.is_file()
    }


def assert_moved_forward(
    before: dict[str, tuple[datetime, str]], after: dict[str, tuple[datetime, str]]
) -> None:
    for fmt in ("atom", "rss", "json"):
        assert after[fmt][1] != before[fmt][1], fmt  # it shows something else ...
        assert after[fmt][0] > before[fmt][0], fmt  # ... and says it changed
    assert after["atom"][0] == after["json"][0] == after["rss"][0]


def assert_a_quiet_run_keeps_everything(config: Path, public: Path) -> None:
    files = files_as_written(public)
    cli(config, "run", "--once")
    assert files_as_written(public) == files


def test_an_entry_shown_from_another_outlet_after_its_leads_feed_is_removed_says_it_changed(
    tmp_path: Path,
) -> None:
    config, public = two_outlets(tmp_path), tmp_path / "public"
    cli(config, "run", "--once")
    first = shown(public)
    assert first["atom"][1].startswith("https://a.example/bridge")
    assert "Outlet B" in first["atom"][1]  # also reported by
    assert_a_quiet_run_keeps_everything(config, public)

    cli(config, "feeds", "remove", "a.rss")
    cli(config, "run", "--once")
    after = shown(public)
    for fmt in ("atom", "rss", "json"):
        assert after[fmt][1].startswith("https://b.example/bridge"), fmt
        assert "Outlet A" not in after[fmt][1], fmt
    assert_moved_forward(first, after)
    assert_a_quiet_run_keeps_everything(config, public)
    assert shown(public) == after


def test_an_entry_whose_outlet_is_renamed_says_it_changed(tmp_path: Path) -> None:
    config, public = two_outlets(tmp_path), tmp_path / "public"
    cli(config, "run", "--once")
    first = shown(public)
    assert 'Source: <a href="https://a.example/bridge">Outlet A</a>' in first["atom"][1]

    cli(config, "feeds", "set", "a.rss", "title=Outlet A Renamed")
    cli(config, "run", "--once")
    after = shown(public)
    for fmt in ("atom", "rss", "json"):
        assert "Outlet A Renamed</a>" in after[fmt][1], fmt
    assert_moved_forward(first, after)
    assert_a_quiet_run_keeps_everything(config, public)
    assert shown(public) == after
