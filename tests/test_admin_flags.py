"""The web editor shows a feed's flag and numbers as the config loader reads them, so a save
that does not touch them leaves their lines as written; and a feeds.yaml it cannot read is a
page saying what to fix by hand, where, in ``config check``'s words: not a 500."""

from __future__ import annotations

import difflib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from lxml import html as lxml_html

from aggregator.config import check_config, load_config
from aggregator.configedit import file_version
from tests.test_web_admin import TOKEN, make_app, serve, sign_in, submit_as_a_browser

PAUSED = "https://paused.example.org/feed.xml"
ON = "https://on.example.org/feed.xml"
PAUSED_PAGE = f"/admin/feeds/edit?url={PAUSED}"
ON_PAGE = f"/admin/feeds/edit?url={ON}"
MORNING_PAGE = "/admin/newsletters/edit?name=morning"


def write_feeds(path: Path, paused: str) -> None:
    path.write_text(
        "feeds:\n"
        f"  - url: {PAUSED}\n"
        "    title: Paused\n"
        f"    enabled: {paused}   # paused until they fix their feed\n"
        "    priority: '+5'   # the loader reads 5; a browser's number box, nothing\n"
        f"  - url: {ON}\n"
        "    title: On\n"
        "    enabled: yes\n"
        "newsletters:\n"
        "  - name: morning\n"
        "    title: Morning\n"
        "    max_stories: ' 12'\n"
    )


@pytest.fixture
def config(tmp_path: Path) -> Path:
    return tmp_path / "feeds.yaml"


@pytest.fixture
def client(config: Path) -> Iterator[httpx.Client]:
    write_feeds(config, "no")  # a test may write its own before it first asks
    with serve(make_app(config)) as base_url, httpx.Client(base_url=base_url, follow_redirects=False) as http:
        yield http


def changed_lines(before: str, after: str) -> list[str]:
    return [
        line
        for line in difflib.unified_diff(before.splitlines(), after.splitlines(), lineterm="")
        if line[:1] in "+-" and line[:3] not in ("+++", "---")
    ]


def on_column(client: httpx.Client) -> dict[str, str]:
    """The list's "On" column, by feed URL."""
    rows = lxml_html.fromstring(client.get("/admin/").text).xpath("//table[@id='feeds']/tbody/tr")
    return {
        row.xpath("td[2]")[0].text_content().strip(): row.xpath("td[5]")[0].text_content().strip()
        for row in rows
    }


def enabled_box(client: httpx.Client, page: str) -> bool:
    (box,) = lxml_html.fromstring(client.get(page).text).xpath("//input[@type='checkbox'][@name='enabled']")
    return box.get("checked") is not None


def number_box(client: httpx.Client, page: str, name: str) -> str:
    (box,) = lxml_html.fromstring(client.get(page).text).xpath(f"//input[@type='number'][@name='{name}']")
    return str(box.get("value"))


# Not `False`: YAML's own boolean, which the round-trip dump writes back as `false`.
@pytest.mark.parametrize("paused", ["no", "off", "n", "f", "0", "NO", "'no'"])
def test_a_paused_feed_shows_paused_and_a_title_edit_leaves_its_line_as_written(
    client: httpx.Client, config: Path, paused: str
) -> None:
    write_feeds(config, paused)
    assert load_config(config).config.feeds[0].enabled is False  # as the aggregator reads it
    sign_in(client)
    assert on_column(client) == {PAUSED: "no", ON: "yes"}
    assert not enabled_box(client, PAUSED_PAGE)
    assert enabled_box(client, ON_PAGE)

    before = config.read_text()
    response = submit_as_a_browser(client, PAUSED_PAGE, fill={"title": "Paused (renamed)"})
    assert response.status_code == 303, response.text
    assert changed_lines(before, config.read_text()) == ["-    title: Paused", "+    title: Paused (renamed)"]
    assert f"    enabled: {paused}   # paused until they fix their feed\n" in config.read_text()
    feeds = load_config(config).config.feeds
    assert [(f.title, f.enabled) for f in feeds] == [("Paused (renamed)", False), ("On", True)]

    before = config.read_text()  # the other feed, written `yes`, is left as written too
    assert submit_as_a_browser(client, ON_PAGE, fill={"title": "Still on"}).status_code == 303
    assert changed_lines(before, config.read_text()) == ["-    title: On", "+    title: Still on"]


def test_ticking_a_paused_feed_still_turns_it_on(client: httpx.Client, config: Path) -> None:
    sign_in(client)
    assert submit_as_a_browser(client, PAUSED_PAGE, fill={}, tick=True).status_code == 303
    assert load_config(config).config.feeds[0].enabled is True
    assert on_column(client)[PAUSED] == "yes"


def test_number_boxes_show_the_number_the_loader_reads_and_keep_its_line(
    client: httpx.Client, config: Path
) -> None:
    """A browser empties a number box whose value is no HTML number (``+5``, `` 12``): saved
    as sent, that cleared the priority or the newsletter's max_stories."""
    sign_in(client)
    assert number_box(client, PAUSED_PAGE, "priority") == "5"
    assert number_box(client, MORNING_PAGE, "max_stories") == "12"
    before = config.read_text()
    assert submit_as_a_browser(client, PAUSED_PAGE, fill={"title": "P"}).status_code == 303
    assert submit_as_a_browser(client, MORNING_PAGE, fill={"title": "M"}).status_code == 303
    assert changed_lines(before, config.read_text()) == [
        "-    title: Paused",
        "+    title: P",
        "-    title: Morning",
        "+    title: M",
    ]
    loaded = load_config(config).config
    assert (loaded.feeds[0].priority, loaded.newsletters[0].max_stories) == (5, 12)


UNREADABLE = {
    # indented more than the line above: `config check` says which line to line it up with
    "syntax": ("feeds:\n  - url: x\n     title: y\n", "not valid YAML: mapping values are not allowed here"),
    # a tab inside a plain value: the aggregator reads it, the editor cannot
    "tab": ("feeds:\n  - url: https://a.example/f\n    title: A\tB\nnewsletters: []\n", "replace the tab"),
}


@pytest.mark.parametrize("case", sorted(UNREADABLE))
def test_a_file_the_editor_cannot_read_is_a_page_saying_what_to_fix_not_a_500(
    client: httpx.Client, config: Path, case: str
) -> None:
    sign_in(client)
    text, said = UNREADABLE[case]
    config.write_text(text)
    expected = [str(p) for p in check_config(config)] or None  # config check's words, when it has any
    if case == "syntax":
        assert expected == [
            f"{config}:3:11: not valid YAML: mapping values are not allowed here "
            "(indented more than the line above it: line its key up with those on line 2)"
        ]
    for page in ("/admin/", "/admin/feeds/edit?url=x", MORNING_PAGE):
        response = client.get(page)
        assert response.status_code == 409, (page, response.text)
        shown = lxml_html.fromstring(response.text)
        problems = [li.text_content() for li in shown.xpath("//ul/li")]
        if expected is not None:
            assert problems == expected
        assert said in " ".join(problems)
        assert f"{config}:3:" in problems[0]  # line and column, to fix by hand
        assert "fix it by hand" in shown.text_content()
        assert [a.get("href") for a in shown.xpath("//a")] == []  # no link back to this same page
    with httpx.Client(base_url=str(client.base_url), headers={"Authorization": f"Bearer {TOKEN}"}) as script:
        posted = script.post(
            "/admin/feeds/edit",
            data={"version": file_version(config.read_bytes()), "original": "x", "title": "z"},
        )
    assert posted.status_code == 409, posted.text
    assert said in posted.text
    assert config.read_text() == text
