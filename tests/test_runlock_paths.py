"""The SQLite locks belong to the database file, whatever path names it: a symlink to it,
a symlinked folder or a ``..`` in the path is the same database, and a second scheduler
on it is refused as on the path itself.  The first holder is another process, as in use."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.runlock import SchedulerAlreadyRunning, run_lock, sending_lock
from aggregator.store import Store

# Holds the run lock and the send lock of the database URL in argv[1] until stdin closes.
HOLDER = """
import sys
from aggregator.runlock import run_lock, sending_lock
with run_lock(sys.argv[1]), sending_lock(sys.argv[1]) as sending:
    assert sending
    print("held", flush=True)
    sys.stdin.read()
"""


@pytest.fixture
def held_by_another_process() -> Iterator[Callable[[Path], None]]:
    """Starts a process that holds the locks of the SQLite file given, until the test ends."""
    started: list[subprocess.Popen[str]] = []

    def hold(database: Path) -> None:
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, f"sqlite:///{database}"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        started.append(holder)
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "held"

    yield hold
    for holder in started:
        holder.communicate(timeout=10)  # closes its stdin: it lets go and ends
        assert holder.returncode == 0


def _real_database(tmp_path: Path) -> Path:
    database = tmp_path / "p2" / "data" / "aggregator.sqlite"
    with Store.open(f"sqlite:///{database}"):
        pass
    return database


def _symlink_to_the_file(tmp_path: Path, database: Path) -> Path:
    alias = tmp_path / "p3" / "data" / "shared.sqlite"
    alias.parent.mkdir(parents=True)
    alias.symlink_to(database)
    return alias


def _symlink_to_the_folder(tmp_path: Path, database: Path) -> Path:
    (tmp_path / "p3").mkdir()
    (tmp_path / "p3" / "data").symlink_to(database.parent, target_is_directory=True)
    return tmp_path / "p3" / "data" / database.name


def _dotdot(tmp_path: Path, database: Path) -> Path:
    (tmp_path / "p3").mkdir()
    return tmp_path / "p3" / ".." / "p2" / "data" / ".." / "data" / database.name


SPELLINGS = [
    pytest.param(_symlink_to_the_file, id="symlink-to-the-file"),
    pytest.param(_symlink_to_the_folder, id="symlinked-folder"),
    pytest.param(_dotdot, id="dotdot"),
]


@pytest.mark.parametrize("spelling", SPELLINGS)
def test_a_second_scheduler_on_another_path_to_the_same_database_is_refused(
    tmp_path: Path,
    held_by_another_process: Callable[[Path], None],
    spelling: Callable[[Path, Path], Path],
) -> None:
    database = _real_database(tmp_path)
    alias = spelling(tmp_path, database)
    held_by_another_process(database)
    with (
        pytest.raises(SchedulerAlreadyRunning, match="another scheduler is already running") as refused,
        run_lock(f"sqlite:///{alias}"),
    ):
        pass
    # It names the lock file the first scheduler holds: the one beside the real file.
    assert f"lock file {database}.lock" in str(refused.value)
    with sending_lock(f"sqlite:///{alias}") as sending:  # nor do two processes send its newsletters
        assert not sending


def test_a_symlink_to_a_database_not_made_yet_shares_its_lock(
    tmp_path: Path, held_by_another_process: Callable[[Path], None]
) -> None:
    # A fresh install: the first scheduler creates the file the symlink points to.
    database = tmp_path / "p2" / "data" / "aggregator.sqlite"
    database.parent.mkdir(parents=True)
    alias = _symlink_to_the_file(tmp_path, database)
    held_by_another_process(database)
    with pytest.raises(SchedulerAlreadyRunning), run_lock(f"sqlite:///{alias}"):
        pass


def test_run_once_through_a_symlinked_database_exits_3(
    tmp_path: Path, held_by_another_process: Callable[[Path], None]
) -> None:
    # p3's feeds.yaml names p2's database through a symlink while p2's scheduler runs: both
    # polled, and the second's issue failed with "UNIQUE constraint failed".
    database = _real_database(tmp_path)
    _symlink_to_the_file(tmp_path, database)
    config = tmp_path / "p3" / "feeds.yaml"
    config.write_text(
        "feeds: []\nnewsletters: []\ndatabase: sqlite:///data/shared.sqlite\n", encoding="utf-8"
    )
    held_by_another_process(database)
    result = CliRunner().invoke(app, ["--config", str(config), "run", "--once"])
    assert result.exit_code == 3, result.output
    assert "another scheduler is already running" in result.output


def test_symlinks_to_two_different_databases_do_not_share_a_lock(
    tmp_path: Path, held_by_another_process: Callable[[Path], None]
) -> None:
    # Two links side by side, and the files beside them, are four names of two databases.
    first = tmp_path / "a" / "aggregator.sqlite"
    second = tmp_path / "b" / "aggregator.sqlite"
    links = tmp_path / "links"
    links.mkdir()
    (links / "one.sqlite").symlink_to(first)
    (links / "two.sqlite").symlink_to(second)
    first.parent.mkdir()
    second.parent.mkdir()
    held_by_another_process(links / "one.sqlite")
    with (
        run_lock(f"sqlite:///{links / 'two.sqlite'}"),  # the other database: free
        pytest.raises(SchedulerAlreadyRunning),
        run_lock(f"sqlite:///{second}"),  # and now held, under its other name
    ):
        pass
    with pytest.raises(SchedulerAlreadyRunning), run_lock(f"sqlite:///{first}"):
        pass


def _spelled_otherwise(database_url: str) -> str:
    """The same database under another URL: a ``..`` in a SQLite path, the other name of
    the loopback host for PostgreSQL."""
    url = sa.make_url(database_url)
    if url.get_backend_name() == "sqlite":
        path = Path(url.database or "")
        return f"sqlite:///{path.parent}/../{path.parent.name}/{path.name}"
    host = {"127.0.0.1": "localhost", "localhost": "127.0.0.1"}.get(url.host or "")
    if host is None:
        pytest.skip(f"no other name known for the test server's host {url.host}")
    return url.set(host=host).render_as_string(hide_password=False)


def test_the_lock_is_the_database_s_whatever_the_url_spells(database_url: str) -> None:
    # PostgreSQL's advisory lock is keyed inside the server (the database it is taken in,
    # the schema): localhost and 127.0.0.1 are one database, so one lock.
    with (
        run_lock(database_url),
        pytest.raises(SchedulerAlreadyRunning),
        run_lock(_spelled_otherwise(database_url)),
    ):
        pass
