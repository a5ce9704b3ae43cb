"""A story left out of an issue because none of its copies had a link goes out once one has.

Real parts: local feed files, a real SQLite store, the outbox and archive on disk, and the
``aggregator`` command in-process (typer's runner) as an operator runs it.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from tests.test_newsletters import TEST_KEY

TITLE = "Wire copy without link: glacier melt accelerates in Greenland"
DESCRIPTION = (
    "Greenland's glaciers are losing ice faster than at any time on record, researchers said on "
    "Tuesday, after a summer of record temperatures across the Arctic."
)


OTHER = """<item><title>Harbour bridge opens to traffic</title>
<link>https://wire-a.example/bridge</link><guid>https://wire-a.example/bridge</guid>
<description>The new bridge opened this morning.</description></item>"""


def wire_feed(title: str, link: str | None, other: str = "") -> str:
    """An RSS feed carrying the wire story, with ``link`` or with none, and ``other`` items."""
    link_element = f"<link>{link}</link>" if link else ""
    return f"""<?xml version="1.0" encoding="utf-8"?>
<rss version="2.0"><channel><title>{title}</title><link>https://wire.example/</link>
<item><title>{TITLE}</title>{link_element}<guid isPermaLink="false">nolink-1</guid>
<description>{DESCRIPTION}</description></item>{other}
</channel></rss>
"""


def write_config(folder: Path, feeds: list[tuple[str, str]]) -> Path:
    listed = "".join(f"  - url: {url}\n    title: {title}\n" for url, title in feeds)
    names = ", ".join(url for url, _title in feeds)
    config = folder / "feeds.yaml"
    config.write_text(
        f"feeds:\n{listed}"
        "newsletters:\n"
        "  - name: daily\n"
        "    title: The Daily\n"
        '    schedule: "0 0 1 1 *"\n'  # never due by itself while the test runs
        "    timezone: UTC\n"
        "    sender: digest@example.com\n"
        "    subscribers: [reader@example.com]\n"
        f"    feeds: [{names}]\n",
        encoding="utf-8",
    )
    return config


def invoke(config: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


def test_a_story_dropped_for_lacking_a_link_goes_out_once_a_linked_copy_arrives(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.xml").write_text(wire_feed("Wire A", None, OTHER), encoding="utf-8")
    (tmp_path / "b.xml").write_text(wire_feed("Wire B", "https://wire-b.example/glacier"), encoding="utf-8")
    config = write_config(tmp_path, [("a.xml", "Wire A")])
    invoke(config, "poll")
    with caplog.at_level(logging.WARNING, logger="aggregator.digest"):
        invoke(config, "digest", "daily", "--send")
    # The operator is told what was left out: the outlet and the headline, not an internal id.
    [warning] = [r.getMessage() for r in caplog.records if "http(s) link" in r.getMessage()]
    assert "Wire A" in warning
    assert TITLE in warning
    archive = tmp_path / "newsletters" / "archive" / "daily"
    [first] = sorted(archive.glob("*.txt"))
    assert "Harbour bridge opens to traffic" in first.read_text(encoding="utf-8")
    assert TITLE not in first.read_text(encoding="utf-8")

    # The same item from a feed that links it: a copy of the article, not a new one.
    write_config(tmp_path, [("a.xml", "Wire A"), ("b.xml", "Wire B")])
    ran = invoke(config, "run", "--once")
    assert "1 entries collapsed as copies" in ran
    said = invoke(config, "digest", "daily", "--send")
    assert "nothing new" not in said
    [_first, text] = sorted(archive.glob("*.txt"))
    assert TITLE in text.read_text(encoding="utf-8")
    assert "https://wire-b.example/glacier" in text.read_text(encoding="utf-8")
    assert TITLE in text.with_suffix(".html").read_text(encoding="utf-8")


def test_a_story_already_sent_is_not_sent_again_for_a_linked_copy(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "a.xml").write_text(wire_feed("Wire A", "https://wire-a.example/glacier"), encoding="utf-8")
    (tmp_path / "b.xml").write_text(wire_feed("Wire B", "https://wire-b.example/glacier"), encoding="utf-8")
    config = write_config(tmp_path, [("a.xml", "Wire A")])
    invoke(config, "poll")
    invoke(config, "digest", "daily", "--send")
    archive = tmp_path / "newsletters" / "archive" / "daily"
    assert len(list(archive.glob("*.txt"))) == 1

    write_config(tmp_path, [("a.xml", "Wire A"), ("b.xml", "Wire B")])
    assert "1 entries collapsed as copies" in invoke(config, "run", "--once")
    assert "nothing new" in invoke(config, "digest", "daily", "--send")
    assert len(list(archive.glob("*.txt"))) == 1
