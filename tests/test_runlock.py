"""The run lock: one scheduler per database, on SQLite and PostgreSQL (each in its own schema)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.runlock import SchedulerAlreadyRunning, run_lock


def test_a_second_holder_is_refused_until_the_first_lets_go(database_url: str) -> None:
    with (
        run_lock(database_url),
        pytest.raises(SchedulerAlreadyRunning, match="another scheduler is already running"),
        run_lock(database_url),
    ):
        pass
    with run_lock(database_url):  # released: the next scheduler may start
        pass


def test_two_databases_do_not_share_a_lock(database_url: str, tmp_path: Path) -> None:
    other = f"sqlite:///{tmp_path}/other.sqlite"
    with run_lock(database_url), run_lock(other):
        pass
