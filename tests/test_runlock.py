"""The run lock: one scheduler per database, on SQLite and PostgreSQL (each in its own schema)."""

from __future__ import annotations

from pathlib import Path

import pytest

from aggregator.errors import StoreError
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


def test_a_lock_file_that_cannot_be_made_is_a_store_error_naming_it(tmp_path: Path) -> None:
    # Its folder cannot exist (a file is in the way), as with a read-only disk: no traceback.
    (tmp_path / "data").write_text("not a folder", encoding="utf-8")
    lock = run_lock(f"sqlite:///{tmp_path}/data/db.sqlite")
    with pytest.raises(StoreError, match=r"cannot open its lock file .*data/db\.sqlite\.lock"), lock:
        pass
