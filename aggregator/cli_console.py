"""How the commands print: lines of text word for word, and rich only where it draws.

- ``echo``: one line of text as it is, with control characters shown as escapes.  Messages
  carry text that feeds and servers chose (URLs, titles, error details): rich's markup and
  emoji codes would change it, and control characters would drive the terminal.
- ``cell``: the same text as a cell of a rich table.
- ``json_text``: JSON for stdout, which any output encoding can write.
- ``lazy_console``: a rich ``Console`` made (and rich imported) when first used, for tables
  and the progress bar.  ``aggregator poll`` into a pipe (cron, scripts, the benchmark) then
  never imports rich: about 15 ms of its start-up and 2.6 MB of its memory.
"""

from __future__ import annotations

import codecs
import contextlib
import errno
import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from aggregator.store import NoDatabaseYet

__all__ = [
    "NARROW_TERMINAL",
    "RUN_POLL_FIRST",
    "WIDE_TERMINAL",
    "cell",
    "echo",
    "json_text",
    "lazy_console",
    "no_database_yet",
    "shown",
]


NARROW_TERMINAL = 60  # columns: narrower, `status` and `feeds list` print a line per feed, not a table
# Columns a table of seven needs before its widest cell (a feed's URL) gets room; narrower,
# they print fewer columns, the others' content folded into them.
WIDE_TERMINAL = 100


class _LazyConsole:
    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._console: Console | None = None

    def _made(self) -> Console:
        if self._console is None:
            from rich.console import Console  # noqa: PLC0415 -- the point of this module

            class _Console(Console):
                def on_broken_pipe(self) -> None:
                    # rich would exit 1, which says "some feeds failed": the reader of
                    # `aggregator status | head -1` only had enough, and the command says so.
                    self.quiet = True
                    raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

            self._console = _Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        # Only reached for what the object itself lacks: every Console attribute.
        return getattr(self._made(), name)

    # `with console:` looks these up on the class, never through __getattr__, and rich's
    # progress bar does it on every refresh (and in the stderr it redirects while drawn).
    def __enter__(self) -> Console:
        return self._made().__enter__()

    def __exit__(self, *exc_info: Any) -> None:
        self._made().__exit__(*exc_info)


def lazy_console(**options: Any) -> Console:
    """A ``rich.console.Console(**options)`` that is made (and rich imported) on first use."""
    return cast("Console", _LazyConsole(options))


# Control characters other than newline and tab, shown as escapes: messages carry text that
# servers and feeds chose (URLs, error details), and a terminal obeys what it is sent (ESC
# sequences recolour, move or clear it; a carriage return hides what came before).
_CONTROL_ESCAPES = {
    code: f"\\x{code:02x}" for code in (*range(0x20), 0x7F, *range(0x80, 0xA0)) if chr(code) not in "\n\t"
}


def shown(text: str) -> str:
    """``text`` with its control characters as escapes (see ``_CONTROL_ESCAPES``)."""
    return text.translate(_CONTROL_ESCAPES)


def cell(text: str) -> Text:
    """A table cell holding ``text`` word for word: a feed's title is not rich markup (it
    could style the table, or show a link that goes somewhere else), nor emoji codes."""
    from rich.text import Text  # noqa: PLC0415 -- only where a table is drawn, rich already is

    return Text(shown(text))


def json_text(value: object, *, indent: int | None = None) -> str:
    """``value`` as JSON for stdout: its characters as they are where stdout writes UTF-8,
    else as ``\\u`` escapes, which every JSON reader decodes to the same text and any
    encoding can write (with ``PYTHONIOENCODING=latin-1`` an export ended in a traceback at
    the first title with a curly quote)."""
    encoding = getattr(sys.stdout, "encoding", None) or "utf-8"
    try:
        utf8 = codecs.lookup(encoding).name == "utf-8"
    except LookupError:
        utf8 = False
    return json.dumps(value, indent=indent, ensure_ascii=not utf8)


def echo(text: str, *, err: bool = False) -> None:
    """One line of plain text, word for word: no markup, no highlighting, no emoji codes
    (rich would turn ``:smile:`` in a feed's URL or error message into a picture), and
    control characters shown as escapes (``\\x1b``) rather than obeyed by the terminal."""
    typer.echo(shown(text), err=err)


RUN_POLL_FIRST = "run `aggregator poll` or `aggregator run --once` first"


def entries_phrase(count: int) -> str:
    """``1 entry``, ``3 entries``: a count of stored entries as the tables say it."""
    return f"{count} entry" if count == 1 else f"{count} entries"


def problem_lines(row: dict[str, Any]) -> list[str]:
    """What `status` and `feeds list` show under a feed's status: its error first (what to
    fix now), then the parser's warning, marked as one (the feed is read, perhaps not whole)."""
    lines = [row["error"]] if row["error"] else []
    if row["warning"]:
        lines.append(f"warning: {row['warning']}")
    return lines


def no_database_yet(exc: NoDatabaseYet) -> str:
    """``no database yet at data/aggregator.sqlite``: a file under the working folder by its
    relative path, as a person would type it (what the commands that only read say)."""
    where, here = exc.where, Path.cwd()
    if here != Path(here.anchor):  # from /, the absolute path reads better
        with contextlib.suppress(ValueError):  # elsewhere, or a URL: as it is
            where = str(Path(where).relative_to(here))
    return f"no database yet at {where}"
