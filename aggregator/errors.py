"""One exception tree for the project.

::

    AggregatorError                 anything the project raises on purpose
    ├── ConfigError                 feeds.yaml is missing, unreadable or invalid (carries every problem)
    ├── ParseError                  bytes that are not a feed (carries the feeds an HTML page advertises)
    ├── StoreError                  the database cannot be opened or migrated
    │   └── DatabaseUnavailable     ... or written at all now (locked, full, unreachable)
    ├── DeliveryError               a message could not be delivered
    ├── OutputError                 a stage's files could not be written (the combined feeds);
    │                               an OSError too, for callers that catch file errors
    └── EmbeddingsUnavailable       stories.method is embeddings, but the extra is missing
                                    (defined in aggregator.embeddings, which imports torch lazily)

Messages read ``what failed: where: why`` so that a person knows what to do, and the
original exception is kept as ``__cause__`` (``raise ... from``).  A feed that fails to
fetch is *not* an exception: it is a ``FetchResult`` with an error.  A stage that fails on
a file turns the bare ``OSError`` into an ``OutputError`` (``aggregator.pathfaults``) that
names the stage, the file, what is wrong with the path and what to do.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


class AggregatorError(Exception):
    """Base of every error the project raises on purpose."""


@dataclass(frozen=True, slots=True)
class ConfigProblem:
    """One problem in feeds.yaml, located by line and column (1-based; 0 when unknown)."""

    path: str  # the config file
    line: int
    column: int
    location: str  # e.g. "feeds[3].url"
    message: str
    hint: str | None = None

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}" if self.line else self.path
        if self.line and self.column:
            where += f":{self.column}"
        text = f"{where}: {self.location}: {self.message}" if self.location else f"{where}: {self.message}"
        return f"{text} ({self.hint})" if self.hint else text


class ConfigError(AggregatorError):
    """feeds.yaml cannot be used; ``problems`` lists every problem found, not just the first."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class ParseError(AggregatorError):
    """The bytes are not a feed.  ``advertised`` lists the feed URLs an HTML page links to."""

    def __init__(self, message: str, advertised: tuple[str, ...] = ()) -> None:
        self.advertised = advertised
        super().__init__(message)


class StoreError(AggregatorError):
    """The database cannot be opened, migrated or written."""


class DatabaseUnavailable(StoreError):
    """The database itself failed (locked past the busy timeout, full, the server gone), as
    opposed to refusing one feed's data: nothing else can be written either."""


class DeliveryError(AggregatorError):
    """A message could not be delivered."""


class OutputError(AggregatorError, OSError):
    """A stage could not write (or read, or remove) one of its files.

    Reads ``STAGE: cannot DOING PATH (REASON): KEPT; REMEDY (SETTING) and RETRY``, e.g.
    ``writing the output feeds: cannot write /srv/public/feed.atom (/srv/public is a file,
    not a folder): the polled entries are stored (3 new, 0 updated); move public away
    (output.dir in feeds.yaml) and they are written at the next cycle``.  The stage that
    fails knows the file and what is wrong; its callers add what they kept, where the
    folder is configured and when it is tried again (``but``).  It is an ``OSError`` as
    well (``errno`` and ``filename`` those of the cause), so that the callers that caught
    the bare one (exit code 1, "the old entries are removed") still catch it.
    """

    def __init__(
        self,
        stage: str,
        path: Path,
        reason: str,
        remedy: str,
        *,
        doing: str = "write",
        kept: str = "",
        setting: str = "",
        retry: str = "",
        code: int | None = None,
    ) -> None:
        self.stage, self.path, self.reason, self.remedy = stage, path, reason, remedy
        self.doing, self.kept, self.setting, self.retry = doing, kept, setting, retry
        message = f"{stage}: cannot {doing} {path} ({reason})"
        message += f": {kept}" if kept else ""
        message += f"; {remedy}"
        message += f" ({setting})" if setting else ""
        message += f" and {retry}" if retry else ""
        super().__init__(message)
        self.errno, self.filename = code, str(path)

    def __str__(self) -> str:
        # OSError's own would be "[Errno 20] None: 'PATH'" once errno and filename are set.
        return str(self.args[0])

    def but(
        self, *, kept: str | None = None, setting: str | None = None, retry: str | None = None
    ) -> OutputError:
        """The same failure, told by a caller that knows more: what it kept, where the
        folder is configured, when it is tried again."""
        return OutputError(
            self.stage,
            self.path,
            self.reason,
            self.remedy,
            doing=self.doing,
            kept=self.kept if kept is None else kept,
            setting=self.setting if setting is None else setting,
            retry=self.retry if retry is None else retry,
            code=self.errno,
        )
