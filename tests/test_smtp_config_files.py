"""The files ``smtp:`` names (``ca_file``, ``dkim_key_file``) and its ``host``: what sending
could not use is a problem ``config check`` reports on the key's line, and a file gone by the
time of sending is said by its key and path, not as "writing the issue: No such file".

Real parts: the command in-process (typer's runner), real files, real certificates and keys
made by openssl, and a real SMTP server (aiosmtpd with STARTTLS, tests/test_mail.py) that
receives the issue once the file is back.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aggregator import mail
from aggregator.cli import app
from aggregator.config import check_config, load_config
from aggregator.errors import ConfigError
from tests.test_mail import PASSWORD, USER, Handler, start_server, tls_files  # noqa: F401 -- a fixture
from tests.test_newsletters import TEST_KEY, make_project

CA_HINT = "give the path of a PEM file of CA certificates, relative to feeds.yaml or absolute"


def smtp_project(tmp_path: Path, smtp_yaml: str) -> Path:
    """The bundled feeds.yaml and seeds (a newsletter with a subscriber) plus ``smtp_yaml``."""
    return make_project(tmp_path, smtp_yaml="\nsmtp:\n" + smtp_yaml)


def line_of(config: Path, key: str) -> int:
    """The 1-based line of ``  key:`` in feeds.yaml."""
    lines = config.read_text(encoding="utf-8").splitlines()
    return next(n for n, text in enumerate(lines, 1) if text.startswith(f"  {key}:"))


def invoke(config: Path, *args: str) -> tuple[int, str]:
    result = CliRunner().invoke(app, ["--config", str(config), *args], catch_exceptions=False)
    return result.exit_code, result.output


# ----------------------------------------------------------------------- config check


def test_config_check_reports_a_missing_ca_file_on_its_line_and_exits_2(tmp_path: Path) -> None:
    config = smtp_project(tmp_path, "  host: 127.0.0.1\n  port: 18825\n  ca_file: /nonexistent/ca.pem\n")
    code, output = invoke(config, "config", "check")
    assert code == 2, output
    line = line_of(config, "ca_file")
    assert f"{config}:{line}:3: smtp.ca_file: /nonexistent/ca.pem does not exist ({CA_HINT})\n" in output
    assert "ok" not in output


def test_config_check_loads_the_ca_file_as_sending_does(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811 -- the fixture imported above
) -> None:
    config = smtp_project(tmp_path, "  host: 127.0.0.1\n  ca_file: ca.pem\n")
    line = line_of(config, "ca_file")
    ca = tmp_path / "ca.pem"

    def problems() -> list[str]:
        return [str(p) for p in check_config(config)]

    ca.mkdir()
    assert problems() == [f"{config}:{line}:3: smtp.ca_file: {ca} is a folder, not a file ({CA_HINT})"]
    ca.rmdir()
    ca.write_text("not a certificate\n")
    [problem] = problems()
    assert f"smtp.ca_file: {ca} cannot be loaded as PEM CA certificates: [X509: NO_CERTIFICATE" in problem
    assert "-----BEGIN CERTIFICATE-----" in problem  # the hint says what the file should hold
    ca.unlink()
    os.mkfifo(ca)  # read, it would hang the check for good
    assert problems() == [
        f"{config}:{line}:3: smtp.ca_file: {ca} is a device, a FIFO or a socket, not a regular file"
        f" ({CA_HINT})"
    ]
    ca.unlink()
    # A real CA certificate, relative to feeds.yaml (not to the working folder): no problem.
    shutil.copy(tls_files[0], ca)
    assert problems() == []
    code, output = invoke(config, "config", "check")
    assert (code, output) == (0, f"{config}: ok\n")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_config_check_reports_a_ca_file_it_may_not_read(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811
) -> None:
    config = smtp_project(tmp_path, "  host: 127.0.0.1\n  ca_file: ca.pem\n")
    shutil.copy(tls_files[0], tmp_path / "ca.pem")
    (tmp_path / "ca.pem").chmod(0)
    [problem] = check_config(config)
    assert problem.message == f"{tmp_path / 'ca.pem'} cannot be read: permission denied"


def test_config_check_reports_a_dkim_key_that_is_missing_or_cannot_sign(tmp_path: Path) -> None:
    config = smtp_project(tmp_path, "  host: 127.0.0.1\n  dkim_key_file: dkim.pem\n  dkim_selector: sel\n")
    line = line_of(config, "dkim_key_file")
    key = tmp_path / "dkim.pem"
    [missing] = check_config(config)
    assert str(missing) == (
        f"{config}:{line}:3: smtp.dkim_key_file: {key} does not exist"
        " (give the path of the DKIM private key, a PEM file, relative to feeds.yaml or absolute)"
    )
    key.write_text("-----BEGIN PRIVATE KEY-----\nbroken\n-----END PRIVATE KEY-----\n")
    [broken] = check_config(config)
    assert (broken.line, broken.location) == (line, "smtp.dkim_key_file")
    assert broken.message.startswith(f"{key} is not a private key DKIM can sign with: ")
    assert "openssl genrsa" in str(broken.hint)
    subprocess.run(["openssl", "genrsa", "-out", str(key), "2048"], check=True, capture_output=True)
    assert check_config(config) == []


@pytest.mark.parametrize(
    ("host", "said"),
    [
        (
            '"smtp.example.org:587"',
            "'smtp.example.org:587' has a port in it: write host: smtp.example.org and port: 587",
        ),
        (
            "smtp://smtp.example.org:587",
            "'smtp://smtp.example.org:587' is a URL, not a host name:"
            " write host: smtp.example.org and port: 587",
        ),
        (
            "smtps://smtp.example.org",
            "'smtps://smtp.example.org' is a URL, not a host name: write host: smtp.example.org;"
            " smtps:// is security: tls",
        ),
        (
            '"[2001:db8::25]:25"',
            "'[2001:db8::25]:25' has a port in it: write host: 2001:db8::25 and port: 25",
        ),
    ],
)
def test_a_host_with_a_port_or_a_scheme_is_refused_by_every_command(
    tmp_path: Path, host: str, said: str
) -> None:
    # Before: `config check` said ok, and every send failed to resolve the name.
    config = smtp_project(tmp_path, f"  host: {host}\n")
    line = line_of(config, "host")
    with pytest.raises(ConfigError) as info:
        load_config(config)
    assert [str(p) for p in info.value.problems] == [f"{config}:{line}:3: smtp.host: {said}"]
    code, output = invoke(config, "config", "check")
    assert code == 2
    assert f"smtp.host: {said}" in output


@pytest.mark.parametrize("host", ["smtp.example.org", "127.0.0.1", "::1", " smtp.example.org "])
def test_a_host_name_or_address_alone_passes(tmp_path: Path, host: str) -> None:
    loaded = load_config(smtp_project(tmp_path, f'  host: "{host}"\n'))
    assert loaded.config.smtp is not None
    assert loaded.config.smtp.host == host.strip()


# ----------------------------------------------------------------------- at send time


def test_a_ca_file_gone_after_the_check_is_named_when_sending_and_the_issue_goes_once_it_is_back(
    tmp_path: Path,
    tls_files: tuple[Path, Path],  # noqa: F811
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("AGGREGATOR_SMTP_USERNAME", USER)
    monkeypatch.setenv("AGGREGATOR_SMTP_PASSWORD", PASSWORD)
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    server = start_server(Handler(), tls_files)
    try:
        config = smtp_project(
            tmp_path, f"  host: 127.0.0.1\n  port: {server.port}\n  ca_file: ca.pem\n  timeout: 5s\n"
        )
        ca = tmp_path / "ca.pem"
        shutil.copy(tls_files[0], ca)
        assert invoke(config, "config", "check") == (0, f"{config}: ok\n")
        assert invoke(config, "poll")[0] == 0
        ca.unlink()  # e.g. a certificate renewal that moved it

        code, output = invoke(config, "digest", "daily", "--send")
        assert code == 2, output
        assert f"error: sending mail: smtp.ca_file: {ca} does not exist ({CA_HINT})" in output
        assert "writing the issue" not in output
        code, output = invoke(config, "run", "--once")
        assert code == 2, output
        assert f"error: sending mail: smtp.ca_file: {ca} does not exist" in output
        assert "[Errno 2]" not in output
        ca.write_text("not a certificate\n")
        code, output = invoke(config, "digest", "daily", "--send")
        assert code == 2, output
        assert f"error: sending mail: smtp.ca_file: {ca} cannot be loaded as PEM CA certificates:" in output
        assert server.handler.messages == []  # nothing was tried without the CA

        shutil.copy(tls_files[0], ca)
        code, output = invoke(config, "digest", "daily", "--send")
        assert code == 0, output
        assert [rcpt for _, rcpt, _ in server.handler.messages] == [["reader@example.com"]]
    finally:
        server.controller.stop()


def test_a_dkim_key_file_gone_when_sending_names_its_key(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AGGREGATOR_SECRET_KEY", TEST_KEY)
    config = smtp_project(tmp_path, "  host: 127.0.0.1\n  dkim_key_file: dkim.pem\n")
    code, output = invoke(config, "digest", "daily", "--send")
    assert code == 2, output
    assert (
        f"error: reading the DKIM key: smtp.dkim_key_file: {tmp_path / 'dkim.pem'} does not exist" in output
    )
    with pytest.raises(mail.SmtpFileError) as info:
        mail.read_dkim_key(str(tmp_path / "dkim.pem"), "default", "example.com")
    assert (info.value.key, info.value.problem) == ("smtp.dkim_key_file", "does not exist")
