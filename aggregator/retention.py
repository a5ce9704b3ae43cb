"""Retention: which stored entries are old enough to remove (pure; the pipeline does the I/O).

In: the time now, ``retention.max_age``, where each configured newsletter's next issue
starts, the ids of the entries stored and unchanged since before the cutoff, and every
entry's kept copy (``duplicate_of``).  Out: the cutoff, and the copy groups that may go,
in chunks that each fit one transaction.

The rule, as ``aggregator prune`` applies it:

- an entry is old when both its ``first_seen`` and its ``last_updated`` (the last change
  stored) come before ``now - max_age``;
- the cutoff is never later than the start of any newsletter's next issue (the end of its
  latest issue, or ``first_issue_lookback`` before now when it has none): a monthly digest
  never loses the articles of its coming issue;
- a copy group (entries joined by ``duplicate_of``) goes whole or not at all: removing a
  kept copy alone would make the database's ``ON DELETE SET NULL`` turn its newer copies
  into originals, new stories in the outputs and the digests.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta

# Earlier than any stored time: where ``now - max_age`` would reach before year 1.
_BEFORE_ANY_TIME = datetime.min.replace(tzinfo=UTC)


def before(now: datetime, age: timedelta) -> datetime:
    """``now - age``, or the earliest time there is when that reaches before year 1."""
    try:
        return now - age
    except OverflowError:
        return _BEFORE_ANY_TIME


def retention_cutoff(
    now: datetime, max_age: timedelta, next_issues: Mapping[str, datetime]
) -> tuple[datetime, str | None]:
    """Entries stored before the returned time may go; and the newsletter that set it
    (None: ``max_age`` did).  ``next_issues``: newsletter name → where its next issue starts."""
    cutoff, held_by = before(now, max_age), None
    for name, start in sorted(next_issues.items()):
        if start < cutoff:
            cutoff, held_by = start, name
    return cutoff, held_by


def removable_groups(
    aged: Iterable[str], duplicate_of: Mapping[str, str | None]
) -> tuple[list[list[str]], int]:
    """The copy groups all of whose entries are ``aged`` (each a sorted list of ids, a lone
    entry a group of one), and how many aged entries stay because a copy of theirs is newer.

    Groups are the connected parts of the ``duplicate_of`` links, so a chain (a copy of a
    copy, should one exist) is one group too.  ``duplicate_of`` holds every stored entry.
    """
    old = set(aged)
    parent: dict[str, str] = {}

    def root(node: str) -> str:
        parent.setdefault(node, node)
        while parent[node] != node:
            parent[node] = parent[parent[node]]  # path halving: near-constant per look-up
            node = parent[node]
        return node

    for entry, original in duplicate_of.items():
        if original is not None:
            parent[root(entry)] = root(original)
    groups: dict[str, list[str]] = {}
    for entry in old:
        groups.setdefault(root(entry), []).append(entry)
    # Whole when every member is old: count the members each touched group has in all.
    sizes = dict.fromkeys(groups, 0)
    for entry in duplicate_of.keys() | old:
        top = root(entry)
        if top in sizes:
            sizes[top] += 1
    whole = [sorted(members) for top, members in groups.items() if len(members) == sizes[top]]
    kept = sum(len(members) for top, members in groups.items() if len(members) != sizes[top])
    whole.sort()
    return whole, kept


def in_chunks(groups: Sequence[list[str]], size: int) -> Iterator[list[str]]:
    """The ids of ``groups``, about ``size`` at a time, never splitting a group: each chunk
    is one transaction, so an interrupted prune leaves no group half removed."""
    chunk: list[str] = []
    for group in groups:
        if chunk and len(chunk) + len(group) > size:
            yield chunk
            chunk = []
        chunk.extend(group)
    if chunk:
        yield chunk
