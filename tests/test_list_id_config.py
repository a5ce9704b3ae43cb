"""``newsletters[].list_id`` is checked as RFC 2919 asks (a dot-atom, ASCII), on its line.

A list id with a space, a comma or a quote passed, then came out of the List-Id header
mangled by the address parser (``T <a>,b>``): mail filters could not match the list.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.config import check_config
from tests.test_config import write

CONFIG = """\
feeds:
  - url: https://example.org/feed.xml
newsletters:
  - name: daily
    title: Daily
    list_id: {list_id}
"""


@pytest.mark.parametrize(
    "list_id", ["my list.example.org", "a,b.example.org", '"q".example.org', "daily", "tägl.example.org"]
)
def test_a_list_id_that_is_no_dot_atom_is_refused_on_its_line(tmp_path: Path, list_id: str) -> None:
    problems = check_config(write(tmp_path, CONFIG.format(list_id=f"'{list_id}'")))
    assert [(p.line, "bad list id" in p.message) for p in problems] == [(6, True)], problems


@pytest.mark.parametrize("list_id", ["daily.list.example.org", "news-2026.example.org", "a_b.c"])
def test_a_dot_atom_list_id_passes(tmp_path: Path, list_id: str) -> None:
    assert check_config(write(tmp_path, CONFIG.format(list_id=list_id))) == []
