"""The ``aggregator`` command (typer + rich).

This is where time is read (``datetime.now(UTC)``) and handed to the stages, where errors
become exit codes, and where results become tables, progress bars or JSON.  Exit codes:
0 everything fine, 1 some feeds failed (or a digest recipient failed, or ``run --once`` was
stopped by SIGTERM or Ctrl-C and left work for the next run), 2 bad usage or a bad
``feeds.yaml``, 3 another scheduler already runs on the same database, 4 ``aggregator run``
lost its lock (see service).  A reader that stops early (``| head``) is no failure: 0.
A second SIGTERM or Ctrl-C ends ``run --once`` at once, by the signal (128+N to a shell).
"""

from __future__ import annotations

import codecs
import contextlib
import io
import json
import logging
import os
import select
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from typer.core import TyperGroup

from aggregator import __version__, cli_digest, cli_serve, eventloop, pipeline
from aggregator.cli_console import (
    NARROW_TERMINAL,
    RUN_POLL_FIRST,
    WIDE_TERMINAL,
    cell,
    echo,
    entries_phrase,
    json_text,
    lazy_console,
    no_database_yet,
    problem_lines,
    shown,
)
from aggregator.config import (
    CONFIG_ENV,
    DEFAULT_CONFIG_NAME,
    LoadedConfig,
    check_config,
    config_warnings,
    load_config,
    warning_text,
)
from aggregator.errors import AggregatorError, ConfigError, OutputError, StoreError
from aggregator.runlock import ingest_lock
from aggregator.store import NoDatabaseYet, Store
from aggregator.types import FeedState, FeedStatus, PollOutcome, PollSummary, PruneReport, StoredEntry
from aggregator.urls import without_password

if TYPE_CHECKING:
    from rich.table import Table

    from aggregator import newsletters, service

EXIT_OK, EXIT_FEEDS_FAILED, EXIT_USAGE = 0, 1, 2


class _Commands(TyperGroup):
    """The top-level commands, ``feeds`` added when first looked for: its module (the
    feeds.yaml editor, OPML, feed discovery; about 2 MB) is not imported by ``poll``, ``run``
    or ``status``.  Listing the commands (help, completion) or a name that is not one of
    them (to suggest the nearest) adds it first, so every listing and suggestion is as if
    it had been registered with the others, last."""

    def _add_feeds(self) -> None:
        if "feeds" not in self.commands:
            from aggregator.cli_feeds import feeds_app  # noqa: PLC0415 -- see the docstring

            group = typer.main.get_group(feeds_app)
            group.name = "feeds"  # as add_typer(feeds_app, name="feeds") names it
            self.add_command(group)

    def list_commands(self, ctx: typer.Context) -> list[str]:  # type: ignore[override]
        self._add_feeds()
        return super().list_commands(ctx)

    def get_command(self, ctx: typer.Context, cmd_name: str) -> Any:  # type: ignore[override]
        if cmd_name == "feeds":
            self._add_feeds()
        return super().get_command(ctx, cmd_name)

    def resolve_command(self, ctx: typer.Context, args: list[str]) -> Any:  # type: ignore[override]
        if args and args[0] not in self.commands:
            self._add_feeds()
        return super().resolve_command(ctx, args)

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        try:
            return super().invoke(ctx)
        except BrokenPipeError as exc:  # every command: see _reader_gone
            if not _stdout_closed():  # a socket's (SMTP, say): a failure, not a reader gone
                raise
            raise _reader_gone() from exc


def _stdout_closed() -> bool:
    """Whether stdout is a pipe whose reader has gone (Linux and the BSDs flag its write end)."""
    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & (select.POLLERR | select.POLLHUP) for _, events in poller.poll(0))
    except (OSError, ValueError, AttributeError):  # no fileno (captured), no poll()
        return False


def _reader_gone() -> typer.Exit:
    """The exit for a reader that had enough (``aggregator status | head -1``): not an error,
    and click's own exit 1 would say that feeds failed.  Python would report the pipe again
    when it flushes stdout at exit: point stdout at nothing first."""
    os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return typer.Exit(EXIT_OK)


app = typer.Typer(
    cls=_Commands,
    help="Poll feeds, collapse near-identical copies, group stories, publish a combined feed and digests.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
config_app = typer.Typer(help="Check or edit feeds.yaml.", no_args_is_help=True)
app.add_typer(config_app, name="config")
app.command("digest")(cli_digest.digest)
app.command("serve")(cli_serve.serve)

# Lines of text go out through cli_console.echo, as they are; these draw tables and the
# progress bar (and import rich when they first do).
out = lazy_console(soft_wrap=True)
err = lazy_console(stderr=True, soft_wrap=True)


class OutputFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


class ExportFormat(StrEnum):
    JSONL = "jsonl"


class LogFormat(StrEnum):
    TEXT = "text"
    JSON = "json"


class _Context:
    def __init__(self, config_path: Path, verbose: bool) -> None:
        self.config_path = config_path
        self.verbose = verbose

    def load(self) -> LoadedConfig:
        try:
            return load_config(self.config_path)
        except ConfigError as exc:
            for problem in exc.problems:
                echo(str(problem), err=True)
            echo(f"{len(exc.problems)} problem(s) in {self.config_path}; nothing was done.", err=True)
            raise typer.Exit(EXIT_USAGE) from exc


def _now() -> datetime:
    """The one place the CLI reads the clock."""
    return datetime.now(UTC)


# What a command that only reads opens where nothing has been stored yet: an empty database
# in memory, so that it shows what an empty database shows (every feed never polled, no
# entries) without leaving a folder or a file behind.
_NOTHING_STORED = "sqlite://"


@contextmanager
def _open_store(
    loaded: LoadedConfig, *, read_only: bool = False, nothing_to: str | None = None
) -> Iterator[Store]:
    """The configured store; ``read_only`` for the commands that only read, which create
    nothing: where nothing has run yet they say so on stderr and read an empty store.
    ``nothing_to``: what the command cannot do then ("explain 'abc'"), said in the same line,
    and it exits 2 as it would on an empty database (``status`` and ``export`` exit 0 there)."""
    try:
        try:
            store = Store.open(loaded.database_url, create=not read_only)
        except NoDatabaseYet as exc:
            if nothing_to is not None:
                echo(
                    f"{no_database_yet(exc)}: nothing stored yet to {nothing_to}; {RUN_POLL_FIRST}", err=True
                )
                raise typer.Exit(EXIT_USAGE) from exc
            echo(f"{no_database_yet(exc)}: {RUN_POLL_FIRST}", err=True)
            store = Store.open(_NOTHING_STORED)
    except StoreError as exc:
        echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    try:
        yield store
    except StoreError as exc:  # the database failed mid-command (locked, full, damaged)
        echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    finally:
        store.close()


def _version(value: bool) -> None:
    if value:
        try:
            echo(f"aggregator {__version__}")
        except BrokenPipeError as exc:  # run while parsing, before _Commands.invoke
            raise _reader_gone() from exc
        raise typer.Exit()


@app.callback()
def main_options(
    ctx: typer.Context,
    config: Annotated[
        Path,
        # Not readable=True (typer's default): click would refuse a file it may not read in
        # its own words, a box on stderr; load_config says it as for every other cause.
        typer.Option("--config", "-c", help="The feeds.yaml to use.", envvar=CONFIG_ENV, readable=False),
    ] = Path(DEFAULT_CONFIG_NAME),
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log every step.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")
    ] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    ctx.obj = _Context(config.absolute(), verbose)


@contextmanager
def _progress_callbacks(show: bool) -> Iterator[dict[str, Any]]:
    """``on_start``/``on_outcome`` callbacks that drive a progress bar on a terminal, else none."""
    if not show:
        yield {}
        return
    # Only on a terminal: a poll from cron or a script does not import it (0.7 MB).
    from rich.progress import (  # noqa: PLC0415
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )

    with Progress(
        # Not markup: the description holds a feed's URL ("[red]" is a valid path).
        TextColumn("{task.description}", style="progress.description", markup=False),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    ) as progress:
        task = progress.add_task("polling", total=None)

        def started(total: int) -> None:
            progress.update(task, total=total)

        def advanced(outcome: PollOutcome) -> None:
            progress.update(
                task, advance=1, description=shown(f"polling {without_password(outcome.url)[-40:]}")
            )

        yield {"on_start": started, "on_outcome": advanced}


def _report(summary: PollSummary, loaded: LoadedConfig) -> int:
    for outcome in summary.outcomes:
        if outcome.notice:
            echo(f"notice: {outcome.notice}", err=True)
        if outcome.error:
            echo(f"{loaded.where(outcome.url)}: {without_password(outcome.url)}: {outcome.error}", err=True)
    seconds = (summary.finished - summary.started).total_seconds()
    # Entries and feeds are counted apart: "6 updated, 5 not modified" of 10 feeds read as
    # feeds both, when the first counts entries.
    polled = len(summary.outcomes)
    same = summary.count(FeedStatus.NOT_MODIFIED)
    echo(
        f"{polled} {'feed' if polled == 1 else 'feeds'} polled in {seconds:.1f}s: "
        f"{summary.new_entries} new and {summary.updated_entries} updated entries; "
        f"{same} {'feed' if same == 1 else 'feeds'} not modified, {summary.failed} failed",
        err=True,
    )
    return EXIT_FEEDS_FAILED if summary.failed else EXIT_OK


@app.command()
def poll(
    ctx: typer.Context,
    due: Annotated[bool, typer.Option("--due", help="Only the feeds whose next check has come.")] = False,
    summary_json: Annotated[
        bool, typer.Option("--json", help="End with one JSON line of counts (for scripts and benchmarks).")
    ] = False,
) -> None:
    """Fetch every enabled feed and store new and changed entries. Exit 1 if some feeds failed."""
    loaded = ctx.obj.load()
    with _open_store(loaded) as store:
        # Taken before the clock is read: see runlock.ingest_lock.
        with (
            _progress_callbacks(sys.stderr.isatty()) as callbacks,
            ingest_lock(loaded.database_url, exclusive=False),
        ):
            summary = eventloop.run(pipeline.poll_feeds(loaded, store, _now(), only_due=due, **callbacks))
        code = _report(summary, loaded)
        if summary_json:
            totals = store.entry_counts()
            print(
                json.dumps(
                    {
                        "feeds": len(summary.outcomes),
                        "new": summary.new_entries,
                        "updated": summary.updated_entries,
                        "not_modified": summary.count(FeedStatus.NOT_MODIFIED),
                        "failed": summary.failed,
                        "entries_total": sum(totals.values()),
                    }
                )
            )
    raise typer.Exit(code)


@app.command()
def run(
    ctx: typer.Context,
    once: Annotated[bool, typer.Option("--once", help="Run one full cycle and exit.")] = False,
    log_format: Annotated[
        LogFormat, typer.Option("--log-format", help="text, or json (one object a line) for log collectors.")
    ] = LogFormat.TEXT,
) -> None:
    """Run one full cycle with --once, else run until stopped, as scheduler.py does.

    Exit 3 when another scheduler already runs on the same database.  SIGTERM or Ctrl-C
    stops --once cleanly: it finishes the message being sent (or stores what was fetched),
    says what is left for the next run and exits 1; a second signal stops it at once.
    """
    # Imported here: the scheduler (APScheduler, the newsletters and mail stack) is this
    # command's and status's alone; `aggregator poll` from cron should not load it.
    from aggregator import service  # noqa: PLC0415 -- APScheduler, MJML, mail: run/status only

    if not once:
        # run_forever loads and watches the config itself (and keeps the last good one).
        raise typer.Exit(service.run_forever(ctx.obj.config_path, log_format.value, verbose=ctx.obj.verbose))
    raise typer.Exit(_run_once(ctx.obj.load()))


@dataclass(slots=True)
class _Once:
    """What ``run --once`` did, stage by stage, for its report."""

    started: datetime | None = None  # the cycle's clock reading
    due: int | None = None  # feeds due, once the poll has counted them
    polled: list[PollOutcome] = field(default_factory=list)  # each as it was stored
    report: pipeline.CycleReport | None = None  # None: the cycle was stopped (or never began)
    issues: list[newsletters.IssueOutcome] = field(default_factory=list)
    pruned: PruneReport | None = None
    prune_failed: str = ""
    stopped_before: str = ""  # the stage a stop (SIGTERM, Ctrl-C) left for the next run

    def stops(self, stop: service.StopRequest, before: str) -> bool:
        """Whether a stop was asked for before the stage ``before``; it is then left for the next run."""
        if stop.requested:
            self.stopped_before = before
        return stop.requested

    def recording(self, callbacks: dict[str, Any]) -> dict[str, Any]:
        """``callbacks`` (the progress bar's) that also count the feeds due and keep each outcome."""
        shown_start, shown_outcome = callbacks.get("on_start"), callbacks.get("on_outcome")

        def started(total: int) -> None:
            self.due = total
            if shown_start is not None:
                shown_start(total)

        def stored(outcome: PollOutcome) -> None:
            self.polled.append(outcome)
            if shown_outcome is not None:
                shown_outcome(outcome)

        return {"on_start": started, "on_outcome": stored}


def _run_once(loaded: LoadedConfig) -> int:
    """``run --once``: one cycle, the digests due, retention; what it did on stderr; the exit code.

    A stop (SIGTERM, Ctrl-C: ``service.StopRequest``) is taken between stages: the poll is
    cancelled (what was fetched is stored), a digest ends after the message in progress,
    and the stages after are left for the next run, which the last line says.
    """
    from aggregator import newsletters, service  # noqa: PLC0415 -- see run()
    from aggregator.runlock import SchedulerAlreadyRunning, run_lock  # noqa: PLC0415 -- with service

    once = _Once()
    try:
        # The scheduler's lock: a cycle from cron that overlaps the previous one, or a
        # running `aggregator run`, would poll and send at the same time as it.
        with (
            service.StopRequest() as stop,
            run_lock(loaded.database_url),
            _open_store(loaded) as store,
            _progress_callbacks(sys.stderr.isatty()) as callbacks,
        ):
            with ingest_lock(loaded.database_url, exclusive=False):  # before the clock: see runlock
                once.started = now = _now()
                cycle = pipeline.run_cycle(loaded, store, now, only_due=True, **once.recording(callbacks))
                once.report = eventloop.run(stop.cancelling(cycle))  # None: stopped
            if once.report is None:
                once.stopped_before = "polling"
            elif loaded.config.newsletters and not once.stops(stop, "newsletters"):
                # Stopped meanwhile, it finishes the message in progress and starts no other.
                with service.StoppableTransport(
                    newsletters.default_transport(loaded), stop.event
                ) as transport:
                    once.issues = newsletters.run_due_newsletters(loaded, store, now, transport=transport)
                if any(issue.interrupted for issue in once.issues):
                    once.stopped_before = "readers"
            retention_on = loaded.config.retention.max_age is not None
            if not once.stopped_before and not (retention_on and once.stops(stop, "retention")):
                _prune_once(loaded, store, once)
    except SchedulerAlreadyRunning as exc:
        echo(f"error: {exc}", err=True)
        raise typer.Exit(service.EXIT_ALREADY_RUNNING) from exc
    except OutputError as exc:  # a stage's files (publish, the digest archive); before OSError: it is one
        # Its message says what was kept already (the polled entries, the frozen issue).
        echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_FEEDS_FAILED) from exc
    except OSError as exc:  # a file error no stage named
        echo(f"error: {exc}; what was polled is stored", err=True)
        raise typer.Exit(EXIT_FEEDS_FAILED) from exc
    except (AggregatorError, StoreError) as exc:  # e.g. an SMTP password that is not set
        echo(f"error: {exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc
    return _report_once(loaded, once, stop)


def _prune_once(loaded: LoadedConfig, store: Store, once: _Once) -> None:
    """Last: what the digests and the outputs needed is used.  Alone against polls of other
    processes, as `aggregator prune` (see pipeline.prune_entries).  Its failure is its own:
    what was polled and sent is still reported."""
    try:
        with ingest_lock(loaded.database_url, exclusive=True):
            once.pruned = pipeline.prune_and_republish(loaded, store, _now())
    except (AggregatorError, StoreError, OSError) as exc:
        once.prune_failed = f"error: retention: {exc}; nothing else is affected, the next run tries again"


def _report_once(loaded: LoadedConfig, once: _Once, stop: service.StopRequest) -> int:
    """Print what ``run --once`` did, stage by stage, on stderr; the exit code."""
    report = once.report
    if report is None:  # stopped while polling: what was stored, as `aggregator poll` says it
        started = once.started or _now()
        code = _report(PollSummary(tuple(once.polled), started=started, finished=_now()), loaded)
    else:
        code = _report(report.poll, loaded)
        echo(
            f"{report.duplicates} entries collapsed as copies, {report.stories} stories regrouped; "
            f"combined feeds in {loaded.base_dir / loaded.config.output.dir} "
            f"({len(report.published.changed)} of {len(report.published.files)} files changed)",
            err=True,
        )
    for issue in once.issues:
        if cli_digest.report(issue, err=True):
            code = EXIT_FEEDS_FAILED
    if once.prune_failed:
        echo(once.prune_failed, err=True)
        code = max(code, EXIT_FEEDS_FAILED)
    pruned = once.pruned
    if pruned is not None and pruned.entries:  # last, as it ran: after the digests
        echo(
            f"retention: {pruned.entries} old {'entry' if pruned.entries == 1 else 'entries'} removed"
            f" (stored before {_short_time(_iso(pruned.cutoff))} UTC); combined feeds written again",
            err=True,
        )
    if once.stopped_before:
        echo(_stopped_line(once, stop.signal.name if stop.signal else "a stop signal"), err=True)
        # Not 0: the cycle is not whole (cron, a wrapper script must not take it for done);
        # nor 128+N as if killed: the stop was taken and everything done is recorded.
        code = max(code, EXIT_FEEDS_FAILED)
    return code


def _stopped_line(once: _Once, signal_name: str) -> str:
    """The last line of a stopped ``run --once``: what was done and what the next run does."""
    stopped = f"stopped by {signal_name}"
    if once.stopped_before == "polling":
        if once.due is None:
            return f"{stopped} before polling: nothing was done; the next run does it all"
        left = once.due - len(once.polled)
        return (
            f"{stopped} while polling: {len(once.polled)} of {once.due} due feeds polled and stored,"
            f" {left} left for the next run, which also groups, publishes and sends what is due"
        )
    if once.stopped_before == "newsletters":
        return f"{stopped} before sending the newsletters: the next run sends what is due"
    if once.stopped_before == "retention":
        return f"{stopped} before removing old entries: the next run does it"
    return cli_digest.stopped_line(next(issue for issue in once.issues if issue.interrupted), signal_name)


@app.command()
def prune(
    ctx: typer.Context,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be removed, per feed; remove nothing.")
    ] = False,
) -> None:
    """Remove entries stored longer than retention.max_age, and stories left with none.

    Kept: what a newsletter's next issue may still take, and copy groups with a newer copy.
    A removed entry its feed still carries is not stored again. No database yet: creates none.
    """
    loaded = ctx.obj.load()
    if loaded.config.retention.max_age is None:
        echo(f"retention is off in {loaded.path.name} (retention.max_age: null): nothing removed")
        return
    with _open_store(loaded, read_only=True) as store:
        if store.url == _NOTHING_STORED:
            return  # a fresh install: _open_store said so, and there is nothing to remove
        if dry_run:  # only reads: no need to keep polls out
            report = pipeline.prune_entries(loaded, store, _now(), dry_run=True)
        else:
            with ingest_lock(loaded.database_url, exclusive=True):  # see pipeline.prune_entries
                try:
                    report = pipeline.prune_and_republish(loaded, store, _now())
                except OSError as exc:  # writing the combined feeds again: a full disk
                    echo(f"error: {exc}; the old entries are removed", err=True)
                    raise typer.Exit(EXIT_FEEDS_FAILED) from exc
        titles = store.feed_titles()
    if report is not None:
        _print_prune(report, loaded, titles)


def _print_prune(report: PruneReport, loaded: LoadedConfig, titles: dict[str, str]) -> None:
    why = (
        f"the start of newsletter {report.held_by}'s next issue"
        if report.held_by
        else f"retention.max_age: {_duration(loaded.config.retention.max_age)}"
    )
    cutoff = f"stored before {_short_time(_iso(report.cutoff))} UTC ({why})"
    if not report.entries:
        echo(f"nothing to remove: no entry {cutoff} that can go")
    else:
        verb = "would remove" if report.dry_run else "removed"
        echo(f"{verb} {report.entries} entries {cutoff}:")
        configured = {f.url: f.title for f in loaded.config.feeds if f.title}
        for url, count in report.removed:
            name = configured.get(url) or titles.get(url)
            shown_url = without_password(url)
            echo(f"  {f'{name} ({shown_url})' if name else shown_url}: {count} entries")
        stories = "would be removed" if report.dry_run else "removed"
        echo(f"{report.stories} stories left with no entry {stories}")
    if report.kept_copies:
        echo(f"{report.kept_copies} older entries kept: a copy of the same article is newer")
    if report.dry_run:
        echo("dry run: nothing was removed")


def _duration(value: timedelta | None) -> str:
    """A duration as feeds.yaml writes it (``180d``)."""
    if value is None:
        return "null"
    seconds = int(value.total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


@app.command()
def status(
    ctx: typer.Context,
    output: Annotated[OutputFormat, typer.Option("--format", help="table or json.")] = OutputFormat.TABLE,
) -> None:
    """Show each configured feed's health: last fetch, HTTP status, entries, errors, warnings, next check.

    No database yet: it creates none, says so on stderr, shows every feed as never polled, exits 0.
    """
    from aggregator import service  # noqa: PLC0415 -- APScheduler and newsletters: see run()

    loaded = ctx.obj.load()
    with _open_store(loaded, read_only=True) as store:
        states = pipeline.feed_states_for(loaded, store)
        counts = store.entry_counts()
        jobs = service.next_runs(loaded, store, _now()) if output is OutputFormat.TABLE else []
    configured = {f.url: f for f in loaded.config.feeds}
    moved = _moved(states)
    rows: list[dict[str, Any]] = [
        {
            "url": s.url,
            # As feeds.yaml says it now (the stored one comes with the next poll), else the feed's own.
            "title": configured[s.url].title or s.title,
            "status": s.status.value,
            "error": s.last_error if s.status in (FeedStatus.ERROR, FeedStatus.RETIRED) else None,
            "entries": counts.get(s.url, 0),
            "last_fetch": _iso(s.last_fetch),
            # A paused feed (`enabled: false`) has none, whatever was stored when it last ran.
            "next_check": _iso(s.next_check) if configured[s.url].enabled else None,
            "enabled": configured[s.url].enabled,
            "http_status": s.http_status,
            "error_count": s.error_count,
            "moved_to": without_password(moved[s.url]) if s.url in moved else None,
            # Accepted with problems (broken XML, a wrong charset): its entries may be
            # incomplete.  The poll logged it once; this says it until a body parses cleanly.
            "warning": s.last_warning,
        }
        for s in states
    ]
    if output is OutputFormat.JSON:
        print(json_text(rows, indent=2))
        return
    from rich.table import Table  # noqa: PLC0415 -- rich only where it draws (see cli_console)

    moves = {url: pipeline.moved_notice(loaded, url, address) for url, address in moved.items()}
    if out.width < NARROW_TERMINAL:
        # Seven columns cannot share so few: rich would fold every feed cell to nothing.
        for row in rows:
            name = row["title"] or without_password(row["url"])
            line = f"{name}: {_shown_status(row)}, {row['entries']} entries"
            for note in (*problem_lines(row), moves.get(row["url"])):
                line += f"\n  {note}" if note else ""
            out.print(cell(line))
        for job in jobs:  # what the table below says too: when each job runs next
            when = f"next run {_short_time_ahead(_iso(job.next_run))} UTC, " if job.next_run else ""
            out.print(cell(f"{job.job}: {when}{job.detail}"))
        return
    title = f"Feeds in {loaded.path.name}"
    out.print(_compact_status_table(title, rows) if out.width < WIDE_TERMINAL else _status_table(title, rows))
    for notice in moves.values():  # under the table, whole: a URL folded in a cell cannot be copied
        out.print(cell(notice))
    schedule = Table(title="Scheduler jobs")
    # The job's name whole (it was "newsletter-retri…"); the detail folds.
    schedule.add_column("job", no_wrap=True)
    schedule.add_column("next run (UTC)", no_wrap=True)
    schedule.add_column("detail")
    for job in jobs:
        schedule.add_row(job.job, _short_time_ahead(_iso(job.next_run)), cell(job.detail))
    out.print(schedule)


def _moved(states: Sequence[FeedState]) -> dict[str, str]:
    """Configured URL → the address it is polled at instead (a permanent redirect it
    adopted), for the feeds that moved.  The poll that adopts it says so once: a notice lost
    (the poll killed before it printed, cron's mail unread) would leave the out-of-date line
    of feeds.yaml unmentioned for good, so ``status`` says it too."""
    return {s.url: s.fetch_url for s in states if s.fetch_url is not None and s.fetch_url != s.url}


def _shown_status(row: dict[str, Any]) -> str:
    """A row's status as the table says it: a paused feed is that, whatever it last was."""
    status = str(row["status"]) if row["enabled"] else "paused"
    return f"{status}, moved" if row["moved_to"] else status


def _status_table(title: str, rows: list[dict[str, Any]]) -> Table:
    from rich.table import Table  # noqa: PLC0415 -- rich only where it draws (see cli_console)

    table = Table(title=title)
    for column in ("feed", "status", "last fetch", "HTTP", "entries", "errors", "next check"):
        table.add_column(column, overflow="fold", min_width=7 if column in ("feed", "status") else None)
    for row in rows:
        table.add_row(
            cell(row["title"] or without_password(row["url"])),
            cell("\n".join([_shown_status(row), *problem_lines(row)])),
            _short_time(row["last_fetch"]),
            str(row["http_status"] or ""),
            str(row["entries"]),
            str(row["error_count"] or ""),
            _short_time_ahead(row["next_check"]),
        )
    return table


def _compact_status_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """Four columns for a terminal of 60 to 99: seven folded words (``entri`` / ``es``) and
    feed titles into strips.  The counts join the status, an error and a warning the feed's
    title, and a time is written on two lines (date, then time)."""
    from rich.table import Table  # noqa: PLC0415 -- rich only where it draws (see cli_console)

    table = Table(title=title)
    table.add_column("feed", overflow="fold", ratio=1)
    for column in ("status", "last fetch", "next check"):
        table.add_column(column, no_wrap=True)
    for row in rows:
        health = [_shown_status(row), entries_phrase(row["entries"])]
        if row["http_status"]:
            health.append(f"HTTP {row['http_status']}")
        if row["error_count"]:
            health.append(f"{row['error_count']} {'error' if row['error_count'] == 1 else 'errors'}")
        table.add_row(
            cell("\n".join([row["title"] or without_password(row["url"]), *problem_lines(row)])),
            cell("\n".join(health)),
            _short_time(row["last_fetch"]).replace(" ", "\n"),
            _short_time_ahead(row["next_check"]).replace(" ", "\n"),
        )
    return table


def _short_time(iso: str | None) -> str:
    return iso[:16].replace("T", " ") if iso else "-"


def _short_time_ahead(iso: str | None) -> str:
    """A time to come, to the minute, rounded up: "next check 10:57" of 10:57:20 sent the
    user to run `poll --due` at 10:57, which found the feed not yet due."""
    if not iso:
        return "-"
    moment = datetime.fromisoformat(iso)
    if moment.second or moment.microsecond:
        moment = moment.replace(second=0, microsecond=0) + timedelta(minutes=1)
    return _short_time(moment.isoformat())


@app.command()
def export(
    ctx: typer.Context,
    output: Annotated[ExportFormat, typer.Option("--format", help="jsonl: one JSON object a line.")] = (
        ExportFormat.JSONL
    ),
) -> None:
    """Write every stored entry as JSON lines: id, guid, feed, url, title, published, story, topics…

    No database yet: it creates none, says so on stderr, writes nothing, exits 0.
    """
    loaded = ctx.obj.load()
    try:
        _export_jsonl(loaded)
    except BrokenPipeError as exc:  # before OSError: `aggregator export | head` is no error
        raise _reader_gone() from exc
    except OSError as exc:  # stdout is a full disk…
        with contextlib.suppress(OSError):
            echo(f"error: writing the export: {exc.strerror or exc}", err=True)
        raise typer.Exit(EXIT_USAGE) from exc


def _export_jsonl(loaded: LoadedConfig) -> None:
    with _open_store(loaded, read_only=True) as store:
        for stored in store.iter_entries(bodies=False):
            entry = stored.entry
            record = {
                "id": stored.id,
                "guid": entry.guid,
                "feed": stored.feed_url,
                "url": entry.url,
                "canonical_url": entry.canonical_url,
                "title": entry.title,
                "authors": list(entry.authors),
                "published": _iso(entry.date),
                "updated": _iso(entry.updated),
                "first_seen": _iso(stored.first_seen),
                "duplicate_of": stored.duplicate_of,
                "story": stored.story,
                "topics": list(stored.topics),
            }
            sys.stdout.write(json_text(record) + "\n")


@app.command()
def explain(
    ctx: typer.Context,
    entry_id: Annotated[str, typer.Argument(help="An entry id, as `aggregator export` prints it.")],
) -> None:
    """Say why an entry is or is not a copy of another (which stage, which score, of which entry).

    Exit 2 for an id that is not stored (with no database yet none is; none is created, and
    it says to poll first).
    """
    from aggregator.dedupe import MatchStage, Verdict  # noqa: PLC0415 -- NumPy, for this command only

    loaded = ctx.obj.load()
    with _open_store(loaded, read_only=True, nothing_to=f"explain {entry_id!r}") as store:
        stored = store.get_entry(entry_id)
        if stored is None:
            echo(f"no entry with id {entry_id!r}: the ids are in `aggregator export`", err=True)
            raise typer.Exit(EXIT_USAGE)
        evidence = store.duplicate_evidence(entry_id)
        kept_id = stored.duplicate_of or stored.id
        kept = store.get_entry(kept_id) if stored.duplicate_of else stored
        group = [kept] if kept is not None else []
        group += store.alternates_of(kept_id)
        story = next(store.iter_stories([stored.story]), None) if stored.story else None
    titles = {f.url: f.title for f in loaded.config.feeds if f.title}

    def line(entry: StoredEntry) -> str:
        return f"{entry.id}  {entry.entry.title!r}  ({titles.get(entry.feed_url, entry.feed_url)})"

    echo(line(stored))
    if evidence is not None and evidence.duplicate_of is not None and evidence.stage is not None:
        verdict = Verdict(
            entry_id,
            evidence.duplicate_of,
            MatchStage(evidence.stage),
            evidence.score or 0.0,
            evidence.matched or evidence.duplicate_of,
            evidence.jaccard,
            evidence.containment,
        )
        echo(f"  a copy: {verdict.describe()}")
    else:
        echo("  kept: not a copy of another entry")
    if len(group) > 1:
        echo("  the copies of this article (the first is the one kept):")
        for entry in group:
            echo(f"    {line(entry)}")
    if story is not None:
        topics = f"; topics: {', '.join(story.topics)}" if story.topics else ""
        echo(f"  story {story.id}: {story.label!r}{topics}")
    if stored.duplicate_of:
        echo(
            "  to keep these two apart, add to feeds.yaml:\n"
            f"    dedupe:\n      pin_apart:\n        - [{stored.id}, {stored.duplicate_of}]"
        )
    else:
        echo(
            "  to make another entry a copy of this one, add to feeds.yaml:\n"
            f"    dedupe:\n      pin_together:\n        - [{stored.id}, OTHER_ENTRY_ID]"
        )


@config_app.command("check")
def config_check(ctx: typer.Context) -> None:
    """Validate feeds.yaml and print every problem with its line number. Exit 2 if there are any.

    Warnings (an interval polling will not keep, say) are printed on their lines too, and pass.
    """
    path: Path = ctx.obj.config_path
    problems = check_config(path)
    for problem in problems:
        echo(str(problem), err=True)
    if problems:
        echo(f"{len(problems)} problem(s) in {path}", err=True)
        raise typer.Exit(EXIT_USAGE)
    warnings = config_warnings(load_config(path))
    for warning in warnings:
        echo(warning_text(warning), err=True)
    echo(f"{path}: ok" + (f", {len(warnings)} warning(s)" if warnings else ""))


def main() -> None:
    _utf8_output()
    app()


def _utf8_output() -> None:
    """Output that a locale which is not UTF-8 cannot end in a traceback.

    Titles and errors carry any text a feed chose, which an ASCII or Latin-1 locale
    (``LC_ALL=C`` without C.UTF-8, ``PYTHONCOERCECLOCALE=0``) cannot encode.  Into a pipe or
    a file: UTF-8, as Python itself does in the C locale (PEP 538, 540) when it can, and as
    JSON, JSON lines and OPML are by their specifications.  On a terminal, which shows its
    locale's encoding, the characters it cannot show become escapes rather than mojibake.
    ``PYTHONIOENCODING``, when set, is the user's choice and kept."""
    if os.environ.get("PYTHONIOENCODING"):
        return
    for stream in (sys.stdout, sys.stderr):
        if not isinstance(stream, io.TextIOWrapper) or codecs.lookup(stream.encoding).name == "utf-8":
            continue
        try:
            on_terminal = stream.isatty()
        except ValueError:  # closed
            continue
        if on_terminal:
            stream.reconfigure(errors="backslashreplace")
        else:
            stream.reconfigure(encoding="utf-8", errors=stream.errors)
