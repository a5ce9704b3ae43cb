"""One exception tree for the project.

::

    AggregatorError                 anything the project raises on purpose
    ├── ConfigError                 feeds.yaml is missing, unreadable or invalid (carries every problem)
    ├── ParseError                  bytes that are not a feed (carries the feeds an HTML page advertises)
    ├── StoreError                  the database cannot be opened or migrated
    │   └── DatabaseUnavailable     ... or written at all now (locked, full, unreachable)
    ├── DeliveryError               a message could not be delivered
    └── EmbeddingsUnavailable       stories.method is embeddings, but the extra is missing
                                    (defined in aggregator.embeddings, which imports torch lazily)

Messages read ``what failed: where: why`` so that a person knows what to do, and the
original exception is kept as ``__cause__`` (``raise ... from``).  A feed that fails to
fetch is *not* an exception: it is a ``FetchResult`` with an error.
"""

from __future__ import annotations

from dataclasses import dataclass


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
