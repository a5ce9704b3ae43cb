"""SIGTERM and Ctrl-C on ``aggregator digest NAME --send``, as on ``run --once``.

It died by the signal mid-message (exit -15 to Python, 143 to a shell; nothing said), and
the reader in flight was left "in DATA": the next run recorded them as uncertain, and they
never got that issue.

Real parts (those of ``tests/test_run_once_stop.py``): the bundled sample feeds, a real
SQLite file, aiosmtpd on 127.0.0.1 (STARTTLS, AUTH) which sends the signal from its DATA
handler, so that it reaches the command while a message is in flight, and the commands
run as real subprocesses.
"""

from __future__ import annotations

import signal
import subprocess
import time
from collections import Counter
from pathlib import Path

import pytest

from aggregator.config import load_config
from aggregator.store import Store
from tests.test_mail import SmtpServer
from tests.test_run_once_stop import (
    READERS,
    STOPS,
    _no_process_left,  # noqa: F401 -- an autouse fixture
    aggregator,
    deliveries,
    received,
    signal_at_data,
    slow_project,
    slow_smtp,  # noqa: F401 -- a fixture
    tls_files,  # noqa: F401 -- a fixture
)


def polled(tmp_path: Path, server: SmtpServer) -> Path:
    """``slow_project``, its feeds polled: the issue has stories to send."""
    config = slow_project(tmp_path, server)
    poll = aggregator(config, "poll")
    _, stderr = poll.communicate(timeout=60)
    assert poll.returncode == 0, stderr
    return config


def deliveries_of_first(config: Path) -> dict[str, str]:
    """Issue #1's deliveries (a later ``--send`` records an empty #2: nothing new)."""
    with Store.open(load_config(config).database_url) as store:
        return {d.recipient: d.status for d in store.deliveries("slow", 1)}


@pytest.mark.parametrize("stop", STOPS)
def test_a_stop_during_digest_send_finishes_that_reader_and_the_next_send_does_the_rest_once(
    tmp_path: Path,
    slow_smtp: SmtpServer,  # noqa: F811 -- the fixture imported above
    stop: signal.Signals,
) -> None:
    config = polled(tmp_path, slow_smtp)
    running: list[subprocess.Popen[str]] = []
    signal_at_data(slow_smtp, 2, lambda: running[0].send_signal(stop))
    running.append(aggregator(config, "digest", "slow", "--send"))
    stdout, stderr = running[0].communicate(timeout=60)

    assert running[0].returncode == 1, stderr  # not killed: the stop was taken
    assert stderr.splitlines()[-1] == f"stopped by {stop.name}: 2 sent, 4 left for the next run", stderr
    assert "slow #1: 6 stories: 2 sent, 4 waiting;" in stdout
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
    again = aggregator(config, "digest", "slow", "--send")
    stdout, stderr = again.communicate(timeout=60)
    assert again.returncode == 0, stderr
    assert "uncertain" not in stdout + stderr
    # The resumed issue counts what this run sent: "6 sent" read as if it sent them all.
    assert "slow #1: 6 stories: 6 sent (4 in this run);" in stdout
    assert "slow: nothing new since issue #1; no email" in stdout  # --send asks for a new one too
    assert deliveries_of_first(config) == dict.fromkeys(READERS, "sent")
    assert received(slow_smtp) == Counter(READERS)  # everyone, exactly once


def test_a_second_signal_ends_digest_send_by_the_signal(
    tmp_path: Path,
    slow_smtp: SmtpServer,  # noqa: F811 -- the fixture imported above
) -> None:
    config = polled(tmp_path, slow_smtp)
    running: list[subprocess.Popen[str]] = []

    def twice() -> None:
        running[0].send_signal(signal.SIGTERM)
        time.sleep(0.3)  # two at once may arrive as one
        running[0].send_signal(signal.SIGTERM)

    signal_at_data(slow_smtp, 2, twice)
    running.append(aggregator(config, "digest", "slow", "--send"))
    _, stderr = running[0].communicate(timeout=60)

    assert running[0].returncode == -signal.SIGTERM, stderr  # as asked: at once
    assert "SIGTERM again: stopping at once" in stderr
    assert deliveries(config)["r2@example.com"] == "in_data"  # cut off: never sent twice
