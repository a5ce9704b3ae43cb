"""``aggregator status`` shows times to come rounded up to the minute, never before them.

A next check at 10:57:20 was shown as "10:57": whoever ran `poll --due` then found the
feed not yet due.  Past times (last fetch) are cut to the minute as before.  Real parts: a
loopback HTTP server, real SQLite, the command in-process with rich drawing at a given width.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest

from tests.feedserver import RSS, FeedServer
from tests.test_status_warning import invoke, status_json, status_table, write_config


def shown_minute(moment: datetime, *, ahead: bool) -> str:
    if ahead and (moment.second or moment.microsecond):
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return moment.strftime("%Y-%m-%d %H:%M")


@pytest.mark.parametrize("width", [160, 80])
def test_a_next_check_is_shown_rounded_up_and_a_last_fetch_cut(
    tmp_path: Path, feed_server: FeedServer, monkeypatch: pytest.MonkeyPatch, width: int
) -> None:
    feed_server.add_feed("/feed.xml", RSS, etag='"v1"')
    config = write_config(tmp_path, feed_server.url("/feed.xml"))
    invoke(config, "poll")
    row = next(iter(status_json(config).values()))
    next_check = datetime.fromisoformat(row["next_check"])
    last_fetch = datetime.fromisoformat(row["last_fetch"])
    assert next_check.second or next_check.microsecond  # jittered: with seconds, as stored

    shown = " ".join(status_table(config, monkeypatch, width).split())

    assert shown_minute(next_check, ahead=True).split()[1] in shown, shown
    assert shown_minute(next_check, ahead=False).split()[1] not in shown, shown
    assert shown_minute(last_fetch, ahead=False).split()[1] in shown, shown
