"""Running newsletters: which issues are due, freezing them, delivering them, archiving them.

In: the loaded config, an open store, ``now``, and optionally a transport (default: SMTP
when ``smtp:`` is configured, else the ``newsletters/outbox/`` folder).  Out: one
``IssueOutcome`` per issue touched, plus the archive files and the send log in the store.

One issue is ``(newsletter, window)``: its window runs from the end of the previous issue
(exclusive) to ``now`` (inclusive).  A newsletter that never ran is due at once; after
that, when its cron schedule (in its time zone) has fired since the last issue.  Issue
by issue:

1. Freeze: read the snapshot of the stories the window touched (``snapshot.read_snapshot``,
   the builder the output feeds use), select the issue's stories from it
   (``digest.select_stories``: those first seen in the window, and older ones that new
   articles joined in it, marked updated), and in one transaction store the issue with
   its JSON and one ``pending`` delivery per recipient.  Nothing
   new → the issue is stored as ``empty`` (no email, no archive page) and the next window
   starts after it.
2. Archive: the snapshot rendered without any personal token, plus an index page.
3. Deliver, one message per recipient, each recorded in the store before it is
   attempted: ``pending`` → ``sending`` (claimed) → ``in_data`` (the server took DATA) → ``sent``,
   ``retry`` (4xx; backoff until the next issue is due, then one last try), ``failed`` (5xx) or
   ``uncertain`` (the connection broke during DATA), or ``unsubscribed`` (the reader left
   after the freeze, on the web or from feeds.yaml's ``subscribers:``: not sent).  After a
   crash, ``sending`` rows go back to ``pending`` (DATA never started) and ``in_data`` rows
   become ``uncertain``: nobody gets a second copy.  With the outbox the file itself settles it.
   The server down (``server_down``: no session, a refused sender) stops the run: the
   readers left wait for the next (``_why_stop``).  So does a transport that refuses to
   start a message (``mail.TransportStopped``: the process was asked to stop, SIGTERM or
   Ctrl-C): the reader it refused goes back to what it was, untried, and no other issue is
   started in that run (``IssueOutcome.interrupted``).  A session the server closes at one
   reader's RCPT TO puts off that reader alone, and the others go on a new session (a few
   per run).  A last try is given up only when the run shows the reader's fault, not the
   server's: not when the server was down, nor when every reader tried met the same 4xx at
   the same step and none was accepted, unless those were only readers put off before while
   others have the issue (``_settle_last_tries``); the issue then waits.  Retries whose time
   has not come are tried after everyone else.

Two numbers: the store keys each issue, empty ones included, by ``IssueRecord.number``
(one per run, in order; the schedule and the send log go by it), while the number readers
see (the dateline, the archive page ``NNNN.html``, the Message-ID, the outbox file) is the
frozen issue's ``DigestIssue.number``, which only issues with stories use up: an empty
issue carries the number the next issue with stories takes, so the archive has no gaps.
The two are the same until the first empty issue (and were the same in earlier versions).

One process at a time sends a database's newsletters (``runlock.sending_lock``); a second
one skips them with a warning rather than risk a double send.  Polls in other processes are kept out
while an issue's window is read (``runlock.ingest_lock``).  The email and the archive are rendered
from the same frozen snapshot, and a resumed issue renders byte-identical messages.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import logging
import os
import re
import secrets
import tempfile
import zoneinfo
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote, urljoin, urlsplit
from zoneinfo import ZoneInfo

from aggregator import digest, mail
from aggregator.atomicfile import write_atomic
from aggregator.config import LoadedConfig, NewsletterConfig, config_file
from aggregator.errors import AggregatorError, DeliveryError, OutputError
from aggregator.pathfaults import output_error
from aggregator.runlock import ingest_lock, sending_lock
from aggregator.schedule import NewsletterTrigger, newsletter_trigger
from aggregator.snapshot import Snapshot, read_snapshot
from aggregator.store import DeliveryRecord, IssueRecord, Store, StoredStory
from aggregator.types import StoredEntry

log = logging.getLogger(__name__)

SECRET_ENV = "AGGREGATOR_SECRET_KEY"  # noqa: S105 -- a variable name, not a secret
RETRY_FIRST = timedelta(minutes=5)
RETRY_MAX = timedelta(hours=6)

# Delivery states that still need work, and those that are final.
OPEN_STATES = ("pending", "sending", "in_data", "retry")

# Messages in a row whose DATA broke off before an issue stops: one is a reader's bad luck,
# a second a server that loses every message (a content filter slower than smtp.timeout),
# which would otherwise mark the whole list uncertain, never to be sent.
UNCERTAIN_IN_A_ROW = 2

# A server that closes the session at one reader's RCPT TO (a 421, or the connection dropped)
# puts off that reader, and the readers after get a new session: one per such reader, not
# after this many in a row (the server refuses everyone: the issue waits), nor beyond this
# many in a run.
SESSIONS_DROPPED_IN_A_ROW = 2
SESSIONS_DROPPED_PER_RUN = 10

# ``IssueOutcome.stopped`` of a run the transport stopped (``mail.TransportStopped``).
STOPPED_ON_REQUEST = "asked to stop"


@dataclass(frozen=True, slots=True)
class IssueOutcome:
    """What one run did with one issue."""

    newsletter: str
    number: int  # the store's key of the issue (``IssueRecord.number``)
    status: str  # "empty" (nothing new: no email), "sending" (retries left), "done"
    stories: int
    shown: int = 0  # stories in the email; the rest are only in the archive
    sent: int = 0  # the issue's readers who have it, by this run or an earlier one
    retrying: int = 0
    waiting: int = 0  # not tried yet: the run stopped before them (``stopped`` says why)
    failed: int = 0
    unsubscribed: int = 0  # recipients who unsubscribed after the issue was frozen: not sent
    uncertain: tuple[str, ...] = ()  # recipients who may or may not have received it
    # Recipients this run put off to a retry for a fault on this machine (an unexpected
    # error, an outbox that cannot be written), not a server's 4xx: who, why, and the next
    # try, one line each.  They do not have the issue, and nothing says the fault will pass:
    # the command exits 1 (a greylisting 451 is the mail server's routine, and does not).
    pending: tuple[str, ...] = ()
    errors: tuple[str, ...] = ()
    archive: Path | None = None
    stopped: str = ""  # why the run left readers for the next one (the server down), else ""
    # A new issue was asked for (``digest --send``) but this one is unfinished: who still
    # waits, when, and what to do; else "".
    held_back: str = ""
    # The number readers see (``DigestIssue.number``); for "empty", the one the next issue
    # with stories takes.  0: not given (then ``number``).
    issue: int = 0
    # The folder the messages were written to when there is no mail server (the outbox):
    # ``sent`` then counts files written, not mail sent.  None: sent over SMTP.
    outbox: Path | None = None
    # Of ``sent``, those this run sent: a run that finishes an issue a stop interrupted
    # sends only to the readers left ("6 sent" in its log line read as if it sent them all).
    sent_in_run: int = 0
    # The process was asked to stop (SIGTERM, Ctrl-C: ``mail.TransportStopped``) before
    # the readers still ``waiting``; the next run sends to them.
    interrupted: bool = False

    @property
    def shown_number(self) -> int:
        """The issue's number as readers see it."""
        return self.issue or self.number


@dataclass(slots=True)
class _Run:
    loaded: LoadedConfig
    store: Store
    now: datetime
    transport: mail.Transport
    key: bytes
    dkim: mail.DkimKey | None
    edited: datetime | None = None  # when feeds.yaml was last written (see schedule_counted_from)
    outcomes: list[IssueOutcome] = field(default_factory=list)


# ----------------------------------------------------------------------- public API


def run_due_newsletters(
    loaded: LoadedConfig,
    store: Store,
    now: datetime,
    *,
    transport: mail.Transport | None = None,
    names: Sequence[str] | None = None,
    force: bool = False,
) -> list[IssueOutcome]:
    """Resume unfinished issues and send every issue due at ``now``; the pipeline's entry point.

    ``names`` limits the run to those newsletters; ``force`` starts a new issue even if
    the schedule has not fired (``aggregator digest NAME --send``).  Raises
    ``AggregatorError`` only for problems with no per-issue answer (an unknown name, an
    SMTP password missing); delivery failures are recorded per recipient.
    """
    letters = _select(loaded, names)
    if loaded.config.smtp is not None:
        _warn_about_local_links(loaded, letters)
    with sending_lock(loaded.database_url) as locked:
        if not locked:
            log.warning("newsletters: another process is sending; skipped this time")
            return []
        run = _Run(
            loaded,
            store,
            now,
            transport or default_transport(loaded),
            secret_key(loaded),
            dkim_key(loaded),
            config_written(loaded),
        )
        try:
            for letter in letters:
                if any(o.interrupted for o in run.outcomes):
                    break  # asked to stop: no other issue is frozen or sent in this run
                _run_newsletter(run, letter, force=force)
        finally:
            if transport is None:
                run.transport.close()
    return run.outcomes


_THIS_MACHINE = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})  # noqa: S104 -- names, not a bind


def _warn_about_local_links(loaded: LoadedConfig, letters: Sequence[NewsletterConfig]) -> None:
    """Real mail whose unsubscribe and archive links point at this machine (the default
    ``output.base_url``) leaves readers no way to unsubscribe: say so, once per run."""
    for letter in letters:
        url = base_url(loaded, letter)
        if (urlsplit(url).hostname or "") in _THIS_MACHINE:
            log.warning(
                "newsletter %s: its unsubscribe and archive links point at %s, which readers"
                " cannot reach; set output.base_url (or the newsletter's base_url) in %s to"
                " where `aggregator serve` is reachable, over https",
                letter.name,
                url,
                loaded.path.name,
            )


def is_due(letter: NewsletterConfig, counted_from: datetime | None, now: datetime) -> bool:
    """Never sent (``counted_from`` None) → due; else due once the schedule has fired after
    ``counted_from`` (``schedule_counted_from``)."""
    return counted_from is None or next_issue_time(letter, counted_from) <= now


def schedule_counted_from(
    store: Store,
    letter: NewsletterConfig,
    latest: IssueRecord | None,
    now: datetime,
    *,
    edited: datetime | None = None,
    record: bool = True,
) -> datetime | None:
    """After what moment a scheduled time of ``letter`` calls for a new issue; None when it
    has no issue yet.

    That is the end of its newest issue, or when its schedule changed if that came later:
    a time of the new schedule before the change is no issue missed (moving 07:00 to 09:00
    at 10:00 would send a second issue at once).  The change is dated when it is first seen
    here, or when feeds.yaml was last written (``edited``) if earlier: a change read only
    after the new time (an hourly ``run --once``) still sends that day's issue.  And if the
    old schedule had an issue due by then that never went out, the change holds nothing
    back: that issue still goes.  ``record=False`` (``aggregator status``) writes nothing.
    """
    known = store.newsletter_schedule(letter.name)
    if known is not None and known[:2] == (letter.schedule, letter.timezone):
        since = known[2]
    else:
        changed = min(now, edited) if edited is not None else now
        since = None if known is None else _change_counts_from(known[0], known[1], latest, changed)
        if record:
            store.record_newsletter_schedule(letter.name, letter.schedule, letter.timezone, since)
    if latest is None:
        return None
    return latest.window_end if since is None else max(latest.window_end, since)


def config_written(loaded: LoadedConfig) -> datetime | None:
    """When feeds.yaml was last written (its modification time), None when unreadable."""
    try:
        return datetime.fromtimestamp(loaded.path.stat().st_mtime, UTC)
    except OSError:
        return None


def _change_counts_from(
    old_schedule: str, old_timezone: str, latest: IssueRecord | None, changed: datetime
) -> datetime | None:
    """When a schedule change at ``changed`` starts to count; None when it holds nothing back
    (no issue yet, or the old schedule had one due after the last that never went out)."""
    if latest is None:
        return None
    try:
        old = NewsletterTrigger(old_schedule, old_timezone)
    except (ValueError, KeyError, zoneinfo.ZoneInfoNotFoundError):
        return changed  # an old schedule this version cannot read: date the change, no more
    missed = old.get_next_fire_time(None, latest.window_end + timedelta(seconds=1))
    return None if missed is not None and missed <= changed else changed


def next_issue_time(letter: NewsletterConfig, after: datetime) -> datetime:
    # The scheduler's own trigger: on the night clocks go back, 02:30 happens twice and a
    # plain CronTrigger would fire on both.
    trigger = newsletter_trigger(letter)
    # +1 s: an issue frozen exactly on a fire time must not be due again at once.
    fire: datetime | None = trigger.get_next_fire_time(None, after + timedelta(seconds=1))
    if fire is None:  # a crontab always fires again; this is for the type checker
        raise AggregatorError(f"newsletter {letter.name}: schedule {letter.schedule!r} never fires")
    return fire.astimezone(after.tzinfo)


def preview_issue(loaded: LoadedConfig, store: Store, now: datetime, name: str) -> Path:
    """Render the issue that would be frozen at ``now`` (nothing recorded) and write its HTML."""
    letter = find_newsletter(loaded, name)
    issue = compose_issue(loaded, store, letter, store.latest_issue(letter.name), now)
    rendered = digest.render_digest(issue, archive_url=archive_url(loaded, letter, issue.number))
    path = outbox_dir(loaded) / f"preview-{letter.name}.html"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(rendered.html.replace(digest.UNSUBSCRIBE_MARK, _generic_unsubscribe(loaded, letter)))
    return path


def send_test_copy(
    loaded: LoadedConfig,
    store: Store,
    now: datetime,
    name: str,
    address: str,
    *,
    transport: mail.Transport | None = None,
) -> mail.DeliveryResult:
    """Send ``address`` a copy of the latest issue with stories (or of the one that would be
    frozen now, when none has any).

    Not recorded in the send log and does not change any schedule.
    """
    letter = find_newsletter(loaded, name)
    # Not merely the latest issue: a `--send` on a day with nothing new recorded an empty
    # one (databases of earlier versions hold them), and a copy of that is an email with
    # no story and a link to no archive page.
    sent = [r for r in store.issues(letter.name) if r.status != "empty"]
    if sent:
        issue = digest.issue_from_json(sent[-1].snapshot)
    else:
        issue = compose_issue(loaded, store, letter, store.latest_issue(letter.name), now)
    issue = replace(issue, frozen_at=now)
    own = transport or default_transport(loaded)
    try:
        data = _message_bytes(
            loaded,
            letter,
            issue,
            _render(loaded, letter, issue),
            address,
            secret_key(loaded),
            dkim_key(loaded),
            test=True,
        )
        name = f"test-{letter.name}-{_short(address)}-{int(now.timestamp())}"  # each copy its own file
        return own.deliver(letter.sender, address, data, name, lambda: None)
    finally:
        if transport is None:
            own.close()


# ----------------------------------------------------------------------- links and tokens


def base_url(loaded: LoadedConfig, letter: NewsletterConfig) -> str:
    url = letter.base_url or loaded.config.output.base_url
    return url if url.endswith("/") else url + "/"


def archive_url(loaded: LoadedConfig, letter: NewsletterConfig, number: int) -> str:
    """Where the web side serves ``newsletters/archive/NAME/NNNN.html``."""
    return urljoin(base_url(loaded, letter), f"archive/{letter.name}/{number:04d}.html")


def unsubscribe_url(loaded: LoadedConfig, letter: NewsletterConfig, token: str) -> str:
    """The one-click unsubscribe URL (GET shows a confirmation, POST unsubscribes: RFC 8058)."""
    return urljoin(base_url(loaded, letter), f"unsubscribe/{token}")


def _generic_unsubscribe(loaded: LoadedConfig, letter: NewsletterConfig) -> str:
    return urljoin(base_url(loaded, letter), f"unsubscribe?list={quote(letter.name)}")


def make_unsubscribe_token(key: bytes, newsletter: str, address: str) -> str:
    """A signed token naming ``(newsletter, address)``; URL-safe, no padding."""
    payload = f"{newsletter}\n{address.lower()}".encode()
    sig = hmac.new(key, b"unsubscribe\n" + payload, hashlib.sha256).digest()[:18]
    return f"{_b64(payload)}.{_b64(sig)}"


def read_unsubscribe_token(key: bytes, token: str) -> tuple[str, str] | None:
    """``(newsletter, address)`` of a valid token, else None (tampered or malformed)."""
    try:
        payload_text, sig_text = token.split(".", 1)
        payload, sig = _unb64(payload_text), _unb64(sig_text)
    except (ValueError, binascii.Error):
        return None
    expected = hmac.new(key, b"unsubscribe\n" + payload, hashlib.sha256).digest()[:18]
    if not hmac.compare_digest(sig, expected):
        return None
    newsletter, _, address = payload.decode("utf-8", "replace").partition("\n")
    return newsletter, address


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def secret_key(loaded: LoadedConfig) -> bytes:
    """The key that signs unsubscribe tokens: ``$AGGREGATOR_SECRET_KEY``, else one kept in data/.

    The local key is created once (mode 0600) so tokens in sent mail keep working; a
    deployment with several machines must set the variable to the same value everywhere.
    Raises ``AggregatorError`` for a key too short to sign with: with an empty one, anyone
    could forge an unsubscribe or a confirmation link.
    """
    from_env = os.environ.get(SECRET_ENV, "").strip()
    if from_env:  # set but empty (docker-compose's ${VAR:-}) means unset, as it always did
        return _long_enough(from_env.encode(), f"${SECRET_ENV}")
    path = loaded.base_dir / "data" / "secret.key"
    try:
        return _long_enough(path.read_bytes().strip(), str(path))
    except FileNotFoundError:
        pass
    path.parent.mkdir(parents=True, exist_ok=True)
    # Written whole under another name, then linked into place: a process starting at the
    # same moment finds no file or the whole key, never an empty one (O_EXCL then write
    # left that window, and a crash in it an empty key for good).
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(secrets.token_hex(32).encode())
            handle.flush()
            os.fsync(handle.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass  # another process's key came first: everyone uses that one
        else:
            log.warning(
                "%s is not set: unsubscribe links are signed with a key created in %s", SECRET_ENV, path
            )
    finally:
        os.unlink(tmp)
    return _long_enough(path.read_bytes().strip(), str(path))


MIN_SECRET_BYTES = 32


def _long_enough(key: bytes, where: str) -> bytes:
    if len(key) < MIN_SECRET_BYTES:
        raise AggregatorError(
            f"the key that signs unsubscribe and confirmation links ({where}) has {len(key)} bytes;"
            f" it needs at least {MIN_SECRET_BYTES}: set {SECRET_ENV} to e.g. the output of"
            " `python -c 'import secrets; print(secrets.token_hex(32))'`, or delete an empty key file"
        )
    return key


# ----------------------------------------------------------------------- transports


def outbox_dir(loaded: LoadedConfig) -> Path:
    return loaded.base_dir / "newsletters" / "outbox"


def archive_dir(loaded: LoadedConfig, name: str) -> Path:
    return loaded.base_dir / "newsletters" / "archive" / name


_ARCHIVED_ISSUE_RE = re.compile(r"(\d{4,})\.html")


def _first_number(loaded: LoadedConfig, letter: NewsletterConfig) -> int:
    """The number of a newsletter's first issue in this database: 1, or the one after the
    last issue archived, when the archive outlived the database it came from (a new
    database, a move to PostgreSQL).  Restarting at 1 would overwrite archived issues that
    readers' "view in a browser" links point to, and repeat their Message-IDs."""
    return max(_archived_pages(archive_dir(loaded, letter.name)), default=0) + 1


def _next_number(
    loaded: LoadedConfig, store: Store, letter: NewsletterConfig, latest: IssueRecord | None
) -> int:
    """The number readers will see on the issue after ``latest``: one more than that of the
    latest issue with stories (an empty one was neither sent nor archived), or the first
    number when there is none.  Not the empty issue's own: one stored by an earlier version
    took a number of its own, and two of them in a row would leave a gap in the archive."""
    if latest is not None and latest.status == "empty":
        latest = store.latest_issue(letter.name, with_stories=True)
    if latest is None:
        return _first_number(loaded, letter)
    return shown_number(latest) + 1


def shown_number(record: IssueRecord) -> int:
    """The number readers see on a stored issue (its frozen JSON's); the store's key for an
    issue whose JSON does not say (none written by this program)."""
    number = record.snapshot_number
    return record.number if number is None else number


def default_transport(loaded: LoadedConfig) -> mail.Transport:
    """SMTP when ``smtp:`` is configured (credentials from the environment), else the outbox."""
    smtp = loaded.config.smtp
    if smtp is None:
        return mail.Outbox(outbox_dir(loaded))
    username = os.environ.get(smtp.username_env) if smtp.username_env else None
    password = os.environ.get(smtp.password_env) if smtp.password_env else None
    if username and not password:
        raise AggregatorError(
            f"sending mail: smtp.password_env: ${smtp.password_env} is not set (the username is)"
        )
    ca_file = str(config_file(smtp.ca_file, loaded.base_dir)) if smtp.ca_file else None
    try:
        context = mail.smtp_ssl_context(ca_file)
    except mail.SmtpFileError as exc:  # gone since `config check`, or never checked
        raise AggregatorError(f"sending mail: {exc}") from exc
    return mail.SmtpTransport(
        mail.SmtpSettings(
            host=smtp.host,
            port=smtp.port,
            security=smtp.security,
            username=username,
            password=password,
            rate_per_minute=smtp.rate_per_minute,
            timeout=smtp.timeout.total_seconds(),
            ssl_context=context,
        )
    )


def mail_server(loaded: LoadedConfig) -> str:
    """Where messages go, for messages to the operator: ``host:port`` or the outbox folder."""
    smtp = loaded.config.smtp
    return str(outbox_dir(loaded)) if smtp is None else f"{smtp.host}:{smtp.port}"


def dkim_key(loaded: LoadedConfig) -> mail.DkimKey | None:
    smtp = loaded.config.smtp
    if smtp is None or not smtp.dkim_key_file:
        return None
    path = config_file(smtp.dkim_key_file, loaded.base_dir)
    domain = smtp.dkim_domain or mail.domain_of(
        loaded.config.newsletters[0].sender if loaded.config.newsletters else ""
    )
    try:  # a key that cannot sign is found now, not as every reader's failure
        return mail.read_dkim_key(str(path), smtp.dkim_selector, domain)
    except mail.SmtpFileError as exc:  # names smtp.dkim_key_file itself
        raise AggregatorError(f"reading the DKIM key: {exc}") from exc
    except DeliveryError as exc:  # the signer's words, which name smtp.dkim_key_file
        raise AggregatorError(f"reading the DKIM key: {path}: {exc}") from exc


# ----------------------------------------------------------------------- one newsletter


def find_newsletter(loaded: LoadedConfig, name: str) -> NewsletterConfig:
    """The newsletter called ``name``; ``AggregatorError`` naming the configured ones if none
    is.  For a command to check the name before it opens (or declines to create) anything."""
    return _select(loaded, [name])[0]


def _select(loaded: LoadedConfig, names: Sequence[str] | None) -> list[NewsletterConfig]:
    letters = list(loaded.config.newsletters)
    if names is None:
        return letters
    by_name = {n.name: n for n in letters}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        known = ", ".join(by_name) or "none: add one under 'newsletters:'"
        raise AggregatorError(f"{loaded.path.name}: no newsletter named {unknown[0]!r} (configured: {known})")
    return [by_name[n] for n in names]


def _run_newsletter(run: _Run, letter: NewsletterConfig, *, force: bool) -> None:
    latest = run.store.latest_issue(letter.name)
    if latest is not None and latest.status == "sending":
        # Retries run until the next issue is due; then whatever is left fails.
        counted_from = schedule_counted_from(run.store, letter, latest, run.now, edited=run.edited)
        final = counted_from is not None and next_issue_time(letter, counted_from) <= run.now
        outcome = _deliver(run, letter, latest, final=final)
        latest = run.store.latest_issue(letter.name)
        if latest is not None and latest.status == "sending":
            # A new issue was asked for: say why none starts, and until when (a stop says it).
            if force and not outcome.interrupted:
                outcome = replace(outcome, held_back=_held_back(run, letter, latest, counted_from))
            run.outcomes.append(outcome)
            return
        run.outcomes.append(outcome)
    counted_from = schedule_counted_from(run.store, letter, latest, run.now, edited=run.edited)
    if not force and not is_due(letter, counted_from, run.now):
        return
    # Alone against polls in other processes while the window is read: a poll stamps what it
    # stores with its own clock reading, so one still storing could hold entries dated
    # inside this window that the read would miss, and the next window starts after it.
    with ingest_lock(run.loaded.database_url, exclusive=True):
        composed = compose_issue(run.loaded, run.store, letter, latest, run.now)
    issue = _showable(run.loaded, letter, composed)
    # The store's key: one more than the latest, an empty issue's included (see the module
    # docstring); the first takes the number readers see.
    key = latest.number + 1 if latest is not None else issue.number
    if not issue.stories:
        # Recorded, so the next window starts after it and the schedule counts from it,
        # but neither sent nor archived: its number (``issue.number``) is the next one's.
        record = IssueRecord(
            letter.name,
            key,
            issue.window_start,
            issue.window_end,
            run.now,
            "empty",
            0,
            digest.issue_to_json(issue),
            finished_at=run.now,
        )
        run.store.freeze_issue(record, (), run.now)
        log.info("newsletter %s: nothing new since the last issue; no email", letter.name)
        run.outcomes.append(IssueOutcome(letter.name, key, "empty", 0, issue=issue.number))
        return
    record = IssueRecord(
        letter.name,
        key,
        issue.window_start,
        issue.window_end,
        run.now,
        "sending",
        len(issue.stories),
        digest.issue_to_json(issue),
    )
    run.store.freeze_issue(record, recipients(letter, run.store), run.now)
    run.outcomes.append(_deliver(run, letter, record, final=False))


def _showable(
    loaded: LoadedConfig, letter: NewsletterConfig, issue: digest.DigestIssue
) -> digest.DigestIssue:
    """``issue`` without the stories its email could not show, rendered once to know: those
    MJML refuses, or all of them when not even one fits the size limit.  Frozen that way, an
    issue never goes out as an email with no story in it."""
    if not issue.stories:
        return issue
    rendered = _render(loaded, letter, issue)
    if rendered.shown == 0:
        log.warning(
            "newsletter %s #%d: none of its %d stories fits in an email; no email",
            letter.name,
            issue.number,
            len(issue.stories),
        )
        return replace(issue, stories=())
    if rendered.dropped:
        return replace(issue, stories=tuple(s for s in issue.stories if s.id not in rendered.dropped))
    return issue


def recipients(letter: NewsletterConfig, store: Store) -> list[str]:
    """feeds.yaml's subscribers plus the web's, minus everyone who unsubscribed; sorted."""
    known = store.subscribers(letter.name)
    wanted = {a.strip().lower() for a in letter.subscribers if a.strip()}
    wanted |= {a for a, active in known.items() if active}
    return sorted(a for a in wanted if known.get(a, True))


# How long before an issue's window an article may be dated and still be news (a feed that
# was down, or dates its items late).  Older ones first seen in the window are an archive.
ARCHIVE_AGE = timedelta(days=7)


def compose_issue(
    loaded: LoadedConfig, store: Store, letter: NewsletterConfig, latest: IssueRecord | None, now: datetime
) -> digest.DigestIssue:
    """The issue of ``letter`` that would be frozen at ``now``, after ``latest`` (nothing recorded).

    Its window runs from the end of the previous issue (or ``first_issue_lookback`` ago)
    to ``now``; its stories come from the same snapshot builder as the output feeds.
    """
    start = latest.window_end if latest is not None else now - letter.first_issue_lookback
    titles = {f.url: f.title for f in loaded.config.feeds if f.title}
    source = _ReadEntries(store)
    snapshot = read_snapshot(
        source,
        {**store.feed_titles(), **titles},
        now,
        since=start,
        feeds=[f.url for f in loaded.config.feeds],  # a feed removed from feeds.yaml leaves the issues
    )
    chosen = digest.select_stories(
        snapshot,
        window_start=start,
        window_end=now,
        topics=letter.topics,
        feeds=letter.feeds,
        max_stories=letter.max_stories,
        # After the first issue, an article dated long before the window is a feed's
        # archive (a feed just added), not news.  The first issue, on a fresh store, shows
        # what the feeds hold, whatever its dates.
        reported_after=start - ARCHIVE_AGE if latest is not None else None,
        copies=source.entries,
        sent=_sent_stories(store, letter, snapshot, start),
    )
    return digest.DigestIssue(
        newsletter=letter.name,
        title=letter.title,
        number=_next_number(loaded, store, letter, latest),
        window_start=start,
        window_end=now,
        frozen_at=now,
        timezone=letter.timezone,
        lang=letter.lang,
        stories=chosen,
    )


def _sent_stories(store: Store, letter: NewsletterConfig, snapshot: Snapshot, start: datetime) -> set[str]:
    """The ids of the stories first seen before ``start`` that earlier issues of ``letter``
    carried: those come back marked updated; the others are new to its readers.  Only
    the issues since the oldest such story are read."""
    older = {story.id: story.first_seen for story in snapshot.stories if story.first_seen <= start}
    if not older:
        return set()
    carried: set[str] = set()
    for record in store.issues(letter.name, ending_after=min(older.values())):
        if record.status != "empty":
            carried.update(story.id for story in digest.issue_from_json(record.snapshot).stories)
    return carried & older.keys()


@dataclass(slots=True)
class _ReadEntries:
    """The store as ``read_snapshot`` reads it, keeping every entry it hands over.

    The snapshot says when each story was first seen; the issue also needs when each of
    its copies was, to find the articles that joined a story reported before its window
    (``digest.select_stories``): the entries are at hand, and reading them twice is not."""

    store: Store
    entries: dict[str, StoredEntry] = field(default_factory=dict)

    def entries_first_seen_since(self, since: datetime) -> list[StoredEntry]:
        return self._keep(self.store.entries_first_seen_since(since))

    def get_entries(self, ids: Iterable[str]) -> list[StoredEntry]:
        return self._keep(self.store.get_entries(ids))

    def entry_counts(self) -> dict[str, int]:
        return self.store.entry_counts()

    def iter_stories(self) -> Iterator[StoredStory]:
        return self.store.iter_stories()

    def _keep(self, found: list[StoredEntry]) -> list[StoredEntry]:
        self.entries.update((stored.id, stored) for stored in found)
        return found


def _held_back(
    run: _Run, letter: NewsletterConfig, record: IssueRecord, counted_from: datetime | None
) -> str:
    """Why a ``digest --send`` starts no new issue: who of ``record`` still waits, until
    when, and what to do."""
    rows = [r for r in run.store.deliveries(letter.name, record.number) if r.status in OPEN_STATES]
    retries = sorted(
        (r for r in rows if r.status == "retry"), key=lambda r: (r.next_attempt or run.now, r.recipient)
    )
    untried = len(rows) - len(retries)
    waits = []
    when = run.now
    if retries:
        when = max(run.now, retries[0].next_attempt or run.now)
        said = f" ({digest.clean_text(retries[0].last_error, 200)})" if retries[0].last_error else ""
        waits.append(f"{_recipients(len(retries))} to retry{said}, next try at {_local(letter, when)}")
    if untried:
        waits.append(f"{_recipients(untried)} not tried yet")
    again = f"run `aggregator digest {letter.name} --send` again"
    if untried:
        todo = f"{again} once {mail_server(run.loaded)} takes mail"
    else:
        todo = f"{again} after that time, or leave it to `aggregator run`"
    shown = shown_number(record)
    this, after = f"#{shown}", f"#{shown + 1}"
    text = (
        f"no new issue: {letter.name} {this} still has {' and '.join(waits)}. "
        f"{after} starts once {this} is done: {todo}"
    )
    if retries and counted_from is not None:
        ends = _local(letter, next_issue_time(letter, counted_from))
        text += (
            f"; at the next scheduled issue, {ends}, retries still left get one last try and {after} starts"
        )
    return text + "."


def _recipients(count: int) -> str:
    return f"{count} recipient{'' if count == 1 else 's'}"


def _local(letter: NewsletterConfig, moment: datetime) -> str:
    """When something will be done (a next try, the next issue), in the newsletter's time
    zone, to the minute: rounded up, never down.  Shown as "next try at 10:05" for a try due
    at 10:05:27, it had the operator run `digest --send` again at 10:05, to be refused."""
    return digest.format_time(_minute_up(moment), letter.timezone)


def _minute_up(moment: datetime) -> datetime:
    """``moment`` if it is a whole minute, else the next whole minute."""
    whole = moment.replace(second=0, microsecond=0)
    return whole if whole == moment else whole + timedelta(minutes=1)


def _render(
    loaded: LoadedConfig, letter: NewsletterConfig, issue: digest.DigestIssue
) -> digest.RenderedDigest:
    return digest.render_digest(issue, archive_url=archive_url(loaded, letter, issue.number))


def _short(address: str) -> str:
    return hashlib.sha256(address.lower().encode()).hexdigest()[:12]


def _message_name(letter: NewsletterConfig, number: int, address: str) -> str:
    return f"{letter.name}-{number:04d}-{_short(address)}"


def _list_id(letter: NewsletterConfig) -> str:
    ident = letter.list_id or f"{letter.name}.list.{mail.domain_of(letter.sender)}"
    return mail.list_id_value(letter.title, ident)


def _message_bytes(  # noqa: PLR0917 -- private
    loaded: LoadedConfig,
    letter: NewsletterConfig,
    issue: digest.DigestIssue,
    rendered: digest.RenderedDigest,
    address: str,
    key: bytes,
    dkim: mail.DkimKey | None,
    *,
    test: bool = False,
) -> bytes:
    token = make_unsubscribe_token(key, letter.name, address)
    spec = mail.MessageSpec(
        sender=letter.sender,
        sender_name=letter.title,
        reply_to=letter.reply_to,
        subject=("[test] " if test else "") + rendered.subject,
        html=rendered.html,
        text=rendered.text,
        date=mail.format_date(issue.frozen_at),
        list_id=_list_id(letter),
    )
    # A test copy is its own message every time: mail providers drop a second message with
    # a Message-ID they have seen, so a second test copy of one issue never arrived.
    number = f"test{issue.number}-{int(issue.frozen_at.timestamp())}" if test else issue.number
    recipient = mail.Recipient(
        address=address,
        message_id=mail.message_id(letter.name, number, address, mail.domain_of(letter.sender)),
        # One click over https (RFC 8058) only: a mailto: entry would go to the sender's
        # mailbox, which nothing here reads; a client that "unsubscribed" by mail left the
        # reader subscribed without a word.
        unsubscribe_url=unsubscribe_url(loaded, letter, token),
    )
    data = mail.serialize(mail.build_message(spec, recipient))
    return mail.dkim_sign(data, dkim) if dkim is not None else data


def _backoff(attempts: int) -> timedelta:
    delay: timedelta = RETRY_FIRST * (2 ** max(0, attempts - 1))
    return min(RETRY_MAX, delay)


def _recover(run: _Run, letter: NewsletterConfig, record: IssueRecord) -> None:
    """Settle rows a crashed run left behind (the lock says no one else is sending)."""
    shown = shown_number(record)  # what its messages are named by
    for row in run.store.deliveries(letter.name, record.number):
        if row.status not in ("sending", "in_data"):
            continue
        delivered = run.transport.delivered(_message_name(letter, shown, row.recipient))
        if delivered is not None:  # the outbox can tell
            status = "sent" if delivered else "pending"
            run.store.set_delivery(
                letter.name, record.number, row.recipient, status, run.now, only_from=[row.status]
            )
        elif row.status == "sending":
            run.store.set_delivery(
                letter.name, record.number, row.recipient, "pending", run.now, only_from=["sending"]
            )
        else:
            run.store.set_delivery(
                letter.name,
                record.number,
                row.recipient,
                "uncertain",
                run.now,
                error="interrupted during DATA: it may have been delivered, so it is not sent again",
                only_from=["in_data"],
            )


@dataclass(slots=True)
class _Tally:
    """What one run of an issue's deliveries met so far: when to stop, and whether the
    server put off everyone."""

    results: list[mail.DeliveryResult] = field(default_factory=list)
    uncertain_in_a_row: int = 0
    dropped_in_a_row: int = 0  # sessions the server closed at a reader's RCPT TO, in a row
    dropped: int = 0  # ... in this run
    put_off_untried: int = 0  # readers tried for the first time and put off (a 4xx)

    def add(self, result: mail.DeliveryResult, *, first_try: bool) -> None:
        self.results.append(result)
        self.put_off_untried += first_try and result.outcome is mail.Outcome.RETRY
        self.uncertain_in_a_row = (
            self.uncertain_in_a_row + 1 if result.outcome is mail.Outcome.UNCERTAIN else 0
        )
        self.dropped_in_a_row = self.dropped_in_a_row + 1 if result.dropped else 0
        self.dropped += result.dropped


def _why_stop(run: _Run, result: mail.DeliveryResult, tally: _Tally) -> str:
    """Why the readers left of an issue wait for the next run after ``result``, or ""."""
    if result.server_down:
        return result.detail  # everyone else would wait for the same timeout
    if tally.uncertain_in_a_row >= UNCERTAIN_IN_A_ROW:
        return (
            f"{mail_server(run.loaded)}: {tally.uncertain_in_a_row} messages in a row lost during DATA;"
            " check the server's logs and smtp.timeout"
        )
    if tally.dropped_in_a_row >= SESSIONS_DROPPED_IN_A_ROW:
        return (
            f"{mail_server(run.loaded)} closed the session at {tally.dropped_in_a_row} readers' RCPT TO in a"
            f" row ({result.detail}): it takes no mail for now"
        )
    if result.dropped and tally.dropped >= SESSIONS_DROPPED_PER_RUN:
        return (
            f"{mail_server(run.loaded)} closed the session at {tally.dropped} readers' RCPT TO in this run"
            f" ({result.detail}); no more new sessions until the next run"
        )
    return ""


def _put_off_everyone(tally: _Tally, someone_has_it: bool) -> str:
    """The 4xx the server answered every reader tried in this run with, at one step, when
    none was accepted: the server puts off all mail for now (a full queue, a local problem),
    as good as down, so the issue waits for all.  "" otherwise.  Readers put off before,
    met again while others have the issue, are no sign of it: a greylisted address, a full
    mailbox, an address the server closes the session on are those readers' own, and
    holding the issue for them would hold every issue after it too."""
    results = tally.results
    put_off = [r for r in results if r.outcome is mail.Outcome.RETRY]
    if not put_off or any(r.outcome in (mail.Outcome.SENT, mail.Outcome.UNCERTAIN) for r in results):
        return ""
    if len({r.stage for r in put_off}) != 1 or not put_off[0].stage:  # "": not a server's reply
        return ""
    if someone_has_it and not tally.put_off_untried:
        return ""
    return put_off[-1].detail


def _deliver(run: _Run, letter: NewsletterConfig, record: IssueRecord, *, final: bool) -> IssueOutcome:
    issue = digest.issue_from_json(record.snapshot)
    rendered = _render(run.loaded, letter, issue)
    archive = _archive(run, letter, record, issue)
    _recover(run, letter, record)
    errors: list[str] = []
    pending: list[str] = []
    stopped = ""
    interrupted = False
    tally = _Tally()
    # Put off on their last try (the next issue is due): given up once the run shows whether
    # it was them or the server (``_settle_last_tries``).
    last_tries: list[tuple[str, mail.DeliveryResult]] = []
    # Frozen with the issue, but someone who left since gets nothing more: unsubscribed on
    # the web, or taken out of feeds.yaml's subscribers (a pending retry went on mailing them).
    known = run.store.subscribers(letter.name)
    current = set(recipients(letter, run.store))
    # Readers whose time has come first; a retry whose time has not come (only tried now as
    # its last try) after them: one that stops the run must not hold up those never tried.
    rows = sorted(run.store.deliveries(letter.name, record.number), key=lambda r: _not_yet(r, run.now))
    for row in rows:
        if row.status not in ("pending", "retry"):
            continue
        if (lowered := row.recipient.strip().lower()) not in current:
            why = None if known.get(lowered) is False else _left_the_list(run.loaded, letter)
            run.store.set_delivery(
                letter.name,
                record.number,
                row.recipient,
                "unsubscribed",
                run.now,
                error=why,
                only_from=[row.status],
            )
            continue
        last_try = final and row.status == "retry"
        if _not_yet(row, run.now) and not last_try:
            continue
        if not _claim(run, letter, record, row, last_try=last_try):
            continue
        result = _send_claimed(run, letter, record, issue, rendered, row)
        if result is None:  # asked to stop: that reader is as it was, and the others wait too
            stopped, interrupted = STOPPED_ON_REQUEST, True
            break
        address = row.recipient
        if line := _record_result(run, letter, record, row.attempts + 1, address, result, last_try=last_try):
            pending.append(line)
        if last_try and result.outcome is mail.Outcome.RETRY and not result.server_down:
            last_tries.append((address, result))
        if not result.server_down and result.outcome is not mail.Outcome.SENT:
            errors.append(f"{address}: {result.outcome.value}: {result.detail}")
            log.warning(
                "newsletter %s #%d: %s: %s: %s",
                letter.name,
                issue.number,
                address,
                result.outcome.value,
                result.detail,
            )
        tally.add(result, first_try=row.status == "pending")
        stopped = _why_stop(run, result, tally)
        if stopped:
            errors.append(f"{stopped}; {letter.name} #{issue.number} continues on the next run")
            log.warning("newsletter %s #%d: %s", letter.name, issue.number, stopped)
            break
    # Not when interrupted: the readers never tried are no evidence either way, and the
    # next run gives these their last try again.
    if (
        last_tries
        and not interrupted
        and (waits := _settle_last_tries(run, letter, record, last_tries, tally, stopped))
    ):
        stopped = stopped or waits
        errors.append(f"{waits}; {letter.name} #{issue.number} continues on the next run")
        log.warning("newsletter %s #%d: %s", letter.name, issue.number, waits)
    rows = run.store.deliveries(letter.name, record.number)
    if not any(r.status in OPEN_STATES for r in rows):
        run.store.finish_issue(letter.name, record.number, run.now)
    status = "sending" if any(r.status in OPEN_STATES for r in rows) else "done"
    return IssueOutcome(
        newsletter=letter.name,
        number=record.number,
        status=status,
        stories=len(issue.stories),
        shown=rendered.shown,
        sent=sum(r.status == "sent" for r in rows),
        retrying=sum(r.status == "retry" for r in rows),
        waiting=sum(r.status in ("pending", "sending") for r in rows),
        failed=sum(r.status == "failed" for r in rows),
        unsubscribed=sum(r.status == "unsubscribed" for r in rows),
        uncertain=tuple(r.recipient for r in rows if r.status == "uncertain"),
        pending=tuple(pending),
        errors=tuple(errors),
        archive=archive,
        stopped=stopped,
        issue=issue.number,
        outbox=run.transport.outbox,
        sent_in_run=sum(r.outcome is mail.Outcome.SENT for r in tally.results),
        interrupted=interrupted,
    )


def _claim(
    run: _Run, letter: NewsletterConfig, record: IssueRecord, row: DeliveryRecord, *, last_try: bool
) -> bool:
    """Claim ``row`` for a message now (``Store.claim_delivery``); False when another run has it."""
    if last_try and _not_yet(row, run.now):
        # The next issue is due and will not wait for it: its last try is now, not never
        # (a `run --once` once a day, at the newsletter's time, gave up every 451 untried).
        run.store.set_delivery(
            letter.name,
            record.number,
            row.recipient,
            "retry",
            run.now,
            error=row.last_error,
            next_attempt=run.now,
            only_from=["retry"],
        )
    return run.store.claim_delivery(letter.name, record.number, row.recipient, run.now)


def _send_claimed(  # noqa: PLR0917 -- private
    run: _Run,
    letter: NewsletterConfig,
    record: IssueRecord,
    issue: digest.DigestIssue,
    rendered: digest.RenderedDigest,
    row: DeliveryRecord,
) -> mail.DeliveryResult | None:
    """Deliver the message of the claimed ``row``; None when the transport refused to start
    it (``mail.TransportStopped``: the process is stopping), the row then put back as it was."""
    try:
        return _deliver_one(run, letter, record, issue, rendered, row.recipient)
    except mail.TransportStopped:
        _unclaim(run, letter, record, row)
        log.info(
            "newsletter %s #%d: %s; %s and the readers after wait for the next run",
            letter.name,
            issue.number,
            STOPPED_ON_REQUEST,
            row.recipient,
        )
        return None


def _unclaim(run: _Run, letter: NewsletterConfig, record: IssueRecord, row: DeliveryRecord) -> None:
    """Put back a delivery claimed for a message the transport refused to start (a stop):
    nothing was sent, so it is as it was before the claim (but for its count of attempts, as
    after a crash), and the next run sends it once."""
    run.store.set_delivery(
        letter.name,
        record.number,
        row.recipient,
        row.status,
        run.now,
        error=row.last_error,
        next_attempt=row.next_attempt,
        only_from=["sending"],
    )


def _not_yet(row: DeliveryRecord, now: datetime) -> bool:
    """A retry whose next try has not come."""
    return row.status == "retry" and row.next_attempt is not None and row.next_attempt > now


def _settle_last_tries(  # noqa: PLR0917 -- private
    run: _Run,
    letter: NewsletterConfig,
    record: IssueRecord,
    last_tries: list[tuple[str, mail.DeliveryResult]],
    tally: _Tally,
    stopped: str,
) -> str:
    """Give up the readers put off on their last try (the next issue is due), unless the
    run shows the server at fault: then they stay retries and the issue waits for all, as
    for a server down, and this says why (or "" when ``stopped`` already says it)."""
    if any(r.server_down for r in tally.results):  # the server down: nobody is given up on it
        return ""
    rows = run.store.deliveries(letter.name, record.number)
    if why := _put_off_everyone(tally, someone_has_it=any(r.status in ("sent", "uncertain") for r in rows)):
        return (
            ""
            if stopped
            else f"{mail_server(run.loaded)} put off every message tried and took none ({why}): it"
            " takes no mail for now, and nobody is given up"
        )
    for address, result in last_tries:
        gave_up = f"gave up: the next issue is due; last error: {result.detail}"
        run.store.set_delivery(
            letter.name, record.number, address, "failed", run.now, error=gave_up, only_from=["retry"]
        )
    return ""


def _left_the_list(loaded: LoadedConfig, letter: NewsletterConfig) -> str:
    """Why a reader the issue was frozen for is not sent it, though they never unsubscribed."""
    return (
        f"not sent: no longer among the subscribers of {letter.name} in {loaded.path.name},"
        " nor subscribed on the web"
    )


def _record_result(  # noqa: PLR0917 -- private
    run: _Run,
    letter: NewsletterConfig,
    record: IssueRecord,
    attempts: int,
    address: str,
    result: mail.DeliveryResult,
    *,
    last_try: bool,
) -> str:
    """Record ``result`` of the ``attempts``-th try at ``address``; the ``pending`` line
    when it was put off for a fault on this machine, else "".

    A retry that was the last try (the next issue is due) is recorded as a retry too: the
    end of the run gives it up, or not (``_settle_last_tries``)."""
    outcome = result.outcome
    if outcome is mail.Outcome.RETRY:
        # On a whole minute, as the messages tell it (``_local``): the time shown is the time
        # the try comes, not up to a minute after it.
        next_at = _minute_up(run.now + _backoff(attempts))
        run.store.set_delivery(
            letter.name, record.number, address, "retry", run.now, error=result.detail, next_attempt=next_at
        )
        return (
            _pending_line(letter, address, result.detail, next_at)
            if result.local_fault and not last_try
            else ""
        )
    error = None if outcome is mail.Outcome.SENT else result.detail
    run.store.set_delivery(letter.name, record.number, address, outcome.value, run.now, error=error)
    return ""


def _pending_line(letter: NewsletterConfig, address: str, detail: str, next_at: datetime) -> str:
    """``a@example.com: not delivered yet: why; next try at 18 Aug 2025, 12:05 BST``."""
    why = detail.removeprefix(f"{address}: ")  # the unexpected error's detail names it already
    return (
        f"{address}: not delivered yet: {digest.clean_text(why, 300)}; next try at {_local(letter, next_at)}"
        " (retried until the next issue is due)"
    )


def _deliver_one(  # noqa: PLR0917 -- private
    run: _Run,
    letter: NewsletterConfig,
    record: IssueRecord,
    issue: digest.DigestIssue,
    rendered: digest.RenderedDigest,
    address: str,
) -> mail.DeliveryResult:
    """Build and deliver one claimed recipient's message; every failure becomes a result."""
    data_began = False

    def before_data() -> None:
        nonlocal data_began
        run.store.set_delivery(letter.name, record.number, address, "in_data", run.now, only_from=["sending"])
        data_began = True

    try:
        data = _message_bytes(run.loaded, letter, issue, rendered, address, run.key, run.dkim)
        return run.transport.deliver(
            letter.sender, address, data, _message_name(letter, issue.number, address), before_data
        )
    except mail.SenderError as exc:
        # The sender or the signing key: every message would fail alike.  Not this
        # recipient's fault; the issue waits for the configuration to be fixed.
        return mail.DeliveryResult(mail.Outcome.RETRY, str(exc), server_down=True)
    except DeliveryError as exc:
        # A message that cannot be built (a bad address) fails for that recipient only.
        return mail.DeliveryResult(mail.Outcome.FAILED, str(exc))
    except mail.TransportStopped:
        raise
    except Exception as exc:  # a bug or an error nobody foresaw: recorded, not a crash at every run
        log.exception("newsletter %s #%d: %s: unexpected error", letter.name, issue.number, address)
        detail = f"{address}: unexpected error: {type(exc).__name__}: {exc}"
        if data_began:  # it may have arrived: never send it again
            return mail.DeliveryResult(mail.Outcome.UNCERTAIN, detail)
        # Nothing left: tried again later (backing off; given up when the next issue is due),
        # since it may pass (a database locked for a moment while the claim was written);
        # but it is no server's routine 4xx: the run must say so (``IssueOutcome.pending``).
        return mail.DeliveryResult(mail.Outcome.RETRY, detail, local_fault=True)


# ----------------------------------------------------------------------- archive


def write_archive(
    loaded: LoadedConfig, store: Store, letter: NewsletterConfig, issue: digest.DigestIssue
) -> Path:
    """Write ``NNNN.html``, ``NNNN.txt`` (no personal tokens) and ``index.html``; return the HTML's path.

    A file it cannot write (its folder is a file, no permission, a full disk) is an
    ``OutputError`` naming this stage (``archive_stage``), the file and what is wrong with
    its path; the caller adds what it kept.  No setting names the folder: it is always
    ``newsletters/archive/NAME`` beside feeds.yaml, where ``serve`` looks.
    """
    folder = archive_dir(loaded, letter.name)
    generic = _generic_unsubscribe(loaded, letter)
    full = digest.render_digest(
        issue, archive_url=archive_url(loaded, letter, issue.number), unsubscribe_url=generic, max_bytes=None
    )
    stage = archive_stage(letter.name, issue.number)
    page = folder / f"{issue.number:04d}.html"
    # The first write makes the folder (write_atomic does), so a file in its place is
    # reported against the page: pathfaults then names the file in the way.
    _write_archived(stage, page, full.html)
    _write_archived(stage, folder / f"{issue.number:04d}.txt", full.text)
    _write_index(folder, letter, store, issue, stage)
    return page


def archive_stage(name: str, number: int) -> str:
    """What archiving is called in its errors: ``archiving newsletter daily's issue #3``."""
    return f"archiving newsletter {name}'s issue #{number}"


def _archive(run: _Run, letter: NewsletterConfig, record: IssueRecord, issue: digest.DigestIssue) -> Path:
    """``write_archive`` before any message of the run: a reader's "View in a browser" link
    must lead somewhere.  Its ``OutputError`` also says what is kept and when it goes on."""
    try:
        return write_archive(run.loaded, run.store, letter, issue)
    except OutputError as exc:
        kept, retry = _unarchived(run, letter, record)
        raise exc.but(kept=kept, retry=retry) from exc.__cause__


def _unarchived(run: _Run, letter: NewsletterConfig, record: IssueRecord) -> tuple[str, str]:
    """(what is kept, when it goes on) of an issue whose archive could not be written.

    Nobody this run was meant for has it (``_archive`` comes first); an issue resumed after
    earlier runs may have readers who had it from them."""
    had = sum(r.status == "sent" for r in run.store.deliveries(letter.name, record.number))
    if not had:
        return (
            "the issue is frozen and stored; no reader was sent it yet",
            "it is archived and sent at the next run",
        )
    readers = f"{had} reader{'' if had == 1 else 's'}"
    return (
        f"the issue is stored; {readers} had it from an earlier run, the others were not sent it",
        "it is archived and sent to the others at the next run",
    )


def _write_archived(stage: str, path: Path, text: str) -> None:
    """``text`` written atomically and durably to ``path`` (``atomicfile.write_atomic``: a
    temporary file of its own, flushed, renamed, removed when the write fails); an
    ``OSError`` as an ``OutputError`` of ``stage``."""
    try:
        write_atomic(path, text.encode("utf-8"))
    except OSError as exc:
        raise output_error(stage, path, exc) from exc


def _write_index(
    folder: Path, letter: NewsletterConfig, store: Store, current: digest.DigestIssue, stage: str
) -> None:
    items = []
    numbers = {shown_number(r): r for r in store.issues(letter.name) if r.status != "empty"}
    # Pages an earlier database wrote (the numbering went on from them: _first_number) are
    # listed too, from their files: readers keep every issue the archive holds.
    on_disk = _archived_pages(folder)
    for number in sorted(numbers.keys() | on_disk.keys(), reverse=True):
        record = numbers.get(number)
        if record is None:
            written = datetime.fromtimestamp((folder / on_disk[number]).stat().st_mtime, UTC)
            items.append(f'<li><a href="{number:04d}.html">{written:%Y-%m-%d}: issue {number}</a></li>')
            continue
        issue = digest.issue_from_json(record.snapshot) if number != current.number else current
        local = issue.frozen_at.astimezone(ZoneInfo(issue.timezone))
        lead = html.escape(digest.by_importance(issue.stories)[0].headline) if issue.stories else ""
        count = len(issue.stories)
        items.append(
            f'<li><a href="{number:04d}.html">{local:%Y-%m-%d}: issue {number}</a>'
            f" ({digest.stories_phrase(count)}) {lead}</li>"
        )
    title = html.escape(digest.clean_text(letter.title))
    page = (
        f'<!doctype html>\n<html lang="{html.escape(letter.lang)}"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        '<meta name="color-scheme" content="light dark">'
        f"<title>{title}: archive</title></head>\n<body><h1>{title}</h1>\n<ul>\n"
        + "\n".join(items)
        + "\n</ul>\n</body></html>\n"
    )
    _write_archived(stage, folder / "index.html", page)


def _archived_pages(folder: Path) -> dict[int, str]:
    """Issue number → file name of the ``NNNN.html`` pages in an archive folder (none when
    there is no folder, or it cannot be read)."""
    try:
        names = [entry.name for entry in folder.iterdir()]
    except OSError:  # missing, or not a folder
        return {}
    return {int(found.group(1)): name for name in names if (found := _ARCHIVED_ISSUE_RE.fullmatch(name))}
