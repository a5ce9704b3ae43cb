"""``aggregator status`` says which feeds moved permanently for as long as feeds.yaml still
names the old address.

The poll that adopts a permanent redirect prints a notice once; a poll killed between storing
the new address and printing it, or a notice lost in cron's mail, left the out-of-date line of
feeds.yaml unmentioned for good.  Real parts: a loopback server answering 301, a real SQLite
file, the command in-process (typer's runner) with rich drawing at a given width.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console
from typer.testing import CliRunner

import aggregator.cli
from aggregator.cli import app
from tests.feedserver import RSS, FeedServer

CONFIRMATIONS = 3  # polls that see the same 301 before its target is polled instead


def invoke(config: Path, *args: str) -> Any:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def moved_server(server: FeedServer) -> tuple[str, str]:
    """``/moved.xml`` answering 301 to ``/moved-new.xml``, which serves a feed."""
    server.redirects["/moved.xml"] = (301, "/moved-new.xml")
    server.add_feed("/moved-new.xml", RSS)
    return server.url("/moved.xml"), server.url("/moved-new.xml")


def write_config(folder: Path, *urls: str) -> Path:
    config = folder / "feeds.yaml"
    config.write_text(
        "feeds:\n" + "".join(f"  - url: {url}\n" for url in urls) + "newsletters: []\n", encoding="utf-8"
    )
    return config


def status_json(config: Path) -> dict[str, dict[str, Any]]:
    return {row["url"]: row for row in json.loads(invoke(config, "status", "--format", "json").stdout)}


def status_table(config: Path, monkeypatch: pytest.MonkeyPatch, width: int) -> str:
    """``aggregator status`` as a terminal ``width`` columns wide shows it."""
    monkeypatch.setattr(aggregator.cli, "out", Console(width=width, soft_wrap=True))
    return str(invoke(config, "status").stdout)


# A table of seven columns, one of four (60 to 99 columns), a line per feed (under 60).
WIDTHS = (160, 80, 40)


def test_status_says_a_feed_moved_until_feeds_yaml_names_the_new_address(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    old, new = moved_server(feed_server)
    config = write_config(tmp_path, old, feed_server.url("/feed.xml"))
    for _ in range(CONFIRMATIONS - 1):  # seen, not yet adopted: nothing to say
        invoke(config, "poll")
        assert status_json(config)[old].get("moved_to") is None
        for width in WIDTHS:
            assert "moved" not in status_table(config, monkeypatch, width).replace("/moved.xml", ""), width
    adopting = invoke(config, "poll")
    assert f"feeds.yaml:2: {old} has moved permanently to {new}" in adopting.stderr  # told once, here

    rows = status_json(config)
    # The contract's keys as they were, the new address beside them.
    assert {k: rows[old][k] for k in ("url", "status", "error", "moved_to")} == {
        "url": old,
        "status": "ok",
        "error": None,
        "moved_to": new,
    }
    assert rows[feed_server.url("/feed.xml")]["moved_to"] is None
    for width in WIDTHS:
        shown = status_table(config, monkeypatch, width)
        # Whole and on its line of feeds.yaml, as the adopting poll's notice said it.
        assert f"feeds.yaml:2: {old} has moved permanently to {new}; polling the new" in shown, shown
        assert shown.count("moved permanently") == 1, shown  # the feed that did not move says nothing

    # The poll after it (the one a person would see next) prints no notice: status still says it.
    assert "moved" not in invoke(config, "poll").stderr
    assert status_json(config)[old]["moved_to"] == new

    # feeds.yaml updated to the new address: nothing more to say.
    config = write_config(tmp_path, new, feed_server.url("/feed.xml"))
    invoke(config, "poll")
    assert [row["moved_to"] for row in status_json(config).values()] == [None, None]
    for width in WIDTHS:
        assert "moved" not in status_table(config, monkeypatch, width), width


def test_the_moved_line_never_shows_the_password_of_either_address(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A relative Location keeps the feed's credentials (fetch._redirect_target): the adopted
    # address has the password too.
    old, new = (url.replace("//", "//reader:s3cret@") for url in moved_server(feed_server))
    config = write_config(tmp_path, old)
    for _ in range(CONFIRMATIONS):
        invoke(config, "poll")
    [row] = status_json(config).values()
    masked_new = new.replace("s3cret", "***")
    assert row["moved_to"] == masked_new
    for width in WIDTHS:
        shown = status_table(config, monkeypatch, width)
        assert f"moved permanently to {masked_new}" in shown, shown
        assert "s3cret" not in shown
