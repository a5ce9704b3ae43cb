"""``aggregator digest NAME --send`` checks the name before anything about sending.

A review feared that the SMTP transport (its credentials from the environment) was made
before the name was looked up, so that a typo with the password variable unset would
report the password, not the unknown newsletter.  The name is checked first (in
``cli_digest.digest``, before the store is opened): this pins that order.

Real parts: the command as a subprocess, a feeds.yaml whose ``smtp:`` names a username
variable that is set and a password variable that is not.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_an_unknown_newsletter_is_said_before_a_missing_smtp_password(tmp_path: Path) -> None:
    config = tmp_path / "feeds.yaml"
    config.write_text(
        "feeds: [{url: https://a.example/feed}]\n"
        "newsletters:\n"
        "  - {name: daily, title: The Daily, sender: digest@news.example}\n"
        "smtp: {host: 127.0.0.1, port: 2525, security: starttls,"
        " username_env: TEST_SMTP_USERNAME, password_env: TEST_SMTP_PASSWORD}\n",
        encoding="utf-8",
    )
    environ = {**os.environ, "TEST_SMTP_USERNAME": "digest"}
    environ.pop("TEST_SMTP_PASSWORD", None)

    def digest(name: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "aggregator", "--config", str(config), "digest", name, "--send"],
            cwd=tmp_path,
            env=environ,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    typo = digest("dayly")
    assert (typo.returncode, typo.stdout) == (2, "")
    assert typo.stderr == "error: feeds.yaml: no newsletter named 'dayly' (configured: daily)\n"
    assert not (tmp_path / "data").exists()  # nothing opened (or made) for a name that is not there

    # The right name does reach the password, and says so.
    known = digest("daily")
    assert known.returncode == 2
    assert "smtp.password_env: $TEST_SMTP_PASSWORD is not set (the username is)" in known.stderr
