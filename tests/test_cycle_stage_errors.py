"""A cycle whose files cannot be written says which stage failed, on which path, why, what
was kept and what to do; and the next run after the path is fixed writes what was missing.

Before, ``aggregator run --once`` printed the bare OSError (``error: [Errno 20] Not a
directory: '…/public/feed.atom'; what was polled is stored``) and the scheduler logged
``poll cycle failed: [Errno 1] Operation not permitted: '…/public/.feed.atom.c1e4pf3a.tmp'``:
neither said that writing the output feeds failed, nor (the scheduler) that the entries
were stored.

Real parts: a loopback feed server, the command in-process (typer's runner), real SQLite,
real files.  The tests run as root, whom permissions do not stop: a file where a folder
should be (or a folder where a file should be) provokes the error, and an immutable
folder (``chattr +i``, where the file system allows it) the permission one.
"""

from __future__ import annotations

import json
import logging
import shutil
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from aggregator.clock import ManualClock
from aggregator.config import load_config
from aggregator.errors import AggregatorError, OutputError
from aggregator.service import Service
from aggregator.store import Store
from tests.feedserver import FeedServer

KEPT = "the polled entries are stored"


def write_config(folder: Path, url: str) -> Path:
    config = folder / "feeds.yaml"
    config.write_text(f"feeds:\n  - url: {url}\nnewsletters: []\n", encoding="utf-8")
    return config


def run_once(config: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", str(config), "run", "--once"], catch_exceptions=False)
    return result.exit_code, result.stderr


def stored_ids(config: Path) -> list[str]:
    result = CliRunner().invoke(app, ["--config", str(config), "export", "--format", "jsonl"])
    assert result.exit_code == 0, result.output
    return sorted(json.loads(line)["id"] for line in result.stdout.splitlines())


def assert_written_next_time(config: Path, stored: list[str]) -> None:
    """The run after the path is fixed writes the combined feeds, storing nothing twice."""
    code, stderr = run_once(config)
    assert code == 0, stderr
    assert "error" not in stderr
    public = config.parent / "public"
    assert {p.name for p in public.iterdir()} >= {"feed.atom", "feed.rss", "feed.json"}
    assert "<entry>" in (public / "feed.atom").read_text(encoding="utf-8")
    assert stored_ids(config) == stored  # nothing lost, nothing stored twice


def test_run_once_with_a_file_where_the_output_folder_should_be_names_the_stage_and_what_is_stored(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_config(tmp_path, feed_server.url("/atom.xml"))
    public = tmp_path / "public"
    public.write_text("a file where the output folder should be", encoding="utf-8")

    code, stderr = run_once(config)

    assert code == 1  # as before: the poll's work is done, the outputs are not
    stored = stored_ids(config)
    assert stored  # what was polled is stored
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line.startswith(
        f"error: writing the output feeds: cannot write {public / 'feed.atom'}"
        f" ({public} is a file, not a folder): {KEPT} ({len(stored)} new, 0 updated);"
        " move public away (output.dir in feeds.yaml) and they are written at the next cycle"
    ), line
    assert "Errno" not in stderr
    assert "Traceback" not in stderr

    public.unlink()
    assert_written_next_time(config, stored)


def test_run_once_with_a_folder_where_an_output_file_should_be_says_so(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_config(tmp_path, feed_server.url("/atom.xml"))
    in_the_way = tmp_path / "public" / "feed.rss"
    in_the_way.mkdir(parents=True)

    code, stderr = run_once(config)

    assert code == 1
    assert (
        f"error: writing the output feeds: cannot write {in_the_way} ({in_the_way} is a folder, not a file):"
        f" {KEPT} (" in stderr
    ), stderr
    assert "move feed.rss away (output.dir in feeds.yaml) and they are written at the next cycle" in stderr
    assert not list((tmp_path / "public").glob(".*.tmp"))  # no temporary file left behind
    stored = stored_ids(config)

    in_the_way.rmdir()
    assert_written_next_time(config, stored)


@pytest.fixture
def immutable_folder(tmp_path: Path) -> Iterator[Path]:
    """``tmp_path/public``, which not even root can write in (``chattr +i``); skipped where
    the file system or the machine does not allow that."""
    folder = tmp_path / "public"
    folder.mkdir()
    chattr = shutil.which("chattr")
    if chattr is None:
        pytest.skip("no chattr on this machine")
    made = subprocess.run([chattr, "+i", str(folder)], capture_output=True, text=True, check=False)
    if made.returncode != 0:
        pytest.skip(f"chattr +i is not allowed here: {made.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run([chattr, "-i", str(folder)], check=True)


def test_run_once_into_a_folder_nobody_may_write_says_to_fix_its_permissions(
    tmp_path: Path, feed_server: FeedServer, immutable_folder: Path
) -> None:
    # The report's own case: `chattr +i public`, "[Errno 1] Operation not permitted: '….tmp'".
    config = write_config(tmp_path, feed_server.url("/atom.xml"))

    code, stderr = run_once(config)

    assert code == 1
    assert (
        f"error: writing the output feeds: cannot write {immutable_folder / 'feed.atom'}"
        f" ({immutable_folder}/ is not writable: Operation not permitted): {KEPT} ("
    ) in stderr, stderr
    assert (
        "fix the folder's permissions (output.dir in feeds.yaml) and they are written at the next cycle"
        in (stderr)
    )
    assert ".tmp" not in stderr  # the temporary file is no path a person needs to know
    stored = stored_ids(config)

    subprocess.run(["chattr", "-i", str(immutable_folder)], check=True)
    assert_written_next_time(config, stored)


@pytest.mark.anyio
async def test_the_scheduler_logs_the_stage_the_path_and_that_the_entries_are_stored(
    tmp_path: Path, feed_server: FeedServer, caplog: pytest.LogCaptureFixture
) -> None:
    loaded = load_config(write_config(tmp_path, feed_server.url("/atom.xml")))
    public = tmp_path / "public"
    public.write_text("a file where the output folder should be", encoding="utf-8")
    with Store.open(loaded.database_url) as store:
        service = Service(loaded, store, clock=ManualClock(datetime.now(UTC)))
        await service.poll_due()
        stored = sum(store.entry_counts().values())
    assert stored > 0
    [line] = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert line.startswith(
        f"poll cycle failed: writing the output feeds: cannot write {public / 'feed.atom'}"
        f" ({public} is a file, not a folder): {KEPT} ({stored} new, 0 updated);"
        " move public away (output.dir in feeds.yaml) and they are written at the next cycle"
    ), line
    assert "Errno" not in line


def test_the_error_is_a_project_error_and_still_an_os_error(tmp_path: Path, feed_server: FeedServer) -> None:
    # The callers that caught the bare OSError (run --once's exit code 1, prune's "the old
    # entries are removed", the scheduler's log line) still catch it; the cause is kept.
    from aggregator import eventloop, pipeline  # noqa: PLC0415 -- as the CLI imports them

    loaded = load_config(write_config(tmp_path, feed_server.url("/atom.xml")))
    (tmp_path / "public").write_text("in the way", encoding="utf-8")
    with Store.open(loaded.database_url) as store, pytest.raises(OutputError) as raised:
        eventloop.run(pipeline.run_cycle(loaded, store, datetime.now(UTC)))
    error = raised.value
    assert isinstance(error, AggregatorError)
    assert isinstance(error, OSError)
    assert isinstance(error.__cause__, NotADirectoryError)
    assert (error.stage, error.path) == ("writing the output feeds", tmp_path / "public" / "feed.atom")
    assert error.filename == str(tmp_path / "public" / "feed.atom")
