"""The commands' consoles: rich's ``Console``, imported and made only when first used.

``aggregator poll`` run from cron, a script or a benchmark prints a line or two of plain text
to a pipe (``echo``), and then never imports rich: about 20 ms of its start-up and 2.7 MB of
its memory.  Tables, progress bars and everything else go through the consoles as before.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, cast

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

__all__ = ["cell", "echo", "lazy_console", "shown"]


class _LazyConsole:
    def __init__(self, options: dict[str, Any]) -> None:
        self._options = options
        self._console: Console | None = None

    def __getattr__(self, name: str) -> Any:
        # Only reached for what the object itself lacks: every Console attribute.
        if self._console is None:
            from rich.console import Console  # noqa: PLC0415 -- the point of this module

            self._console = Console(**self._options)
        return getattr(self._console, name)


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


def echo(text: str, *, err: bool = False) -> None:
    """One line of plain text, word for word: no markup, no highlighting, no emoji codes
    (rich would turn ``:smile:`` in a feed's URL or error message into a picture), and
    control characters shown as escapes (``\\x1b``) rather than obeyed by the terminal."""
    typer.echo(shown(text), err=err)
