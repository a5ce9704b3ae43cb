"""Tabs the aggregator reads but ruamel's round-trip loader refuses (at the end of a line, after
``key:``, before a comment): ``aggregator feeds …`` and the web editor read such a file, and an
edit changes the edited item and those tabs only; a tab it still cannot read is named by line."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from aggregator import cli
from aggregator.cli_feeds import feeds_app
from aggregator.config import load_config
from aggregator.configedit import ConfigDocument
from tests.test_web_admin import TOKEN, make_app, serve

if not any(group.name == "feeds" for group in cli.app.registered_groups):
    cli.app.add_typer(feeds_app, name="feeds")  # until aggregator/cli.py registers it

# {feeds}, {url}, {sep} and {title} hold what each case puts there; a tab inside the block
# scalar (content, on both loaders) must be kept as it is.
LAYOUT = (
    "# My feeds\n"
    "feeds:{feeds}\n"
    "  - url: seeds/northern-ledger.rss.xml{url}\n"
    "    title:{sep}Ledger{title}\n"
    "\n"
    "  - url: https://other.example/feed\n"
    "    title: Other   # kept\n"
    "newsletters:\n"
    "  - name: morning\n"
    "    title: |\n"
    "      Morning\t\n"
    "      Digest\n"
)
PLAIN = {"feeds": "", "url": "", "sep": " ", "title": ""}

# name: (what the file holds, what the editor writes for it)
CASES: dict[str, tuple[dict[str, str], dict[str, str]]] = {
    "trailing_tab_after_a_url": ({"url": "\t"}, {}),
    "trailing_blanks_with_a_tab_after_a_key": ({"feeds": " \t "}, {}),
    "tab_after_a_colon": ({"sep": "\t"}, {}),
    "space_and_tab_after_a_colon": ({"sep": " \t"}, {}),
    # The comment's tab comes first: it used to be blamed for the trailing tab below it.
    "tab_before_a_comment_then_a_trailing_tab": (
        {"url": "\t# the ledger", "title": " \t"},
        {"url": "  # the ledger"},  # the '#' stays in its column (tab stops every 8)
    ),
}


def run(config: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli.app, ["--config", str(config), *args])
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result.exit_code, result.stdout, result.stderr


def write_case(tmp_path: Path, name: str) -> tuple[Path, str]:
    """feeds.yaml of case ``name``, and the same text with its tabs as the editor writes them."""
    held, written = CASES[name]
    (tmp_path / "seeds").mkdir(exist_ok=True)
    (tmp_path / "seeds" / "northern-ledger.rss.xml").write_text("<rss/>")
    path = tmp_path / "feeds.yaml"
    path.write_text(LAYOUT.format_map(PLAIN | held), encoding="utf-8")
    return path, LAYOUT.format_map(PLAIN | written)


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_aggregator_reads_the_file(tmp_path: Path, name: str) -> None:
    path, _ = write_case(tmp_path, name)
    assert run(path, "config", "check")[:2] == (0, f"{path}: ok\n")


@pytest.mark.parametrize("name", sorted(CASES))
def test_list_reads_the_file_and_leaves_it_alone(tmp_path: Path, name: str) -> None:
    path, _ = write_case(tmp_path, name)
    before = path.read_bytes()
    code, stdout, stderr = run(path, "feeds", "list", "--format", "json")
    assert code == 0, stderr
    assert [(row["url"], row["title"]) for row in json.loads(stdout)] == [
        ("seeds/northern-ledger.rss.xml", "Ledger"),
        ("https://other.example/feed", "Other"),
    ]
    assert path.read_bytes() == before
    code, stdout, stderr = run(path, "feeds", "export")
    assert code == 0, stderr
    assert len(json.loads(stdout)) == 2


@pytest.mark.parametrize("name", sorted(CASES))
def test_set_on_the_feed_with_the_tab_changes_only_it_and_the_tabs(tmp_path: Path, name: str) -> None:
    path, written = write_case(tmp_path, name)
    code, stdout, stderr = run(path, "feeds", "set", "Ledger", "interval=2h")
    assert code == 0, stderr
    assert stdout == "feeds.yaml:3: interval=2h\n"
    assert path.read_text(encoding="utf-8") == written.replace(
        "    title: Ledger\n", "    title: Ledger\n    interval: 2h\n"
    )
    assert "feeds.yaml: the tab" in stderr  # the user is told what else changed


@pytest.mark.parametrize("name", sorted(CASES))
def test_set_on_another_feed_changes_only_it_and_the_tabs(tmp_path: Path, name: str) -> None:
    path, written = write_case(tmp_path, name)
    code, _, stderr = run(path, "feeds", "set", "https://other.example/feed", "enabled=false")
    assert code == 0, stderr
    assert path.read_text(encoding="utf-8") == written.replace(
        "    title: Other   # kept\n", "    title: Other   # kept\n    enabled: false\n"
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_remove_changes_only_the_removed_feed_and_the_tabs(tmp_path: Path, name: str) -> None:
    path, written = write_case(tmp_path, name)
    code, _, stderr = run(path, "feeds", "remove", "Other")
    assert code == 0, stderr
    removed = "  - url: https://other.example/feed\n    title: Other   # kept\n"  # the blank line above stays
    assert removed in written
    assert path.read_text(encoding="utf-8") == written.replace(removed, "")
    assert load_config(path).config.newsletters[0].title == "Morning\t\nDigest\n"


def test_tabs_inside_quoted_values_and_block_scalars_are_kept(tmp_path: Path) -> None:
    path = tmp_path / "feeds.yaml"
    path.write_text(
        "feeds:\n"
        "  - url: https://a.example/feed\t\n"
        "    title: 'A\t# not a comment'\t# a comment\n"
        "  - url: https://b.example/feed\n"
        "    title: >\n"
        "      folded\t\n"
        "      text\n"
    )
    document = ConfigDocument.read(path)
    document.set_feed("https://b.example/feed", {"interval": "2h"})
    document.save()
    titles = [feed.title for feed in load_config(path).config.feeds]
    assert titles == ["A\t# not a comment", "folded\t text\n"]


@pytest.mark.parametrize(("title", "column"), [(" Ledger\tDaily", 18), (" \t Ledger\tDaily", 20)])
def test_a_tab_inside_a_plain_value_is_named_with_what_to_do(tmp_path: Path, title: str, column: int) -> None:
    path = tmp_path / "feeds.yaml"
    # The aggregator reads the title as "Ledger<TAB>Daily"; a space would change it.
    path.write_text(f"feeds:\n  - url: https://a.example/f\t# ours\n    title:{title}\n")
    before = path.read_bytes()
    assert run(path, "config", "check")[0] == 0
    code, _, stderr = run(path, "feeds", "set", "https://a.example/f", "interval=2h")
    assert code == 2
    assert f"{path}:3:{column}: a tab the editor cannot read there (the aggregator can)" in stderr
    assert "replace the tab on line 3 with a space" in stderr
    assert "<unicode string>" not in stderr
    assert path.read_bytes() == before


@pytest.mark.parametrize("name", sorted(CASES))
def test_the_web_editor_shows_the_feeds(tmp_path: Path, name: str) -> None:
    path, _ = write_case(tmp_path, name)
    with serve(make_app(path)) as base_url, httpx.Client(base_url=base_url) as client:
        assert client.post("/admin/login", data={"token": TOKEN}, follow_redirects=False).status_code == 303
        response = client.get("/admin/")
    assert response.status_code == 200, response.text
    assert "northern-ledger.rss.xml" in response.text


def test_a_long_flow_style_line_with_tabs_after_colons_is_read_and_edited(tmp_path: Path) -> None:
    # JSON-style YAML: thousands of items on a line, each ':' followed by a tab, a '#' inside
    # each quoted title (not a comment), a tab before the comment ending the last line.
    items = [f'{{"url":\t"https://a.example/{i}", "title":\t"#{i} of 2000"}}' for i in range(2000)]
    path = tmp_path / "feeds.yaml"
    path.write_text(
        '{"feeds": [' + ", ".join(items[:1000]) + ",\n  " + ", ".join(items[1000:]) + "]}\t# all of them\n"
    )
    feeds = load_config(path).config.feeds
    assert feeds[7].title == "#7 of 2000"
    code, stdout, stderr = run(path, "feeds", "list", "--format", "json")
    assert code == 0, stderr
    assert [(row["url"], row["title"]) for row in json.loads(stdout)] == [(f.url, f.title) for f in feeds]
    code, _, stderr = run(path, "feeds", "set", "https://a.example/1999", "interval=2h")
    assert code == 0, stderr
    assert "the tab after the ':' on line(s) 1, 2 is written as a space" in stderr
    assert "the tab before the comment on line(s) 2 is written as spaces" in stderr
    written = path.read_text(encoding="utf-8")
    assert ":\t" not in written
    assert "# all of them" in written
    edited = load_config(path).config.feeds
    assert edited[:-1] == feeds[:-1]
    assert (edited[-1].url, edited[-1].title, edited[-1].interval) == (
        feeds[-1].url,
        feeds[-1].title,
        timedelta(hours=2),
    )
