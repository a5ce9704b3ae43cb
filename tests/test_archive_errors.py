"""A digest archive that cannot be written says which stage failed, on which path, why, what
was kept and what to do; and the run after the path is fixed archives and sends the issue,
to every reader exactly once.

Before, ``aggregator run --once`` with a file at ``newsletters/archive/daily`` printed
``error: [Errno 17] File exists: '…/newsletters/archive/daily'; what was polled is stored``:
no stage, nothing about the issue, and ``what was polled is stored`` was also appended to
publish's errors, which say what they kept already.

Real parts: a loopback feed server, the command in-process (typer's runner), real SQLite,
the outbox and the archive on disk.  The tests run as root, whom permissions do not stop:
a file where a folder should be (or a folder where a file should be) provokes the error.
"""

from __future__ import annotations

import email
from email import policy
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator.cli import app
from tests.feedserver import FeedServer

READERS = ("ann@example.com", "bob@example.com")


@pytest.fixture(autouse=True)
def _secret_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", "test-key-" + "0" * 32)


def write_config(folder: Path, url: str) -> Path:
    config = folder / "feeds.yaml"
    subscribers = "".join(f"      - {reader}\n" for reader in READERS)
    config.write_text(
        f"feeds:\n  - url: {url}\n"
        "newsletters:\n"
        "  - name: daily\n"
        "    title: The Daily Digest\n"
        "    sender: digest@example.com\n"
        f"    subscribers:\n{subscribers}",
        encoding="utf-8",
    )
    return config


def run_once(config: Path) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", str(config), "run", "--once"], catch_exceptions=False)
    return result.exit_code, result.stderr


def outbox(config: Path) -> list[str]:
    """The recipient of every message written to the outbox, sorted (duplicates kept)."""
    folder = config.parent / "newsletters" / "outbox"
    files = sorted(folder.glob("*.eml")) if folder.is_dir() else []
    return sorted(str(email.message_from_bytes(f.read_bytes(), policy=policy.default)["To"]) for f in files)


def assert_archived_and_sent_once(config: Path) -> None:
    """The run after the path is fixed archives the issue and sends it to each reader; the
    one after that sends nothing more."""
    code, stderr = run_once(config)
    assert code == 0, stderr
    assert "error" not in stderr
    archive = config.parent / "newsletters" / "archive" / "daily"
    assert sorted(p.name for p in archive.iterdir()) == ["0001.html", "0001.txt", "index.html"]
    assert outbox(config) == list(READERS)
    code, stderr = run_once(config)
    assert code == 0, stderr
    assert outbox(config) == list(READERS)  # exactly once


def test_run_once_with_a_file_where_the_archive_folder_should_be_names_the_stage_and_what_is_kept(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_config(tmp_path, feed_server.url("/atom.xml"))
    in_the_way = tmp_path / "newsletters" / "archive" / "daily"
    in_the_way.parent.mkdir(parents=True)
    in_the_way.write_text("a file where the archive folder should be", encoding="utf-8")

    code, stderr = run_once(config)

    assert code == 1  # as for publish errors: the cycle's work is done, the is not
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line == (
        f"error: archiving newsletter daily's issue #1: cannot write {in_the_way / '0001.html'}"
        f" ({in_the_way} is a file, not a folder): the issue is frozen and stored;"
        " no reader was sent it yet; move daily away and it is archived and sent at the next run"
    ), line
    assert "Errno" not in stderr
    assert "Traceback" not in stderr
    assert outbox(config) == []  # the archive comes before any message

    in_the_way.unlink()
    assert_archived_and_sent_once(config)


def test_a_folder_where_an_archive_page_should_be_is_named_and_no_temporary_file_is_left(
    tmp_path: Path, feed_server: FeedServer
) -> None:
    config = write_config(tmp_path, feed_server.url("/atom.xml"))
    archive = tmp_path / "newsletters" / "archive" / "daily"
    in_the_way = archive / "0001.txt"
    in_the_way.mkdir(parents=True)

    code, stderr = run_once(config)

    assert code == 1
    assert (
        f"error: archiving newsletter daily's issue #1: cannot write {in_the_way}"
        f" ({in_the_way} is a folder, not a file): the issue is frozen and stored;"
        " no reader was sent it yet; move 0001.txt away and it is archived and sent at the next run"
    ) in stderr, stderr
    # The page before it was written; nothing half-written or temporary is left beside it.
    assert sorted(p.name for p in archive.iterdir()) == ["0001.html", "0001.txt"]
    assert outbox(config) == []

    in_the_way.rmdir()
    assert_archived_and_sent_once(config)


def test_publish_errors_say_once_what_was_kept(tmp_path: Path, feed_server: FeedServer) -> None:
    # run --once appended "; what was polled is stored" to a message that says so already.
    config = write_config(tmp_path, feed_server.url("/atom.xml"))
    (tmp_path / "public").write_text("a file where the output folder should be", encoding="utf-8")

    code, stderr = run_once(config)

    assert code == 1
    [line] = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert line.startswith("error: writing the output feeds: cannot write "), line
    assert line.endswith("they are written at the next cycle"), line
    assert line.count("stored") == 1, line
