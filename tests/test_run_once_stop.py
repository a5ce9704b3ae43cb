"""SIGTERM and Ctrl-C on ``aggregator run --once`` and ``aggregator run``, and a database
``aggregator run`` cannot write.

Real parts: the bundled sample feeds (files) or the loopback feed server, real SQLite files,
aiosmtpd on 127.0.0.1 (STARTTLS, AUTH) slowed down at DATA, and the commands run as real
subprocesses sent real signals.  The signal is sent from the mail server's DATA handler, so
that it reaches the command while a message is in flight, as a ``kill`` from outside would.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.errors import DatabaseUnavailable
from aggregator.store import Store
from tests.conftest import PROJECT_ROOT, _postgres_schema_url
from tests.feedserver import FeedServer
from tests.test_mail import (
    PASSWORD,
    USER,
    Handler,
    SmtpServer,
    start_server,
    tls_files,  # noqa: F401 -- a fixture
)
from tests.test_newsletters import make_project
from tests.test_scheduler import SCHEDULER, Scheduler, rss, write_config

pytest_plugins = ("tests.feedserver",)

READERS = [f"r{n}@example.com" for n in range(1, 7)]
ENV = {
    "TEST_SMTP_USER": USER,
    "TEST_SMTP_PASSWORD": PASSWORD,
    "AGGREGATOR_SECRET_KEY": "k" * 32,
    "PYTHONPATH": str(PROJECT_ROOT),
}
STOPS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


def slow_project(tmp_path: Path, server: SmtpServer) -> Path:
    """The sample feeds and a newsletter never sent, to six readers through ``server``."""
    letters = (
        "newsletters:\n  - name: slow\n    title: Slow\n    sender: digest@example.com\n"
        f"    subscribers: [{', '.join(READERS)}]\n"
    )
    smtp = (
        f"smtp:\n  host: 127.0.0.1\n  port: {server.port}\n  ca_file: {server.cafile}\n"
        "  username_env: TEST_SMTP_USER\n  password_env: TEST_SMTP_PASSWORD\n  rate_per_minute: 100000\n"
    )
    return make_project(tmp_path, letters, smtp)


@pytest.fixture
def slow_smtp(tls_files: tuple[Path, Path]) -> Iterator[SmtpServer]:  # noqa: F811 -- the fixture above
    server = start_server(Handler(), tls_files)
    yield server
    server.controller.stop()


def signal_at_data(server: SmtpServer, number: int, send: Callable[[], None], hold: float = 1.0) -> None:
    """At the ``number``-th DATA: ``send`` the signal, then hold the reply ``hold`` seconds,
    so that the signal comes while the sender waits for it (its message in flight)."""

    def on_data(count: int) -> None:
        if count == number:
            send()
            time.sleep(hold)

    server.handler.on_data = on_data


def received(server: SmtpServer) -> Counter[str]:
    return Counter(rcpt for _, rcpts, _ in server.handler.messages for rcpt in rcpts)


def wait_received(server: SmtpServer, count: int) -> None:
    deadline = time.monotonic() + 10
    while sum(received(server).values()) < count and time.monotonic() < deadline:
        time.sleep(0.02)  # a message taken by the server after the sender was gone


_STARTED: list[subprocess.Popen[str]] = []


@pytest.fixture(autouse=True)
def _no_process_left() -> Iterator[None]:
    """A test that failed while a command ran leaves no process behind."""
    yield
    while _STARTED:
        process = _STARTED.pop()
        if process.poll() is None:
            process.kill()
            process.wait(10)


def aggregator(config: Path, *args: str) -> subprocess.Popen[str]:
    """``python -m aggregator --config CONFIG ARGS…``, started; stdout and stderr piped."""
    process = subprocess.Popen(
        [sys.executable, "-m", "aggregator", "--config", str(config), *args],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=config.parent,
        env={**os.environ, **ENV},
    )
    _STARTED.append(process)
    return process


def deliveries(config: Path) -> dict[str, str]:
    with Store.open(load_config(config).database_url) as store:
        latest = store.latest_issue("slow")
        assert latest is not None
        return {d.recipient: d.status for d in store.deliveries("slow", latest.number)}


# --------------------------------------------------------------------------- run --once, sending


@pytest.mark.parametrize("stop", STOPS)
def test_a_stop_during_a_send_finishes_that_reader_and_the_next_run_sends_the_rest_once(
    tmp_path: Path, slow_smtp: SmtpServer, stop: signal.Signals
) -> None:
    # SIGTERM killed it mid-message (exit 143, nothing said): the reader in flight was
    # recorded as uncertain by the next run, and never got that issue.  Ctrl-C broke off
    # there too (exit 130), the reader recorded uncertain though the mail had arrived.
    config = slow_project(tmp_path, slow_smtp)
    running: list[subprocess.Popen[str]] = []
    signal_at_data(slow_smtp, 2, lambda: running[0].send_signal(stop))
    running.append(aggregator(config, "run", "--once"))
    _, stderr = running[0].communicate(timeout=60)

    assert running[0].returncode == 1, stderr
    assert stderr.splitlines()[-1] == f"stopped by {stop.name}: 2 sent, 4 left for the next run", stderr
    assert "slow #1: 6 stories: 2 sent, 4 waiting" in stderr
    assert (
        deliveries(config)
        == {
            "r1@example.com": "sent",
            "r2@example.com": "sent",  # in flight when the signal came: finished and recorded
            **dict.fromkeys(READERS[2:], "pending"),
        }
    )
    assert received(slow_smtp) == Counter(READERS[:2])

    slow_smtp.handler.on_data = None
    again = aggregator(config, "run", "--once")
    _, stderr = again.communicate(timeout=60)
    assert again.returncode == 0, stderr
    assert "uncertain" not in stderr
    assert deliveries(config) == dict.fromkeys(READERS, "sent")
    assert received(slow_smtp) == Counter(READERS)  # everyone, exactly once


def test_a_second_signal_stops_at_once_and_the_next_run_records_it_honestly(
    tmp_path: Path, slow_smtp: SmtpServer
) -> None:
    config = slow_project(tmp_path, slow_smtp)
    running: list[subprocess.Popen[str]] = []

    def twice() -> None:
        running[0].send_signal(signal.SIGTERM)
        time.sleep(0.3)
        running[0].send_signal(signal.SIGTERM)

    signal_at_data(slow_smtp, 2, twice)
    running.append(aggregator(config, "run", "--once"))
    _, stderr = running[0].communicate(timeout=60)

    assert running[0].returncode == -signal.SIGTERM, stderr  # ended by the signal, as asked
    assert "SIGTERM again: stopping at once" in stderr
    # Cut off in DATA: it may have arrived.  Recorded so, it is never sent twice.
    assert deliveries(config)["r2@example.com"] == "in_data"
    wait_received(slow_smtp, 2)

    slow_smtp.handler.on_data = None
    again = aggregator(config, "run", "--once")
    _, stderr = again.communicate(timeout=60)
    assert again.returncode == 1, stderr
    assert "uncertain: r2@example.com" in stderr
    assert deliveries(config) == {**dict.fromkeys(READERS, "sent"), "r2@example.com": "uncertain"}
    assert max(received(slow_smtp).values()) == 1
    assert set(received(slow_smtp)) == set(READERS)


# --------------------------------------------------------------------------- run --once, polling


def stored_entries(url: str) -> int:
    """Entries in the SQLite database at ``url`` as another process sees them (0 before it is made)."""
    path = url.removeprefix("sqlite:///")
    try:
        with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as conn:
            return int(conn.execute("SELECT count(*) FROM entries").fetchone()[0])
    except sqlite3.OperationalError:  # not there yet, or no tables yet
        return 0


@pytest.mark.parametrize("stop", STOPS)
def test_a_stop_while_polling_keeps_what_was_stored_and_says_what_is_left(
    feed_server: FeedServer, tmp_path: Path, stop: signal.Signals
) -> None:
    fast = []
    for n in range(6):
        feed_server.add_feed(f"/f{n}.xml", rss(*((f"f{n}-{i}", f"Story {n}.{i}") for i in range(3))))
        fast.append(feed_server.url(f"/f{n}.xml"))
    hanging = feed_server.url("/trickle")  # headers, then a byte every 50 ms: never done
    config = write_config(tmp_path / "feeds.yaml", [*fast, hanging])
    url = load_config(config).database_url

    running = aggregator(config, "run", "--once")
    deadline = time.monotonic() + 30
    while stored_entries(url) < 18:  # the six fast feeds
        assert running.poll() is None, running.communicate()
        assert time.monotonic() < deadline
        time.sleep(0.1)
    running.send_signal(stop)
    began = time.monotonic()
    _, stderr = running.communicate(timeout=30)

    assert time.monotonic() - began < 10  # the hanging fetch was cancelled, not waited for
    assert running.returncode == 1, stderr
    lines = stderr.splitlines()
    assert "6 feeds polled in" in lines[-2]
    assert lines[-1] == (
        f"stopped by {stop.name} while polling: 6 of 7 due feeds polled and stored, 1 left for the"
        " next run, which also groups, publishes and sends what is due"
    )
    with Store.open(url) as store:
        assert store.entry_counts() == {**dict.fromkeys(fast, 3), hanging: 0}
        assert store.feed_state(hanging).last_fetch is None  # due again at the next run


# --------------------------------------------------------------------------- aggregator run


def test_the_scheduler_logs_what_each_run_of_a_stopped_issue_sent(
    tmp_path: Path, slow_smtp: SmtpServer
) -> None:
    # Stopped after three readers, it logged "stopped, 0 sent, … 3 left"; the restart, which
    # sent to the other three, logged "done, 6 sent".
    config = slow_project(tmp_path, slow_smtp)
    first = Scheduler(config, ENV)
    try:
        signal_at_data(slow_smtp, 3, lambda: first.proc.send_signal(signal.SIGTERM), hold=0.5)
        assert first.proc.wait(60) == 0
        first._reader.join(2)
    finally:
        if first.proc.poll() is None:
            first.kill()
    [stopped] = first.seen("digest")
    assert (stopped["status"], stopped["sent"], stopped["remaining"]) == ("stopped", 3, 3)
    assert ": stopped, 3 sent, 0 failed, 0 uncertain, 3 left, in " in stopped["message"]
    assert stopped["sent_in_run"] == 3

    slow_smtp.handler.on_data = None
    second = Scheduler(config, ENV)
    try:
        second.wait_for(lambda: bool(second.seen("digest")), seconds=60)
        assert second.stop() == 0
    finally:
        if second.proc.poll() is None:
            second.kill()
    [done] = second.seen("digest")
    assert (done["status"], done["sent"], done["remaining"]) == ("done", 6, 0)
    assert ": done, 6 sent in all, 3 in this run, 0 failed, 0 uncertain, 0 left, in " in done["message"]
    assert done["sent_in_run"] == 3
    assert received(slow_smtp) == Counter(READERS)


def test_the_scheduler_exits_2_at_start_on_a_database_it_cannot_write(tmp_path: Path) -> None:
    # It said "scheduler started" and failed every minute ("attempt to write a readonly
    # database"), so a supervisor never saw it exit.  Opened read-only (SQLite's mode=ro:
    # so for root too, as chmod 444 is not), as `aggregator poll` says it.
    shutil.copy(PROJECT_ROOT / "seeds" / "northern-ledger.rss.xml", tmp_path / "feed.xml")
    database = tmp_path / "data" / "aggregator.sqlite"
    Store.open(f"sqlite:///{database}").close()
    (tmp_path / "feeds.yaml").write_text(
        f'feeds:\n  - url: feed.xml\nnewsletters: []\ndatabase: "sqlite:///file:{database}?mode=ro&uri=true"\n'
    )
    run = [sys.executable, "-m", "aggregator", "--config", str(tmp_path / "feeds.yaml")]
    poll = subprocess.run([*run, "poll"], capture_output=True, text=True, timeout=60, check=False)
    assert poll.returncode == 2, poll.stderr
    said = poll.stderr.splitlines()[-1]
    reason = said[said.index("sqlite:///") :]
    assert reason.endswith(": attempt to write a readonly database")

    started = time.monotonic()
    scheduler = subprocess.run(
        [sys.executable, str(SCHEDULER), "--config", str(tmp_path / "feeds.yaml")],
        capture_output=True,
        text=True,
        timeout=20,  # it ran on (until this killed it)
        check=False,
    )
    assert scheduler.returncode == 2, scheduler.stderr
    assert scheduler.stderr.splitlines()[-1].endswith(
        f"ERROR aggregator.service: starting the scheduler: {reason}"
    )
    assert "scheduler started" not in scheduler.stderr
    assert time.monotonic() - started < 15


NOBODY = 65534


def test_a_database_file_made_read_only_is_found_before_the_scheduler_starts() -> None:
    # chmod 444 on the file: SQLite opens it read-only, and even BEGIN IMMEDIATE succeeds.
    # Root may write any file, so as root the check runs as another user, the file's owner.
    folder = Path(tempfile.mkdtemp(prefix="readonly-db-"))  # tmp_path: a folder only root may enter
    try:
        folder.chmod(0o755)
        url = f"sqlite:///{folder / 'aggregator.sqlite'}"
        with Store.open(url) as store:
            store.check_writable()  # writable: nothing said, nothing changed
        (folder / "aggregator.sqlite").chmod(0o444)
        root = os.geteuid() == 0
        if root:
            for path in (folder, *folder.iterdir()):
                os.chown(path, NOBODY, NOBODY)
        # Opened (and its schema checked, which reads the project's migrations, a folder the
        # other user may not enter in a clone under a private temporary folder) as ourselves;
        # the connection the check makes is then opened as the other user.
        with Store.open(url) as store:
            store.engine.dispose()
            if root:
                os.setresuid(NOBODY, NOBODY, 0)
            try:
                with pytest.raises(DatabaseUnavailable) as info:
                    store.check_writable()
            finally:
                if root:
                    os.setresuid(0, 0, 0)
        assert str(info.value) == f"starting the scheduler: {url}: attempt to write a readonly database"
    finally:
        shutil.rmtree(folder)


@pytest.fixture
def postgres_url() -> Iterator[str]:
    yield from _postgres_schema_url()


@pytest.mark.postgres
def test_a_read_only_postgresql_session_is_found_before_the_scheduler_starts(postgres_url: str) -> None:
    # A replica, or a role whose sessions are read-only: the same check, the server's words.
    with Store.open(postgres_url) as store:
        store.check_writable()
    read_only = postgres_url + "%20-cdefault_transaction_read_only%3Don"  # in the same options=
    with Store.open(read_only) as store, pytest.raises(DatabaseUnavailable) as info:
        store.check_writable()
    assert str(info.value).endswith(": cannot execute DELETE in a read-only transaction")
    assert str(info.value).startswith("starting the scheduler: postgresql+psycopg://")
