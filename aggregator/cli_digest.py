"""The ``aggregator digest NAME [--preview | --send | --to ADDRESS]`` command.

Registered in ``aggregator/cli.py`` with ``app.command("digest")(cli_digest.digest)``.
It reads the clock once, loads the config through the CLI's context object (``ctx.obj``
with a ``load()`` method), and prints where things went.  Exit codes: 0 done, 1 some
recipients failed or are uncertain, the send stopped before everyone was tried (the
server down, or SIGTERM / Ctrl-C: the message in flight is finished first, and the last
line says what is left for the next run), or ``--send`` started no new issue because the
previous one still waits on retries (it says who, until when, and what to do); 2 bad usage
or config.  A second SIGTERM or Ctrl-C ends ``--send`` at once, by the signal (128+N).
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Protocol

import typer

from aggregator.cli_console import RUN_POLL_FIRST, echo, no_database_yet
from aggregator.config import LoadedConfig, address_problem
from aggregator.errors import AggregatorError, OutputError
from aggregator.store import NoDatabaseYet, Store

if TYPE_CHECKING:
    from aggregator import newsletters

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class _Loads(Protocol):
    def load(self) -> LoadedConfig: ...


def digest(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The newsletter's name in feeds.yaml.")],
    preview: Annotated[
        bool, typer.Option("--preview", help="Write the HTML of the issue due now and print its path.")
    ] = False,
    send: Annotated[
        bool, typer.Option("--send", help="Send the due issue now, even before its schedule fires.")
    ] = False,
    to: Annotated[
        str | None,
        typer.Option("--to", metavar="ADDRESS", help="Send a test copy to ADDRESS (not recorded)."),
    ] = None,
) -> None:
    """Preview a newsletter issue, send it, or send a test copy."""
    # Imported here: newsletters pulls in MJML rendering and the mail stack, which every
    # other command (`aggregator poll` above all) would otherwise load at start-up.
    from aggregator import newsletters, pipeline  # noqa: PLC0415 -- MJML and mail, for this command only
    from aggregator.mail import Outcome  # noqa: PLC0415 -- see above

    if sum((preview, send, to is not None)) != 1:
        echo("digest: give exactly one of --preview, --send or --to ADDRESS", err=True)
        raise typer.Exit(EXIT_USAGE)
    if to is not None and (problem := address_problem(to, utf8_local_part=True)):
        echo(f"digest: --to {to!r}: {problem}", err=True)
        raise typer.Exit(EXIT_USAGE)
    context: _Loads = ctx.obj
    loaded = context.load()
    try:
        newsletters.find_newsletter(loaded, name)  # before a database is opened (or made) for it
    except AggregatorError as exc:
        echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    now = datetime.now(UTC)
    try:
        # A preview only reads: where nothing has been polled yet it creates nothing.
        with _open_store(loaded, name, create=not preview) as store:
            # What `aggregator poll` stored may not be deduplicated and grouped yet (`run`
            # does both after every poll): an issue built before that would carry every
            # copy of an article as a story of its own.
            pipeline.collapse_duplicates(loaded.config, store)
            pipeline.group_into_stories(loaded.config, store, now)
            if preview:
                path = newsletters.preview_issue(loaded, store, now, name)
                echo(str(path))
                raise typer.Exit(EXIT_OK)
            if to is not None:
                result = newsletters.send_test_copy(loaded, store, now, name, to)
                if result.outcome is not Outcome.SENT:
                    where = f"{result.outcome}: {result.detail}"
                elif loaded.config.smtp is None:  # the outbox: its detail is the file written, nothing sent
                    where = f"written to {typed_path(Path(result.detail))} (no smtp: configured)"
                else:
                    where = result.detail
                echo(f"test copy to {to}: {where}", err=result.outcome is not Outcome.SENT)
                raise typer.Exit(EXIT_OK if result.outcome is Outcome.SENT else EXIT_FAILED)
            outcomes, stopped_by = _send_due(loaded, store, now, name)
    except AggregatorError as exc:
        echo(f"error: {exc}", err=True)
        # The archive could not be written (a file in the way): its message says the stage, the
        # path and what to do, and it is the run that failed (1), as for the outbox below.
        raise typer.Exit(EXIT_FAILED if isinstance(exc, OutputError) else EXIT_USAGE) from exc
    except OSError as exc:  # the outbox or the archive: a file in the way, read-only, a full disk
        where = f": {exc.filename}" if exc.filename else ""
        echo(f"error: writing the issue{where}: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_FAILED) from exc
    if not outcomes:
        echo(f"{name}: another process is sending right now; try again later", err=True)
        raise typer.Exit(EXIT_FAILED)
    raise typer.Exit(_report_sent(outcomes, stopped_by))


def _report_sent(outcomes: list[newsletters.IssueOutcome], stopped_by: str) -> int:
    """Print what ``--send`` did to each issue, then what a stop left; the exit code."""
    failed = [report(outcome, err=False) for outcome in outcomes]
    interrupted = next((outcome for outcome in outcomes if outcome.interrupted), None)
    if interrupted is not None:  # last, as run --once says it: what the next run has to do
        echo(stopped_line(interrupted, stopped_by), err=True)
    return EXIT_FAILED if any(failed) else EXIT_OK


def _send_due(
    loaded: LoadedConfig, store: Store, now: datetime, name: str
) -> tuple[list[newsletters.IssueOutcome], str]:
    """Send ``name``'s due issue (``force``: a new one even before its schedule fires); the
    outcomes, and the name of the stop signal received ("" without one).

    SIGTERM or Ctrl-C finishes the message being sent, records it and starts no other (the
    outcome is ``interrupted``, its readers left ``waiting`` for the next run); a second
    signal stops at once (``service.StopRequest``).  Without it SIGTERM killed the command
    mid-message, and the reader in flight was recorded uncertain, never to get that issue.
    """
    from aggregator import newsletters, service  # noqa: PLC0415 -- the scheduler's stop, for --send only

    with (
        service.StopRequest() as stop,
        service.StoppableTransport(newsletters.default_transport(loaded), stop.event) as transport,
    ):
        outcomes = newsletters.run_due_newsletters(
            loaded, store, now, names=[name], force=True, transport=transport
        )
    return outcomes, stop.signal.name if stop.signal is not None else ""


def stopped_line(outcome: newsletters.IssueOutcome, signal_name: str) -> str:
    """The last line of a send a stop interrupted: what this run sent, what the next one sends."""
    done = "sent" if outcome.outbox is None else "written to the outbox"
    left = outcome.waiting + outcome.retrying
    stopped = f"stopped by {signal_name or 'a stop signal'}"
    return f"{stopped}: {outcome.sent_in_run} {done}, {left} left for the next run"


def _open_store(loaded: LoadedConfig, name: str, *, create: bool) -> Store:
    """The store; without ``create``, where nothing is stored yet, say so and exit 0, as
    ``status`` and ``export`` do there: there is no issue to show, and nothing failed."""
    try:
        return Store.open(loaded.database_url, create=create)
    except NoDatabaseYet as exc:
        echo(
            f"{no_database_yet(exc)}: nothing stored yet for a preview of {name}; {RUN_POLL_FIRST}", err=True
        )
        raise typer.Exit(EXIT_OK) from exc


def report(outcome: newsletters.IssueOutcome, *, err: bool) -> bool:
    """Print what an issue's run did (the summary on stdout unless ``err``; the rest on
    stderr); whether it counts as a failure for the exit status."""
    echo(describe(outcome), err=err)
    for recipient in outcome.uncertain:
        echo(
            f"  uncertain: {recipient}: the connection broke during DATA; it may have arrived and "
            "will not be sent again",
            err=True,
        )
    if outcome.stopped:
        echo(f"  stopped: {outcome.stopped}; the others are sent on the next run", err=True)
    if outcome.held_back:
        echo(f"  {outcome.held_back}", err=True)
    for line in outcome.pending:  # put off by a fault here, not by the server: nothing says it passes
        echo(f"  {line}", err=True)
    # Stopped: nobody left has the issue yet, however few were tried (exit 0 told cron all was well).
    # Held back: the issue asked for was not sent, as a stop leaves it (exit 0 said it was).
    # Pending: a reader put off by an error here (a bug, an unwritable outbox) has no issue yet.
    return bool(
        outcome.failed or outcome.uncertain or outcome.stopped or outcome.held_back or outcome.pending
    )


def describe(outcome: newsletters.IssueOutcome) -> str:
    """One line per issue, for this command and ``run --once``."""
    from aggregator.digest import stories_phrase  # noqa: PLC0415 -- the digest stack: not at start-up

    number = outcome.shown_number  # as readers see it, not the store's key
    if outcome.status == "empty":  # its number is the next issue's: not used up, not shown
        since = f"since issue #{number - 1}" if number > 1 else "to send yet"
        return f"{outcome.newsletter}: nothing new {since}; no email"
    # Written to the outbox is not sent: "1 sent" had the operator wait for mail that never left.
    messages = "message" if outcome.sent == 1 else "messages"
    sent = (
        f"{outcome.sent} {messages} written to {typed_path(outcome.outbox)}/"
        if outcome.outbox
        else f"{outcome.sent} sent"
    )
    if outcome.sent != outcome.sent_in_run:
        # Resumed (after a stop, a crash, retries): "6 sent" read as if this run sent them all.
        sent += f" ({outcome.sent_in_run} in this run)"
    parts = [sent]
    readers = outcome.sent + outcome.retrying + outcome.waiting + outcome.failed + outcome.unsubscribed
    if not readers and not outcome.uncertain:  # "0 sent" read as if every send failed
        parts = ["no subscribers yet: nobody to send it to"]
    if outcome.retrying:
        parts.append(f"{outcome.retrying} to retry")
    if outcome.waiting:  # the run stopped before them (the server down): not one word said so
        parts.append(f"{outcome.waiting} waiting")
    if outcome.failed:
        parts.append(f"{outcome.failed} failed")
    if outcome.uncertain:
        parts.append(f"{len(outcome.uncertain)} uncertain")
    if outcome.unsubscribed:
        parts.append(f"{outcome.unsubscribed} unsubscribed since it was frozen")
    more = (
        f" ({outcome.stories - outcome.shown} more in the archive)" if outcome.stories > outcome.shown else ""
    )
    return (
        f"{outcome.newsletter} #{number}: {stories_phrase(outcome.shown)}{more}: "
        f"{', '.join(parts)}; archive: {typed_path(outcome.archive) if outcome.archive else None}"
    )


def typed_path(path: Path) -> str:
    """``path`` as a person would type it here: relative to the working folder when under it
    (``newsletters/outbox``), else as it is."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)
