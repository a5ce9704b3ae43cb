"""The web editor says where a feed's new URL was also written: the newsletters that list
the feed under ``feeds:`` follow the change (``configedit``), as ``feeds set`` says."""

from __future__ import annotations

from pathlib import Path

import httpx
from lxml import html as lxml_html

from aggregator.config import load_config
from tests.test_web_admin import make_app, serve, sign_in, submit_as_a_browser

OLD = "https://old.example.org/feed.xml"
NEW = "https://new.example.org/feed.xml"


def test_a_new_url_names_the_newsletters_it_was_also_written_in(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds:\n"
        f"  - url: {OLD}\n"
        "    title: Old\n"
        "  - url: https://other.example.org/feed.xml\n"
        "newsletters:\n"
        "  - name: morning\n"
        "    title: Morning\n"
        "    feeds:\n"
        f"      - {OLD}   # the one outlet it sends\n"
    )
    with (
        serve(make_app(config)) as base_url,
        httpx.Client(base_url=base_url, follow_redirects=False) as client,
    ):
        sign_in(client)
        response = submit_as_a_browser(client, f"/admin/feeds/edit?url={OLD}", fill={"url": NEW})
        assert response.status_code == 303, response.text
        (notice,) = lxml_html.fromstring(client.get("/admin/").text).xpath("//p[@class='notice']")
    assert notice.text_content() == f"Saved: {NEW}; also updated in newsletter 'morning' (feeds.yaml:9)"
    loaded = load_config(config).config
    assert loaded.feeds[0].url == NEW
    assert loaded.newsletters[0].feeds == (NEW,)
    assert f"      - {NEW}   # the one outlet it sends\n" in config.read_text()
