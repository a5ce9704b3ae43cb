"""``aggregator feeds …``: add, remove, change, list, import and export the feeds of feeds.yaml.

In:  the command line, and the config path the main ``aggregator`` callback put in
     ``ctx.obj.config_path`` (``--config``).
Out: feeds.yaml changed through ``configedit`` (comments and layout kept, validated, written
     atomically, refused if the file changed meanwhile), and messages or tables.

Exit codes as for the rest of the CLI: 0 done, 1 the feed could not be fetched or is not a
feed, or the file changed on disk while we worked (run the command again), 2 bad usage
(unknown feed, duplicate, a value the config does not accept, a URL or path ``config check``
would refuse, a bad OPML file, a page that advertises several feeds and no valid ``--pick``
to choose one, a missing or read-only feeds.yaml).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any, NoReturn

import click
import typer
from rich.table import Table

from aggregator import eventloop
from aggregator.cli_console import (
    NARROW_TERMINAL,
    WIDE_TERMINAL,
    cell,
    echo,
    entries_phrase,
    json_text,
    lazy_console,
    problem_lines,
)
from aggregator.config import (
    DEFAULT_CONFIG_NAME,
    LoadedConfig,
    check_feed_url,
    check_interval,
    check_text,
    config_warnings,
    load_config,
    missing_feed_file,
    parse_duration,
    resolve_feed_location,
    warning_text,
)
from aggregator.configedit import (
    ConfigDocument,
    ConflictError,
    EditError,
    InvalidEditError,
    UnreadableError,
    parse_assignment,
)
from aggregator.discovery import DiscoveryError, FeedChoices, FoundFeed, find_feed
from aggregator.errors import ConfigError, ConfigProblem, StoreError
from aggregator.fetch import Fetcher, make_client
from aggregator.opml import OpmlError, import_subscriptions, parse_opml, render_opml
from aggregator.pipeline import fetch_settings
from aggregator.store import NoDatabaseYet, Store
from aggregator.types import FeedState, FeedStatus
from aggregator.urls import without_password

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

feeds_app = typer.Typer(
    help="Add, remove, change, list, import (OPML) and export the feeds in feeds.yaml.",
    no_args_is_help=True,
)

out = lazy_console(soft_wrap=True)  # tables; lines of text go out through echo, as they are


class ListFormat(StrEnum):
    TABLE = "table"
    JSON = "json"


def _now() -> datetime:
    return datetime.now(UTC)


def _config_path(ctx: typer.Context) -> Path:
    path = getattr(ctx.obj, "config_path", None)
    return path if isinstance(path, Path) else Path(DEFAULT_CONFIG_NAME).absolute()


def _fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    echo(message, err=True)
    raise typer.Exit(code)


def _read(path: Path) -> tuple[ConfigDocument, LoadedConfig]:
    """The document to edit, and the config it holds now (which must be valid to edit it)."""
    try:
        document = ConfigDocument.read(path)
    except UnreadableError as exc:  # missing, a folder, no permission, not UTF-8: as load_config says it
        echo(str(exc.problem), err=True)
        _fail(f"1 problem(s) in {path}; nothing was done.")
    except EditError as exc:
        _refuse_unreadable(path, exc)
    try:
        return document, document.validate()
    except InvalidEditError as exc:
        cause = exc.__cause__
        _fail_with_problems(path, cause.problems if isinstance(cause, ConfigError) else exc.problems)


def _refuse_unreadable(path: Path, exc: EditError) -> NoReturn:
    """The editor could not read the YAML: say why as ``config check`` does (its line and
    hint), not in the editor's words; only what the aggregator reads and the editor cannot
    (a tab inside a value, which it cannot turn into a space) is said in the editor's."""
    try:
        load_config(path)
    except ConfigError as problems:
        _fail_with_problems(path, problems.problems)
    _fail(str(exc))


def _fail_with_problems(path: Path, problems: Sequence[ConfigProblem]) -> NoReturn:
    for problem in problems:
        echo(str(problem), err=True)
    _fail(f"{len(problems)} problem(s) in {path}; fix them first (aggregator config check)")


def _save(document: ConfigDocument) -> None:
    try:
        document.save()
    except ConflictError as exc:
        _fail(str(exc), EXIT_FAILED)
    except EditError as exc:
        _fail(str(exc))
    for note in document.notes:  # what was changed besides the edit (tabs made spaces)
        echo(note, err=True)


class PickError(Exception):
    """The page advertises several feeds and none was (validly) chosen: a usage error, not a
    feed that failed; the message lists the choices."""


def _chooser(pick: int | None) -> Any:
    def choose(choices: FeedChoices) -> str:
        listing = "\n".join(f"  {n}) {url}" for n, url in enumerate(choices.urls, 1))
        if pick is not None:
            if not 1 <= pick <= len(choices.urls):
                raise PickError(
                    f"--pick {pick}: {choices.page} advertises {len(choices.urls)} feeds:\n{listing}"
                )
            return choices.urls[pick - 1]
        if not sys.stdin.isatty():
            raise PickError(
                f"{choices.page} advertises {len(choices.urls)} feeds; choose one with --pick N:\n{listing}"
            )
        echo(f"{choices.page} advertises {len(choices.urls)} feeds:\n{listing}", err=True)
        number: int = typer.prompt("Which one", type=click.IntRange(1, len(choices.urls)), err=True)
        return choices.urls[number - 1]

    return choose


def _check_url(url: str, path: Path) -> None:
    """Refuse, before anything is fetched, a URL that ``config check`` would refuse in
    feeds.yaml, in its words: bad usage (2), not a feed that failed (1)."""
    try:
        check_feed_url(check_text(url))
    except ValueError as exc:
        _fail(f"{exc}; give a feed's http(s) URL, a file: URL or a path")
    _check_file(url, path)


def _check_file(url: str, path: Path) -> None:
    """Refuse a path (or file: URL) to no file, as ``config check`` would."""
    try:
        local = missing_feed_file(resolve_feed_location(url.strip(), path.parent))
    except ValueError:  # no URL at all: the validation of the edit says so
        return
    if local is not None:
        _fail(
            f"no such file: {local}; fix the path (a relative one is taken from the folder {path.name} is in)"
        )


async def _discover(loaded: LoadedConfig, url: str, pick: int | None) -> FoundFeed:
    settings = fetch_settings(loaded.config.polling)
    async with make_client(settings) as client:
        fetcher = Fetcher(client, settings)
        location = resolve_feed_location(url, loaded.base_dir)
        return await find_feed(fetcher, url, location, _now(), _chooser(pick))


@feeds_app.command("add")
def add_feed(
    ctx: typer.Context,
    url: Annotated[str, typer.Argument(help="A feed URL, or a web page that advertises its feeds.")],
    *,
    title: Annotated[str | None, typer.Option(help="Title to show (default: the feed's own).")] = None,
    topic: Annotated[
        list[str] | None, typer.Option("--topic", help="A topic for the feed (repeat for several).")
    ] = None,
    interval: Annotated[str | None, typer.Option(help="How often to poll it, e.g. 30m or 2h.")] = None,
    pick: Annotated[
        int | None, typer.Option(help="Which of the feeds a page advertises to add (1, 2, …).", min=1)
    ] = None,
) -> None:
    """Fetch URL once to prove it is a feed (or find the feeds a page advertises), then add it."""
    url = url.strip()  # as feeds.yaml keeps it: pasted with a space, it is the same feed
    path = _config_path(ctx)
    document, loaded = _read(path)
    if interval is not None:
        try:
            check_interval(parse_duration(interval))
        except ValueError as exc:
            _fail(f"--interval: {exc}")
    try:
        existing = document.duplicate_of(url)
    except EditError as exc:
        _fail(str(exc))
    if existing is not None:
        _fail(f"{path.name}: already subscribed: {existing}")
    _check_url(url, path)
    # Checked again when the edit is validated, but by then the feed has been fetched.
    for option, value in (("--title", title), *(("--topic", name) for name in topic or ())):
        try:
            check_text(value or "")
        except ValueError as exc:
            _fail(f"{option}: {exc}")
    try:
        found = eventloop.run(_discover(loaded, url, pick))
    except PickError as exc:
        _fail(str(exc), EXIT_USAGE)
    except DiscoveryError as exc:
        _fail(str(exc), EXIT_FAILED)
    try:
        index = document.add_feed(
            found.url, title=title or found.title or None, topics=topic or (), interval=interval
        )
    except EditError as exc:
        _fail(str(exc))
    _save(document)
    if found.page:
        echo(f"{found.page} advertises {found.url}", err=True)
    if found.moved_from:
        echo(f"{found.moved_from} moved permanently to {found.url}", err=True)
    echo(  # the title written to feeds.yaml: --title's, else the feed's own
        f"{path.name}:{document.line_of_feed(index)}: added {found.url} "
        f"({title or found.title or 'untitled'}, {found.format}, "
        f"{found.entries} {'entry' if found.entries == 1 else 'entries'})"
    )
    _warn_about(document, index)


@feeds_app.command("remove")
def remove_feed(
    ctx: typer.Context,
    feed: Annotated[str, typer.Argument(metavar="URL|TITLE", help="The feed's URL or its title.")],
) -> None:
    """Remove a feed (and the comment directly above it) from feeds.yaml; its stored entries stay.
    Refused while a newsletter lists it under 'feeds:'."""
    path = _config_path(ctx)
    document, _ = _read(path)
    try:
        url = document.remove_feed(feed)
    except EditError as exc:
        _fail(str(exc))
    _save(document)
    echo(
        f"{path.name}: removed {url}; its entries stay in the database, "
        "out of the outputs and digests until the feed is added back"
    )


@feeds_app.command("set")
def set_feed(
    ctx: typer.Context,
    feed: Annotated[str, typer.Argument(metavar="URL|TITLE", help="The feed's URL or its title.")],
    assignments: Annotated[
        list[str],
        typer.Argument(
            metavar="KEY=VALUE...",
            help="interval=30m, title=…, topics=a,b, priority=1, enabled=false; KEY= removes the key.",
        ),
    ],
) -> None:
    """Change a feed's interval, title, topics, priority or enabled flag (or its url: the
    newsletters that list it under 'feeds:' are updated too)."""
    path = _config_path(ctx)
    document, _ = _read(path)
    try:
        changes = dict(parse_assignment(text) for text in assignments)
        index = document.set_feed(feed, changes)
    except EditError as exc:
        _fail(str(exc))
    if changes.get("url"):  # as `feeds add` checks it: "gopher://…" is no path to a missing file
        _check_url(str(changes["url"]), path)
    _save(document)
    shown = ", ".join(assignments)
    echo(f"{path.name}:{document.line_of_feed(index)}: {shown}")
    for reference in document.updated_references:  # a new URL: the newsletters naming it follow
        echo(f"also updated in {reference}")
    _warn_about(document, index)


def _warn_about(document: ConfigDocument, index: int) -> None:
    """What ``config check`` would warn about the feed just written (an interval that
    polling raises to min_interval, say): said now, not found out later."""
    mine = f"feeds[{index}]."
    for warning in config_warnings(document.validate()):
        if warning.location.startswith(mine):
            echo(warning_text(warning), err=True)


def _health(loaded: LoadedConfig) -> tuple[dict[str, FeedState], dict[str, int]]:
    """What the store knows about the configured feeds; nothing if there is no database yet."""
    try:
        # Listing feeds must not create a database (nor, on PostgreSQL, its tables).
        with Store.open(loaded.database_url, create=False) as store:
            states = store.feed_states([f.url for f in loaded.config.feeds])
            counts = store.entry_counts()
    except NoDatabaseYet:
        return {}, {}  # every feed never polled, as the table then says
    except StoreError as exc:
        echo(f"warning: no health shown: {exc}", err=True)
        return {}, {}
    return {s.url: s for s in states}, counts


@feeds_app.command("list")
def list_feeds(
    ctx: typer.Context,
    output: Annotated[ListFormat, typer.Option("--format", help="table or json.")] = ListFormat.TABLE,
) -> None:
    """List the configured feeds with their health from the store (status, entries, last fetch)."""
    _, loaded = _read(_config_path(ctx))
    states, counts = _health(loaded)
    rows: list[dict[str, Any]] = []
    for feed in loaded.config.feeds:
        state = states.get(feed.url) or FeedState(feed.url)
        failing = state.status in (FeedStatus.ERROR, FeedStatus.RETIRED)
        rows.append(
            {
                "url": feed.url,
                "title": feed.title,
                # What the digests and the output feed call it: configured, else the feed's own.
                "known_title": feed.title or state.title,
                "topics": list(feed.topics),
                "interval": int(feed.interval.total_seconds()) if feed.interval else None,
                "priority": feed.priority,
                "enabled": feed.enabled,
                "status": state.status.value,
                "error": state.last_error if failing else None,
                # Read despite problems (broken XML, a wrong charset): as `status` says it.
                "warning": state.last_warning,
                "entries": counts.get(feed.url, 0),
                "last_fetch": state.last_fetch.isoformat() if state.last_fetch else None,
                "line": loaded.feed_lines.get(feed.url),
            }
        )
    if output is ListFormat.JSON:
        print(json_text(rows, indent=2))
        return
    title = f"{len(rows)} {'feed' if len(rows) == 1 else 'feeds'} in {loaded.path.name}"
    if out.width < NARROW_TERMINAL:
        # Seven columns cannot share so few: every cell folds to two characters.  A line per
        # feed, as `status` prints, and below it whatever else the table would have shown.
        out.print(cell(title))
        for row in rows:
            out.print(cell(_narrow_row(row, loaded.path.name)))
    elif out.width < WIDE_TERMINAL:
        out.print(_compact_table(title, rows))
    else:
        out.print(_full_table(title, rows))


def _full_table(title: str, rows: list[dict[str, Any]]) -> Table:
    table = Table(title=title)
    for column in ("line", "feed", "topics", "every", "status", "entries", "last fetch"):
        table.add_column(column, overflow="fold")
    for row in rows:
        interval = row["interval"]
        table.add_row(
            str(row["line"] or ""),
            cell((f"{row['known_title']}\n" if row["known_title"] else "") + without_password(row["url"])),
            cell(", ".join(row["topics"])),
            _duration_text(interval) if interval else "default",
            cell("\n".join([_shown_status(row), *problem_lines(row)])),
            str(row["entries"]),
            row["last_fetch"][:16].replace("T", " ") if row["last_fetch"] else "-",
        )
    return table


def _compact_table(title: str, rows: list[dict[str, Any]]) -> Table:
    """Four columns for a terminal of 60 to 99: seven folded every word (``entri`` / ``es``,
    ``Guardi`` / ``an``) and a URL into a strip of a few characters.  What the feed is (title,
    URL, topics, interval, error) goes into one wide cell, its health into two narrow ones."""
    table = Table(title=title)
    table.add_column("line", no_wrap=True)
    table.add_column("feed", overflow="fold", ratio=1)
    table.add_column("status", no_wrap=True)
    table.add_column("last fetch", no_wrap=True)
    for row in rows:
        interval = row["interval"]
        about = [row["known_title"] or "", without_password(row["url"])]
        about.append(f"topics: {', '.join(row['topics'])}" if row["topics"] else "")
        about.append(f"every {_duration_text(interval)}" if interval else "every default")
        about.extend(problem_lines(row))
        fetched = row["last_fetch"][:16].split("T") if row["last_fetch"] else ["-"]
        table.add_row(
            str(row["line"] or ""),
            cell("\n".join(part for part in about if part)),
            cell(f"{_shown_status(row)}\n{entries_phrase(row['entries'])}"),
            "\n".join(fetched),
        )
    return table


def _shown_status(row: dict[str, Any]) -> str:
    return "disabled" if not row["enabled"] else str(row["status"])


def _narrow_row(row: dict[str, Any], file_name: str) -> str:
    where = f"{file_name}:{row['line']}" if row["line"] else file_name
    interval = row["interval"]
    line = (
        f"{where}: {row['known_title'] or without_password(row['url'])}: "
        f"{_shown_status(row)}, {entries_phrase(row['entries'])}, "
        f"every {_duration_text(interval) if interval else 'default'}"
    )
    if row["last_fetch"]:
        line += f", last fetch {row['last_fetch'][:16].replace('T', ' ')}"
    if row["known_title"]:
        line += f"\n  {without_password(row['url'])}"
    if row["topics"]:
        line += f"\n  topics: {', '.join(row['topics'])}"
    for problem in problem_lines(row):
        line += f"\n  {problem}"
    return line


def _duration_text(seconds: int) -> str:
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


@feeds_app.command("import")
def import_opml(
    ctx: typer.Context,
    file: Annotated[Path, typer.Argument(metavar="FILE.opml", help="An OPML export from a feed reader.")],
) -> None:
    """Add the feeds of an OPML file (folders become topics); feeds already present are left alone."""
    path = _config_path(ctx)
    try:
        data = file.read_bytes()
    except OSError as exc:
        _fail(f"cannot import {file}: {exc.strerror or exc}")
    try:
        opml = parse_opml(data, str(file))
    except OpmlError as exc:
        _fail(f"{exc}; nothing was imported")
    document, _ = _read(path)
    try:
        report = import_subscriptions(document, opml.subscriptions)
    except EditError as exc:
        _fail(f"{exc}; nothing was imported")
    if report.added:
        _save(document)
    for reason in opml.skipped:
        echo(f"skipped: {reason}", err=True)
    echo(
        f"{path.name}: {len(report.added)} feeds added, {len(report.present)} already present, "
        f"{len(opml.skipped)} skipped"
    )


@feeds_app.command("export")
def export_feeds(
    ctx: typer.Context,
    opml: Annotated[
        bool, typer.Option("--opml", help="OPML 2.0 (for feed readers) instead of JSON.")
    ] = False,
) -> None:
    """Print the feeds: JSON by default, OPML 2.0 with --opml (topics become folders)."""
    _, loaded = _read(_config_path(ctx))
    feeds = loaded.config.feeds
    if not opml:
        rows = [
            {
                "url": f.url,
                "title": f.title,
                "topics": list(f.topics),
                "interval": int(f.interval.total_seconds()) if f.interval else None,
                "priority": f.priority,
                "enabled": f.enabled,
            }
            for f in feeds
        ]
        print(json_text(rows, indent=2))
        return
    text, left_out = render_opml(feeds, title=f"Feeds of {loaded.path.name}", now=_now())
    sys.stdout.write(text)
    if left_out:
        echo(
            f"{len(left_out)} local feeds left out (OPML readers need http(s) URLs): {', '.join(left_out)}",
            err=True,
        )
