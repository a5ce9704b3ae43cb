"""How the site's pages lay out what feeds put in them, in a real browser.

Headlines that are one long word (or a URL), outlet names without a space, right-to-left
titles; the archive's list of issues in the site's own chrome; what the front page of a
site with private feeds says is public.

Real parts: two RSS files polled by ``aggregator run --once`` (in-process) into SQLite,
which publishes the feeds and writes the first issue to the outbox and the archive; the
web side on uvicorn (127.0.0.1); Debian's Chromium driven by Playwright (the ``browser``
fixture skips without it, unless AGGREGATOR_REQUIRE_BROWSER=1).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from lxml import html as lxml_html
from typer.testing import CliRunner

from aggregator import mail
from aggregator.cli import app as cli_app
from aggregator.clock import SystemClock
from aggregator.config import load_config
from aggregator.store import Store
from aggregator.web import WebSettings, create_app, settings_from_config
from tests.test_web import KEY, LiveServer

PHONE = {"width": 390, "height": 844}
LONG_WORD = ("Unbreakable" * 124)[:1359]  # with its "!": one word of 1,360 characters
URL_TITLE = "https://news.example/2025/08/18/alaska-summit?utm_source=feed&id=" + "a1b2c3d4" * 40
ARABIC = "قمة ألاسكا تنتهي دون اتفاق!"
LONG_OUTLET = "TheNorthernPacificAndArcticCoastalEveningDispatchAndChronicle" * 3


def rss(title: str, items: list[tuple[str, str]], when: datetime) -> str:
    entries = "".join(
        f"<item><title>{headline.replace('&', '&amp;')}</title><link>{link}</link><guid>{link}</guid>"
        f"<pubDate>{format_datetime(when)}</pubDate>"
        f"<description>{headline.replace('&', '&amp;')}: the full story, told at length.</description></item>"
        for headline, link in items
    )
    return (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel>'
        f"<title>{title}</title><link>https://outlet.example/</link><description>d</description>"
        f"{entries}</channel></rss>"
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A site ``aggregator run --once`` published, with the first issue archived."""
    folder = tmp_path_factory.mktemp("site")
    when = datetime.now(UTC) - timedelta(hours=2)
    (folder / "wire.xml").write_text(
        rss(
            "Wire",
            [
                (LONG_WORD + "!", "https://wire.example/long"),
                (URL_TITLE, "https://wire.example/url"),
                (ARABIC, "https://wire.example/alaska"),
            ],
            when,
        ),
        encoding="utf-8",
    )
    # The same article (the same link) from an outlet with a name of no spaces: "also reported
    # by"; and, carried twice, the issue's lead, which the archive's list shows.
    (folder / "copy.xml").write_text(
        rss("Copy", [(LONG_WORD + "!", "https://wire.example/long")], when + timedelta(hours=1))
    )
    config = folder / "feeds.yaml"
    config.write_text(
        "feeds:\n"
        "  - {url: wire.xml, title: Wire}\n"
        f"  - {{url: copy.xml, title: {LONG_OUTLET}}}\n"
        "newsletters:\n"
        "  - {name: daily, title: The Daily, sender: digest@news.example,\n"
        "     subscribers: [reader@example.org]}\n"
        "output: {dir: public, title: Test News, base_url: 'http://localhost:8000/'}\n",
        encoding="utf-8",
    )
    result = CliRunner().invoke(
        cli_app,
        ["--config", str(config), "run", "--once"],
        env={"AGGREGATOR_SECRET_KEY": KEY.decode()},
        catch_exceptions=False,
    )
    assert result.exit_code == 0, result.output
    assert (folder / "public" / "feed.json").is_file()
    assert (folder / "newsletters" / "archive" / "daily" / "index.html").is_file()
    return config


@pytest.fixture
def settings(project: Path) -> WebSettings:
    return settings_from_config(load_config(project), secret_key=KEY)


@pytest.fixture
def site(settings: WebSettings, project: Path, sqlite_url: str) -> Iterator[str]:
    with Store.open(sqlite_url) as store:
        app = create_app(settings, store, lambda: mail.Outbox(project.parent / "outbox"), SystemClock())
        with LiveServer(app) as url:
            yield url


def open_page(browser: Any, url: str) -> tuple[Any, list[str]]:
    page = browser.new_page(viewport=PHONE)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    response = page.goto(url)
    assert response is not None
    assert response.status == 200
    return page, errors


# ------------------------------------------------------------------- long words


def test_long_unbreakable_headlines_and_outlet_names_do_not_widen_the_page_on_a_phone(
    browser: Any, site: str
) -> None:
    page, errors = open_page(browser, site + "/")
    # The output feeds cut titles at 300 characters: still 300 without a space.
    headlines = page.locator("li.story h3").all_inner_texts()
    assert any(h.startswith(LONG_WORD[:299]) for h in headlines)
    assert any(h.startswith(URL_TITLE[:299]) for h in headlines)
    assert LONG_OUTLET in page.inner_text("main")
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert errors == []


def test_the_archives_list_of_issues_does_not_widen_the_page_on_a_phone(browser: Any, site: str) -> None:
    page, errors = open_page(browser, site + "/archive/daily/")
    assert "issue 1" in page.inner_text("body")
    assert LONG_WORD[:299] in page.inner_text("body")  # the lead headline
    assert page.evaluate("document.documentElement.scrollWidth") <= PHONE["width"]
    assert errors == []


# ------------------------------------------------------------------- right to left


def test_headlines_take_their_direction_from_their_text(browser: Any, site: str) -> None:
    page, _ = open_page(browser, site + "/")
    arabic = page.locator("li.story h3", has_text=ARABIC)
    assert arabic.get_attribute("dir") == "auto"
    assert arabic.evaluate("e => getComputedStyle(e).direction") == "rtl"  # the "!" at its end
    latin = page.locator("li.story h3", has_text="Unbreakable")
    assert latin.evaluate("e => getComputedStyle(e).direction") == "ltr"


def test_every_headline_and_newsletter_title_has_dir_auto(site: str) -> None:
    front = lxml_html.fromstring(httpx.get(site + "/").text)
    headlines = front.xpath("//li[@class='story']/h3")
    assert len(headlines) == 3
    assert {h.get("dir") for h in headlines} == {"auto"}
    archive = lxml_html.fromstring(httpx.get(site + "/archive/").text)
    assert archive.xpath("//ul[@class='archive']//a[text()='The Daily']/@dir") == ["auto"]


# ------------------------------------------------------------------- the archive's chrome


def test_the_archives_list_of_issues_has_the_sites_stylesheet_and_links_home(browser: Any, site: str) -> None:
    answer = httpx.get(site + "/archive/daily/")
    assert "style-src 'self'" in answer.headers["content-security-policy"]
    assert "script-src" not in answer.headers["content-security-policy"]  # default-src 'none'
    tree = lxml_html.fromstring(answer.text)
    assert tree.xpath("//head/link[@rel='stylesheet']/@href") == ["/style.css"]
    assert tree.xpath("//header[@class='site']/a[@class='home']/@href") == ["/"]
    assert "/subscribe?list=daily" in tree.xpath("//header[@class='site']//a/@href")
    assert tree.xpath("//main//a/@href")[0] == "0001.html"  # the issues, as the archive wrote them
    again = httpx.get(site + "/archive/daily/", headers={"if-none-match": answer.headers["etag"]})
    assert again.status_code == 304

    page, errors = open_page(browser, site + "/archive/daily/")
    # The stylesheet loaded under the page's policy: the header bar is laid out as flex.
    assert page.eval_on_selector("header.site", "e => getComputedStyle(e).display") == "flex"
    page.click("header.site a.home")
    page.wait_for_url(site + "/")
    assert page.title() == "Test News"
    # No CSP violation.  The page is sandboxed without scripts (as the issues are), which
    # refuses Playwright's own helpers (the click) too: those are not the page's.
    assert [e for e in errors if "frame is sandboxed and the 'allow-scripts'" not in e] == []


def test_an_issue_is_still_served_as_the_archive_wrote_it(site: str, project: Path) -> None:
    issue = httpx.get(site + "/archive/daily/0001.html")
    assert issue.content == (project.parent / "newsletters" / "archive" / "daily" / "0001.html").read_bytes()
    assert "sandbox" in issue.headers["content-security-policy"]


# ------------------------------------------------------------------- private feeds


def test_a_private_front_page_says_the_archive_and_subscribing_stay_public(
    settings: WebSettings, project: Path, sqlite_url: str
) -> None:
    private = replace(settings, feed_tokens=("a-private-feed-token-0123456789",))
    with Store.open(sqlite_url) as store:
        app = create_app(private, store, lambda: mail.Outbox(project.parent / "outbox"), SystemClock())
        with LiveServer(app) as url, httpx.Client(base_url=url) as http:
            text = " ".join(lxml_html.fromstring(http.get("/").text).xpath("string(//main)").split())
            assert "The feeds of this site are private" in text
            assert "past issues and subscription pages below are public" in text
            # The rules themselves are as before: feeds behind the token, the archive open.
            assert http.get("/feed.atom").status_code == 404
            assert http.get("/archive/daily/").status_code == 200
            assert http.get("/subscribe").status_code == 200
