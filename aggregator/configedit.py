"""Edits of ``feeds.yaml`` that leave it as a person would: comments, order and layout kept.

In:  the path of feeds.yaml and an edit (add, remove or change a feed or a newsletter).
Out: the same file, changed only where the edit says, written atomically, or an
     ``EditError`` and an untouched file.

``ConfigDocument.read(path)`` loads the file with ruamel.yaml's round-trip loader, which
keeps comments, key order, quoting and flow/block style; the edit methods change that tree;
``save()`` then

1. dumps the tree once and validates that text with ``config.load_config_text``, so that an
   edit that would make the file invalid never reaches the disk (``InvalidEditError``); the
   text validated is the text written (a second dump of a tree ruamel has emitted may differ);
2. takes an advisory lock on the file (``flock``: two of our own writers never interleave);
3. refuses to write if the file on disk is not the one that was read (its SHA-256 differs:
   someone edited it by hand, or another tool saved in between) with ``ConflictError``, and
   refuses a file that is read-only for us or has other hard links (renaming a new file over
   it would ignore the one and break the other);
4. writes a temporary file in the same folder with the old file's mode, owner and group,
   fsyncs it, renames it over the file and fsyncs the folder: a crash leaves the old file or
   the new one, never half of one.

What ruamel does not keep is put back around its dump: an explicit document start (``---``)
with whatever precedes it (comments, ``%YAML``), an end marker (``...``) with whatever
follows it, a BOM, and CRLF line ends when most lines had them.  A tab the aggregator's
loader reads and the round-trip loader refuses (at the end of a line, before a comment, after
``key:``) is read as spaces, and written so, when that changes no value; one it cannot make
spaces (inside a plain value) is named by its line and column.

Comments need care because ruamel attaches a comment to the node *before* it: the comment
block above feed 3 is stored as the tail of feed 2.  The rule used here: a comment block
directly above an item (no blank line in between) belongs to that item and goes with it
when it is removed; anything separated by a blank line stays where it is.  An item appended
to a list takes over the trailing comment of the old last item (usually the comment that
introduces the next section), and is separated by a blank line when the other items are.

A list of values given for a key that holds a list (``topics``, ``subscribers``, a
newsletter's ``feeds``) is edited item by item, not replaced: items that stay keep their
place, quoting and comment, those that go are removed with the comment on their own line,
new ones are added where the new list puts them, and a block list stays block, a flow list
flow.  A full-line comment between items stays where it is.

A newsletter names its feeds by URL exactly as listed under ``feeds:``: changing a feed's
URL changes those references too (``updated_references`` says where), and removing a feed
a newsletter names is refused (``FeedInUseError``): taking it out of the newsletter would
change what it sends, and an empty ``feeds:`` means every feed.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import hashlib
import io
import itertools
import os
import re
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq, merge_attrib
from ruamel.yaml.error import CommentMark, MarkedYAMLError
from ruamel.yaml.events import AliasEvent, ScalarEvent
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, ScalarString, SingleQuotedScalarString
from ruamel.yaml.tokens import CommentToken

from aggregator.config import (
    FeedConfig,
    LoadedConfig,
    NewsletterConfig,
    config_read_problem,
    feed_identity,
    load_config_text,
    unknown_key_hint,
)
from aggregator.errors import AggregatorError, ConfigError, ConfigProblem

try:  # POSIX only; elsewhere the hash check alone guards against lost updates
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

# Keys a person may change on a feed or a newsletter, and how a text value is read.
FEED_KEYS = ("url", "title", "topics", "interval", "priority", "enabled")
NEWSLETTER_LIST_KEYS = frozenset({"topics", "feeds", "subscribers"})
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})
_WIDTH = 4096  # never fold a long URL or title onto two lines


class EditError(AggregatorError):
    """An edit of feeds.yaml was refused; the file was not changed."""


class ConflictError(EditError):
    """The file changed on disk since it was read: saving would lose someone else's edit."""


class NotFoundError(EditError):
    """No feed or newsletter matches what was asked for."""


class DuplicateError(EditError):
    """The feed or newsletter is already in the file."""


class NotReplaceableError(EditError):
    """feeds.yaml is read-only for us, or has other hard links: replacing it is refused."""


class UnreadableError(EditError):
    """feeds.yaml cannot be read (missing, a folder, not readable for us, not UTF-8);
    ``problem`` says so in the words every command uses (``config.config_read_problem``)."""

    def __init__(self, problem: ConfigProblem) -> None:
        self.problem = problem
        super().__init__(str(problem))


class FeedInUseError(EditError):
    """The feed to remove is named in a newsletter's ``feeds:``; ``references`` says where."""

    def __init__(self, message: str, references: Sequence[FeedReference]) -> None:
        self.references = tuple(references)
        super().__init__(message)


@dataclasses.dataclass(frozen=True)
class FeedReference:
    """A newsletter's ``feeds:`` naming a feed: which newsletter, and ``feeds.yaml:LINE``."""

    newsletter: str
    where: str
    only: bool = False  # the feed is all the list names: without it the newsletter gets every feed

    def __str__(self) -> str:
        return f"newsletter {self.newsletter!r} ({self.where})"


class InvalidEditError(EditError):
    """The edit would make feeds.yaml invalid; ``problems`` says why (lines are of the edited text)."""

    def __init__(self, path: Path, problems: Sequence[ConfigProblem]) -> None:
        self.problems = tuple(problems)
        reasons = "; ".join(
            f"{p.location}: {p.message}" + (f" ({p.hint})" if p.hint else "") if p.location else p.message
            for p in self.problems
        )
        super().__init__(f"not saved: {path.name} would be invalid: {reasons}")


def file_version(data: bytes) -> str:
    """What identifies one state of the file: the SHA-256 of its bytes (mtime can lie)."""
    return hashlib.sha256(data).hexdigest()


def feed_key(url: str, base_dir: Path) -> str:
    """Two feed URLs are the same feed when their keys are equal (canonical http(s) URL or file).

    Raises ``EditError`` for text that is no URL at all (``http://[x``: urlsplit refuses it).
    """
    try:
        return feed_identity(url, base_dir)
    except ValueError as exc:
        raise EditError(f"not a valid feed URL: {url!r}: {exc}") from exc


class ConfigDocument:
    """feeds.yaml as read from disk, editable in memory, saved atomically with ``save()``."""

    def __init__(self, path: Path, raw: bytes) -> None:
        self.path = path
        self.version = file_version(raw)
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise UnreadableError(config_read_problem(path, exc)) from exc
        self._bom = text.startswith("\ufeff")
        text = text.removeprefix("\ufeff")
        # The line end most lines have: one line pasted from Windows must not turn them all to CRLF.
        self._crlf = text.count("\r\n") * 2 > text.count("\n")
        text = text.replace("\r\n", "\n")
        self.original_text = text
        self.notes: list[str] = []  # what the editor had to change besides the edit, for the user
        # The newsletters' references a change of a feed's URL changed too, for the user.
        self.updated_references: list[FeedReference] = []
        self._yaml = _round_trip_yaml(text)
        data, read = self._load(text)
        self._read_lines = read.splitlines()  # the text ruamel's lines and columns are of
        self._head, self._foot = _document_frame(read)  # as read: with its tabs made spaces
        if not isinstance(data, CommentedMap):
            raise EditError(f"cannot edit {path}: expected a mapping with a 'feeds:' list")
        _drop_head_comments(data, self._head.count("\n"))
        self._data = data

    def _load(self, text: str) -> tuple[Any, str]:
        """The round-trip tree of ``text`` and the text it was read from (``text`` with the tabs
        the editor cannot read made spaces); ``EditError`` naming the line when it cannot be read."""
        try:
            return self._yaml.load(text), text
        except MarkedYAMLError as exc:
            readable, values = _safe_load(text)
            fixes = _unreadable_tabs(text) if readable else []
            if not fixes:
                raise EditError(_unreadable_message(self.path, text, exc, [], readable=readable)) from exc
            # The aggregator's loader accepts these tabs, ruamel's round-trip scanner does not:
            # read them as spaces.  Only the blanks around a value are touched, each as ruamel
            # writes it anyway (so no line changes more than its tabs), and only if the values
            # read stay the same.
            spaced = _with_tabs_fixed(text, fixes)
            try:
                data = self._yaml.load(spaced)
            except MarkedYAMLError as still:  # another tab, inside a value: say where it is
                raise EditError(_unreadable_message(self.path, text, still, fixes, readable=True)) from exc
            if _safe_load(spaced) != (True, values):  # pragma: no cover -- blanks between tokens
                raise EditError(_unreadable_message(self.path, text, exc, [], readable=True)) from exc
            self.notes += _tab_notes(self.path.name, text, fixes)
            return data, spaced
        except RecursionError as exc:
            raise EditError(f"cannot edit {self.path}: nested too deeply (aggregator config check)") from exc

    @classmethod
    def read(cls, path: Path) -> ConfigDocument:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            raise UnreadableError(config_read_problem(path, exc)) from exc
        return cls(path, raw)

    # -- reading ----------------------------------------------------------------------------

    @property
    def base_dir(self) -> Path:
        return self.path.parent

    def text(self) -> str:
        """The document as it would be written (with LF line ends), document markers included."""
        buffer = io.StringIO()
        self._yaml.dump(self._data, buffer)
        body = buffer.getvalue()
        if self._head:  # ours, verbatim, instead of the "%YAML…\n---" ruamel may write itself
            body = _without_document_start(body)
        return self._head + body + self._foot

    def validate(self) -> LoadedConfig:
        """The edited document, validated; ``InvalidEditError`` if it is not a valid config."""
        return self._validated(self.text())

    def _validated(self, text: str) -> LoadedConfig:
        try:
            return load_config_text(text, self.path)
        except ConfigError as exc:
            raise InvalidEditError(self.path, exc.problems) from exc

    def feeds(self) -> list[FeedConfig]:
        return list(self.validate().config.feeds)

    def newsletters(self) -> list[NewsletterConfig]:
        return list(self.validate().config.newsletters)

    def find_feed(self, query: str) -> int:
        """The index of the feed whose URL (exactly or canonically) or title is ``query``."""
        items = self._items("feeds")
        query = query.strip()
        for index, item in enumerate(items):
            if _str(item.get("url")) == query:
                return index
        key = feed_key(query, self.base_dir)
        for index, item in enumerate(items):
            url = _str(item.get("url"))
            if url and feed_key(url, self.base_dir) == key:
                return index
        titled = [i for i, item in enumerate(items) if _str(item.get("title")).casefold() == query.casefold()]
        if len(titled) == 1:
            return titled[0]
        if titled:
            urls = ", ".join(_str(items[i].get("url")) for i in titled)
            raise NotFoundError(f"{self.path.name}: several feeds are titled {query!r}: {urls}; give the URL")
        raise NotFoundError(f"{self.path.name}: no feed with the URL or title {query!r}")

    def duplicate_of(self, url: str) -> str | None:
        """The URL as configured of a feed that is the same as ``url``, if any."""
        key = feed_key(url, self.base_dir)
        for item in self._items("feeds"):
            existing = _str(item.get("url"))
            if existing and feed_key(existing, self.base_dir) == key:
                return existing
        return None

    def entries(self, key: str) -> list[dict[str, object]]:
        """The items under ``feeds`` or ``newsletters`` as written (plain values, for forms)."""
        return [_plain(item) for item in self._items(key)]

    def find_newsletter(self, name: str) -> int:
        for index, item in enumerate(self._items("newsletters")):
            if _str(item.get("name")) == name.strip():
                return index
        raise NotFoundError(f"{self.path.name}: no newsletter named {name!r}")

    def line_of_feed(self, index: int) -> int:
        """The 1-based line of the feed at ``index`` in the text as it would be written."""
        reread = _round_trip_yaml("").load(self.text())
        return int(reread["feeds"].lc.item(index)[0]) + 1

    # -- feeds ------------------------------------------------------------------------------

    def add_feed(
        self,
        url: str,
        *,
        title: str | None = None,
        topics: Sequence[str] = (),
        interval: str | None = None,
        priority: int | None = None,
        enabled: bool | None = None,
    ) -> int:
        """Append a feed; ``DuplicateError`` when the same feed (canonical URL) is listed."""
        url = url.strip()
        existing = self.duplicate_of(url)
        if existing is not None:
            raise DuplicateError(f"{self.path.name}: already subscribed: {existing}")
        item = _feed_item(url, title, topics)
        if interval:
            item["interval"] = interval.strip()
        if priority:
            item["priority"] = priority
        if enabled is False:
            item["enabled"] = False
        return _append_item(self._data, "feeds", item)

    def add_feeds(
        self, feeds: Iterable[tuple[str, str | None, Sequence[str]]]
    ) -> tuple[list[str], list[str]]:
        """Append each ``(url, title, topics)`` not listed yet (same canonical URL, here or
        earlier in ``feeds``); return the URLs added and those already present.

        One pass over what is listed, not one per feed: an OPML file of 4,000 feeds took
        two minutes when each was added with ``add_feed``.
        """
        listed: dict[str, str] = {}
        for item in self._items("feeds"):
            url = _str(item.get("url"))
            if url:
                listed.setdefault(feed_key(url, self.base_dir), url)
        seq = self._data.get("feeds")
        separated = isinstance(seq, CommentedSeq) and _blank_separated(seq)
        added: list[str] = []
        present: list[str] = []
        for url, title, topics in feeds:
            key = feed_key(url.strip(), self.base_dir)
            if key in listed:
                present.append(url)
                continue
            _append_item(self._data, "feeds", _feed_item(url.strip(), title, topics), separated=separated)
            listed[key] = url.strip()
            added.append(url)
        return added, present

    def remove_feed(self, query: str) -> str:
        """Remove the feed matching ``query`` (URL or title); return its URL as configured.

        ``FeedInUseError`` when a newsletter names it under ``feeds:``: the person decides
        what that newsletter sends instead (an empty list would mean every feed).
        """
        index = self.find_feed(query)
        url = _str(self._items("feeds")[index].get("url"))
        references = self.feed_references(url)
        if references:
            raise FeedInUseError(_in_use_message(self.path.name, url.strip(), references), references)
        _remove_item(self._data, "feeds", index)
        return url

    def feed_references(self, url: str) -> list[FeedReference]:
        """Where newsletters name the feed ``url`` under ``feeds:`` (as the config matches
        them: the URL exactly as listed, without the blanks around it)."""
        wanted = url.strip()
        return [
            FeedReference(name, self._where_in(seq, index), only=all(value == wanted for value in seq))
            for name, seq, index in self._references_to(wanted)
        ]

    def _references_to(self, url: str) -> list[tuple[str, CommentedSeq, int]]:
        """(newsletter, its ``feeds:`` list, index) of each item that is ``url``.  A list two
        newsletters share (``feeds: *mine``, or through ``<<:``) is listed for each."""
        found = []
        for letter in self._items("newsletters"):
            seq = letter.get("feeds")
            if isinstance(seq, CommentedSeq):
                name = _str(letter.get("name"))
                found += [
                    (name, seq, i) for i, value in enumerate(seq) if isinstance(value, str) and value == url
                ]
        return found

    def _rename_references(self, old: str, new: str) -> None:
        """Make every newsletter reference to the feed ``old`` one to ``new``, in its style."""
        for name, seq, index in self._references_to(old):
            if seq[index] == old:  # else done already: a list the newsletters share
                self._replace_scalar(seq, index, new)
            self.updated_references.append(FeedReference(name, self._where_in(seq, index)))

    def _replace_scalar(self, seq: CommentedSeq, index: int, value: str) -> None:
        """``seq[index] = value`` quoted as it was (ruamel keeps a quoted string's quotes),
        quoted where a plain one would not read back in ``[...]``, the comment after it kept
        clear of the longer text."""
        old = seq[index]
        flow = bool(seq.fa.flow_style())
        seq[index] = _flow_safe(value) if flow and not isinstance(old, ScalarString) else value
        if flow:  # a comment after a flow list follows its "]", on the key's line
            token = seq.ca.comment[0] if seq.ca.comment else None
        else:
            entry = seq.ca.items.get(index)
            token = entry[0] if entry else None
        self._keep_comment_clear(
            token, _item_line(seq, index), _written_length(seq[index]) - _written_length(old)
        )

    def _keep_comment_clear(self, token: Any, line: int | None, grown: int) -> None:
        """After the text before the comment ``token`` on ``line`` (0-based, as read) grew by
        ``grown`` characters: a comment still two spaces (or its old gap, if less) clear of it
        stays in its column (comments aligned one under another stay aligned); one that is
        not keeps the gap it had.  Without this, ruamel writes it one space after the text."""
        if token is None or grown <= 0 or line is None or line >= len(self._read_lines):
            return
        if not str(token.value).startswith("#") or getattr(token.start_mark, "line", line) != line:
            return  # no comment on the line itself, or one on another line (a multi-line flow list)
        column = int(token.column)
        end = len(self._read_lines[line][:column].rstrip())
        gap = column - end
        if end + grown + min(gap, 2) > column:
            token.column = end + grown + gap

    def _where_in(self, seq: CommentedSeq, index: int) -> str:
        """``feeds.yaml:LINE`` of a list's item (the line as read), else the file's name."""
        line = _item_line(seq, index)
        return f"{self.path.name}:{line + 1}" if line is not None else self.path.name

    def set_feed(self, query: str, changes: Mapping[str, object]) -> int:
        """Change keys of one feed; a value of ``None`` removes the key (back to its default).

        Refused when other feeds take the key from this one through ``<<: *anchor``: the
        change would reach them too, unannounced.
        """
        index = self.find_feed(query)
        items = self._items("feeds")
        item = items[index]
        old_url = _str(item.get("url")).strip()
        for key, value in changes.items():
            if key not in FEED_KEYS:
                raise EditError(f"cannot set {key!r} on a feed: {unknown_key_hint(key, FEED_KEYS)}")
            if key == "url" and isinstance(value, str):
                other = self.duplicate_of(value)
                if other is not None and other != _str(item.get("url")):
                    raise DuplicateError(f"{self.path.name}: already subscribed: {other}")
            takers = [_str(other.get("url")) for other in _merging(items, item, key)]
            if takers:
                raise EditError(_merge_spread_message(self._where(item), item, key, "feeds", takers))
            before = item.get(key)
            _set_key(item, key, value, where=self._where(item))
            if key == "url" and isinstance(value, str):
                entry = item.ca.items.get("url")
                line = item.lc.key("url")[0] if item.lc.data and "url" in item.lc.data else None
                grown = _written_length(item.get("url")) - _written_length(before)
                self._keep_comment_clear(entry[2] if entry and len(entry) > 2 else None, line, grown)
        new_url = _str(item.get("url")).strip()
        if old_url and new_url and new_url != old_url:
            # Newsletters name feeds by URL: left as they were, they would name no feed.
            self._rename_references(old_url, new_url)
        return index

    # -- newsletters --------------------------------------------------------------------------

    def add_newsletter(self, fields: Mapping[str, object]) -> int:
        name = _str(fields.get("name")).strip()
        if any(_str(item.get("name")) == name for item in self._items("newsletters")):
            raise DuplicateError(f"{self.path.name}: a newsletter named {name!r} already exists")
        item = CommentedMap()
        for key, value in fields.items():
            if value not in (None, "", ()):
                item[key] = _yaml_value(value)
        return _append_item(self._data, "newsletters", item)

    def remove_newsletter(self, name: str) -> None:
        _remove_item(self._data, "newsletters", self.find_newsletter(name))

    def set_newsletter(self, name: str, changes: Mapping[str, object]) -> int:
        index = self.find_newsletter(name)
        items = self._items("newsletters")
        item = items[index]
        for key, value in changes.items():
            if key not in NewsletterConfig.model_fields:
                hint = unknown_key_hint(key, list(NewsletterConfig.model_fields))
                raise EditError(f"cannot set {key!r} on a newsletter: {hint}")
            taken = {_str(other.get("name")) for other in items}
            if key == "name" and value != name and value in taken:
                raise DuplicateError(f"{self.path.name}: a newsletter named {value!r} already exists")
            takers = [_str(other.get("name")) for other in _merging(items, item, key)]
            if takers:
                raise EditError(_merge_spread_message(self._where(item), item, key, "newsletters", takers))
            _set_key(item, key, value, where=self._where(item))
        return index

    # -- writing ------------------------------------------------------------------------------

    def save(self) -> str:
        """Validate, then write atomically unless the file changed on disk; return the new version."""
        text = self.text()  # once: the text validated is the one written
        self._validated(text)
        if self._crlf:
            text = text.replace("\n", "\r\n")
        if self._bom:
            text = "\ufeff" + text
        data = text.encode("utf-8")
        write_atomically(self.path, data, expected_version=self.version)
        self.version = file_version(data)
        return self.version

    def _where(self, item: CommentedMap) -> str:
        """``feeds.yaml:LINE`` of a list item, for messages (the line as read)."""
        line = item.lc.line  # None for an item added since the file was read
        return f"{self.path.name}:{line + 1}" if line is not None else self.path.name

    def _items(self, key: str) -> list[CommentedMap]:
        value = self._data.get(key)
        if not isinstance(value, CommentedSeq):
            return []
        return [item if isinstance(item, CommentedMap) else CommentedMap() for item in value]


def write_atomically(path: Path, data: bytes, *, expected_version: str | None) -> None:
    """Replace ``path``'s content with ``data``: temporary file, fsync, rename, fsync the folder.

    With ``expected_version``, refuse (``ConflictError``) unless the file on disk still has
    that version.  A symbolic link is followed: its target is replaced, the link is kept.
    The new file gets the old one's mode, owner and group (the owner only when we may set
    it: as root, or when it is us).  ``NotReplaceableError`` for a file that is read-only for
    us or has other hard links: the rename would go through, but against what they mean.
    """
    target = path.resolve()
    with _locked(target):
        if expected_version is not None:
            try:
                current = file_version(target.read_bytes())
            except FileNotFoundError:
                current = "missing"
            if current != expected_version:
                raise ConflictError(
                    f"not saved: {path} changed on disk since it was read "
                    "(edited by hand or by another tool); read it again and redo the change"
                )
        try:
            old: os.stat_result | None = target.stat()
        except FileNotFoundError:
            old = None
        if old is not None:
            _check_replaceable(path, target, old)
        try:
            fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
        except OSError as exc:
            raise _not_written(path, exc) from exc
        tmp = Path(tmp_name)
        try:
            with os.fdopen(fd, "wb") as file:
                file.write(data)
                file.flush()
                os.fsync(file.fileno())
            _copy_owner(tmp, old)  # before the mode: chown may clear set-id bits
            os.chmod(tmp, stat.S_IMODE(old.st_mode) if old is not None else 0o644)
            os.replace(tmp, target)
        except OSError as exc:  # a full disk, a folder made read-only
            tmp.unlink(missing_ok=True)
            raise _not_written(path, exc) from exc
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(target.parent)


def _check_replaceable(path: Path, target: Path, old: os.stat_result) -> None:
    """Refuse (``NotReplaceableError``) to replace a file that is read-only for us or has other
    hard links: a rename ignores the first (the folder is what is written) and breaks the second."""
    if not os.access(target, os.W_OK):
        raise NotReplaceableError(
            f"not saved: {path} is read-only: make it writable (chmod u+w {path}) and run the "
            "command again, or edit it by hand; the file is unchanged"
        )
    if old.st_nlink > 1:
        raise NotReplaceableError(
            f"not saved: {path} has {old.st_nlink} hard links: saving writes a new file in its place, "
            f"and the other {old.st_nlink - 1} name(s) would keep the old text; edit it by hand, or "
            "make the other names symbolic links; the file is unchanged"
        )


def _copy_owner(tmp: Path, old: os.stat_result | None) -> None:
    # The file keeps its owner and group (a service account's file edited with sudo stays its).
    # Only root may give a file away; anyone else keeps what the temporary file got.
    if old is not None:
        with contextlib.suppress(PermissionError):
            os.chown(tmp, old.st_uid, old.st_gid)


def _not_written(path: Path, exc: OSError) -> EditError:
    return EditError(f"not saved: cannot write next to {path}: {exc.strerror or exc}; the file is unchanged")


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on the file being replaced (ours are the only writers that honour it)."""
    if fcntl is None or not path.exists():
        yield
        return
    with path.open("rb") as handle:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def _fsync_dir(folder: Path) -> None:
    # The rename is durable only once the folder's entry is on disk.
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# -- parsing values a person typed -----------------------------------------------------------


def parse_assignment(text: str) -> tuple[str, object]:
    """``"interval=30m"`` → ``("interval", "30m")``; ``topics=a,b`` → a list; ``title=`` → None (unset)."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise EditError(f"expected KEY=VALUE, got {text!r} (e.g. interval=30m)")
    return key, parse_value(key, value)


def parse_value(key: str, value: str) -> object:
    """A value typed as text, read as the type the key wants; an empty value means "unset"."""
    value = value.strip()
    if value == "":
        return None
    if key in ("topics", *NEWSLETTER_LIST_KEYS):
        return tuple(part.strip() for part in re.split(r"[,\n]", value) if part.strip())
    if key in ("priority", "max_stories"):
        try:
            return int(value)
        except ValueError as exc:
            raise EditError(f"{key}: expected a whole number, got {value!r}") from exc
    if key == "enabled":
        if value.lower() in _TRUE:
            return True
        if value.lower() in _FALSE:
            return False
        raise EditError(f"enabled: expected true or false, got {value!r}")
    return value


# -- ruamel tree surgery ---------------------------------------------------------------------


def _round_trip_yaml(text: str) -> YAML:
    """A round-trip YAML whose indentation matches the file's, so that unchanged parts stay byte-equal."""
    yaml = YAML(typ="rt")
    yaml.preserve_quotes = True
    yaml.width = _WIDTH
    mapping, sequence, offset = _guess_indent(text)
    yaml.indent(mapping=mapping, sequence=sequence, offset=offset)
    return yaml


_KEY_ALONE = re.compile(r"^(\s*)[^\s#-][^:]*:\s*(#.*)?$")  # "  polling:" opening a block
_KEY = re.compile(r"^(\s*)[^\s#-][^:]*:")
_DASH = re.compile(r"^(\s*)-(\s+)\S")


def _guess_indent(text: str) -> tuple[int, int, int]:
    """(mapping indent, sequence indent, dash offset) as used in the text; the project's style by default."""
    mapping: int | None = None
    sequence: int | None = None
    offset: int | None = None
    lines = [line for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    for before, line in itertools.pairwise(lines):
        parent = _KEY_ALONE.match(before)
        if not parent:
            continue
        base = len(parent.group(1))
        dash = _DASH.match(line)
        if dash and sequence is None and len(dash.group(1)) >= base:
            offset = len(dash.group(1)) - base
            sequence = offset + 1 + len(dash.group(2))
        key = _KEY.match(line)
        if key and mapping is None and len(key.group(1)) > base:
            mapping = len(key.group(1)) - base
    return mapping or 2, sequence or 4, 2 if offset is None else offset


def _plain(node: object) -> Any:
    if isinstance(node, Mapping):
        return {str(key): _plain(value) for key, value in node.items()}
    if isinstance(node, list):
        return [_plain(value) for value in node]
    return node


def _str(value: object) -> str:
    return value if isinstance(value, str) else ("" if value is None else str(value))


def _flow_list(values: Sequence[str]) -> CommentedSeq:
    seq = CommentedSeq(_flow_safe(v) for v in values)
    seq.fa.set_flow_style()
    return seq


def _flow_safe(value: str) -> str:
    """``value`` quoted where ruamel would write it plain inside ``[...]`` and it would read
    back as something else: ``[?Misc]`` is a mapping, ``[a:b]`` and ``[: )]`` no YAML at all."""
    if value[:1] in ("?", ":") or ":" in value:
        quoted: str = SingleQuotedScalarString(value)
        return quoted
    return value


def _yaml_value(value: object) -> object:
    if isinstance(value, tuple | list):
        return _flow_list([str(v) for v in value])
    return value


def _is_block(node: object) -> bool:
    return isinstance(node, CommentedMap | CommentedSeq) and not node.fa.flow_style() and len(node) > 0


def _tail_slot(node: object) -> tuple[dict[Any, list[Any]], Any, int] | None:
    """Where ruamel keeps the comment that follows ``node``'s last line: (ca.items, key, index)."""
    if isinstance(node, CommentedMap) and len(node):
        key = list(node.keys())[-1]
        if _is_block(node[key]):
            return _tail_slot(node[key])
        return node.ca.items, key, 2
    if isinstance(node, CommentedSeq) and len(node):
        index = len(node) - 1
        if _is_block(node[index]):
            return _tail_slot(node[index])
        return node.ca.items, index, 0
    return None


def _get_tail(node: object) -> str:
    slot = _tail_slot(node)
    if slot is None:
        return ""
    items, key, index = slot
    entry = items.get(key)
    token = entry[index] if entry and len(entry) > index else None
    return str(token.value) if token is not None else ""


def _set_tail(node: object, text: str) -> None:
    slot = _tail_slot(node)
    if slot is None:
        return
    items, key, index = slot
    entry = items.setdefault(key, [None, None, None, None])
    while len(entry) <= index:
        entry.append(None)
    token = entry[index]
    if text in ("", "\n"):
        entry[index] = None
    elif token is not None:
        token.value = text
    else:
        entry[index] = CommentToken(text, CommentMark(0), None)


def _split_tail(text: str) -> tuple[str, str]:
    """A tail comment → (the rest of the item's own last line, the lines below it)."""
    if not text:
        return "\n", ""
    eol, _, below = text.partition("\n")
    return eol + "\n", below


def _split_below(below: str) -> tuple[str, str]:
    """Lines between two items → (what stays: up to the last blank line, what belongs to the next item)."""
    lines = below.splitlines(keepends=True)
    last_blank = max((i for i, line in enumerate(lines) if not line.strip()), default=-1)
    return "".join(lines[: last_blank + 1]), "".join(lines[last_blank + 1 :])


def _join_below(stays: str, below: str) -> str:
    """Lines kept above a removed item + the lines that were below it, without doubling blank lines."""
    if not stays.strip():
        return below if below.strip() or not stays else stays
    return stays + below.lstrip("\n")


def _blank_separated(seq: CommentedSeq) -> bool:
    """Whether the items of ``seq`` are separated by blank lines (then a new one is, too)."""
    gaps = [_split_tail(_get_tail(item))[1] for item in list(seq)[:-1]]
    return bool(gaps) and all(gap.startswith("\n") for gap in gaps)


def _list_under(data: CommentedMap, key: str) -> CommentedSeq:
    value = data.get(key)
    if isinstance(value, CommentedSeq):
        return value
    if value is not None:
        raise EditError(f"cannot edit '{key}:': it is not a list")
    seq = CommentedSeq()
    data[key] = seq
    return seq


def _feed_item(url: str, title: str | None, topics: Sequence[str]) -> CommentedMap:
    item = CommentedMap()
    item["url"] = url
    if title:
        item["title"] = title.strip()
    if topics:
        item["topics"] = _flow_list(topics)
    return item


def _append_item(data: CommentedMap, key: str, item: CommentedMap, *, separated: bool | None = None) -> int:
    """Append ``item`` to the list under ``key``; return its index.  ``separated``: whether
    the items are separated by blank lines, when the caller knows (else it is worked out)."""
    seq = _list_under(data, key)
    if not len(seq):
        seq.fa.set_block_style()
        # A flow "feeds: []" carries the comment after it on the parent's key: keep the end of
        # that line there, and let the new (last) item carry the lines below.
        entry = data.ca.items.get(key)
        token = entry[2] if entry and len(entry) > 2 else None
        below = ""
        if token is not None:
            eol, below = _split_tail(str(token.value))
            # The comment was placed after "[]": bring it back to two spaces after the key.
            column = data.lc.key(key)[1] + len(key) + 3 if eol.strip() else 0
            entry[2] = CommentToken(eol, CommentMark(column), None) if eol.strip() else None
        seq.append(item)
        _set_tail(item, "\n" + below if below else "")
        return 0
    if separated is None:
        separated = _blank_separated(seq)
    last = seq[-1]
    eol, below = _split_tail(_get_tail(last))
    _set_tail(last, eol + ("\n" if separated else ""))
    seq.append(item)
    _set_tail(item, "\n" + below if below else "")
    return len(seq) - 1


def _leading_tokens(data: CommentedMap, key: str) -> list[Any] | None:
    entry = data.ca.items.get(key)
    if entry and len(entry) > 3 and entry[3]:
        return list(entry[3])
    return None


def _set_leading(data: CommentedMap, key: str, seq: CommentedSeq, text: str) -> None:
    """Make ``text`` the lines between ``key:`` and the first item of ``seq``.

    ruamel keeps them in two places, as its loader does: the parent's entry for the key and
    the sequence's own comment slot.  Without the second, the dumper writes the item on the
    key's line (``feeds:   -``, no YAML) and marks the comment written, so that a second
    dump differs again.  Each place gets its own list: ruamel edits them in place.
    """
    tokens = [CommentToken(text, CommentMark(0), None)] if text else None
    entry = data.ca.items.setdefault(key, [None, None, None, None])
    while len(entry) < 4:
        entry.append(None)
    entry[3] = tokens
    if seq.ca.comment is None:
        seq.ca.comment = [None, None]
    seq.ca.comment[1] = list(tokens) if tokens else None


def _indented(token: Any) -> str:
    """A leading comment token's text with its indentation (ruamel stores the column apart)."""
    value = str(token.value)
    column = token.column if value.startswith("#") else 0
    return " " * column + value


def _remove_item(data: CommentedMap, key: str, index: int) -> None:
    """Remove item ``index`` of the list under ``key`` with the comment directly above it."""
    seq = _list_under(data, key)
    _, below = _split_tail(_get_tail(seq[index]))
    if index > 0:
        previous = seq[index - 1]
        eol, gap = _split_tail(_get_tail(previous))
        stays, _owned = _split_below(gap)
        del seq[index]
        _set_tail(previous, eol + _join_below(stays, below))
        return
    leading = _leading_tokens(data, key)
    lead_stays = ""
    if leading:
        lead_stays, _owned = _split_below("".join(_indented(t) for t in leading))
    key_eol = _drop_owned_from_key_line(data, key)
    del seq[0]
    if len(seq):
        # The old first item's tail held the lines above the new first item.
        _set_leading(data, key, seq, lead_stays + below.lstrip("\n"))
        return
    # The list is now empty: "feeds: []", followed by whatever followed the removed item.
    seq.fa.set_flow_style()
    _set_leading(data, key, seq, "")
    if key_eol is not None:  # "feeds: []  # my feeds", then the lines that stay
        column = data.lc.key(key)[1] + len(key) + 6  # two spaces after "feeds: []"
        text = key_eol.value + _join_below(key_eol.below, below)
        data.ca.items[key][2] = CommentToken(text, CommentMark(column), None)
    elif lead_stays.strip() or below:
        entry = data.ca.items.setdefault(key, [None, None, None, None])
        entry[2] = CommentToken("\n" + _join_below(lead_stays, below), CommentMark(0), None)


@dataclasses.dataclass
class _KeyLine:
    value: str  # the comment on the key's line, with its line end
    below: str  # the lines below it that stay


def _drop_owned_from_key_line(data: CommentedMap, key: str) -> _KeyLine | None:
    """With a comment on ``key:``'s own line, ruamel keeps the lines below it, down to the first
    item, in the same token: take from it the comment directly above the first item (which goes
    with that item).  Returns what is left, or None when the key's line has no comment."""
    entry = data.ca.items.get(key)
    token = entry[2] if entry and len(entry) > 2 else None
    if token is None:
        return None
    eol, below = _split_tail(str(token.value))
    stays, _owned = _split_below(below)
    token.value = eol + stays
    return _KeyLine(eol, stays)


def _set_key(item: CommentedMap, key: str, value: object, *, where: str) -> None:
    """Set or (value None) remove ``key`` of a list item, keeping the comment that follows the item.

    A list (tuple) replacing the item's own list edits that list in place (``_edit_list``).
    A key the item takes from a ``<<:`` merge cannot be removed here: deleting it would leave
    the merged value in force while the edit reported success.  Setting one adds the item's
    own key, which YAML lets override the merge.
    """
    own = key in dict(item.non_merged_items())
    if value is None and key in item and not own:
        raise EditError(
            f"{where}: cannot remove {key!r}: its value comes from a '<<:' merge; "
            "change the merged mapping, or set a value here to override it"
        )
    if isinstance(value, tuple | list):
        # The merged list belongs to the mapping merged, and every item that merges it.
        if own and _edit_list(item, key, [str(v) for v in value]):
            return
        value = _yaml_value(value)
    tail = _get_tail(item)
    eol, below = _split_tail(tail)
    if key in item:
        last = list(item.keys())[-1] == key
        if value is None:
            if len(item) == 1:
                raise EditError(f"cannot remove {key!r}: it is the only key")
            del item[key]
            if last:
                own_eol, _ = _split_tail(_get_tail(item))
                _set_tail(item, own_eol + below)
            return
        item[key] = value
        if last and not _is_block(value):
            # A scalar replacing a block list: the comment moves back onto this key.
            _set_tail(item, eol + below if eol.strip() else ("\n" + below if below else ""))
        return
    if value is None:
        return
    _set_tail(item, eol)
    item[key] = value
    _set_tail(item, "\n" + below if below else "")


def _edit_list(parent: CommentedMap, key: str, values: Sequence[str]) -> bool:
    """Make the list of text values under ``parent[key]`` hold ``values``, in that order, by
    editing it rather than replacing it; False (nothing done) for what this cannot edit:
    no list there, an empty one (it is ``[]``), an empty ``values`` (written ``[]``), items
    that are not scalars, a list with an anchor (``&name``: others may use it too).

    Each old item, in the order read, is a value, the comment on its own line and the lines
    below it down to the next item (ruamel keeps both in one token: the item's tail).  An
    item that stays keeps its node (quoting, anchor) and own comment; one that goes takes
    its own comment along.  The lines below items stay where they were: the k-th item that
    stays, wherever the new order puts it, sits above the lines below the k-th of them as
    read, with those of the removed items after it.  A new item goes right after the item
    before it in ``values``, above the lines that followed that one (so that one added at the
    end goes above what follows the list, as ``_append_item`` does).
    """
    seq = parent.get(key)
    if not isinstance(seq, CommentedSeq) or not len(seq) or not values or _anchored(seq):
        return False
    if any(isinstance(node, CommentedMap | CommentedSeq) for node in seq):
        return False
    old = _list_items(seq)
    matched = _match_items([item.node for item in old], values)
    gaps, lead = _places(old, matched)
    new = _arranged(old, values, matched, gaps, flow=bool(seq.fa.flow_style()))
    if all(index is None for index in matched):
        # All replaced: what followed the list still follows it, the lines between the old
        # items go above the new ones.
        new[-1].below = old[-1].below
        lead = functools.reduce(_join_lines, (item.below for item in old[:-1]), "")
    _add_leading(parent, key, seq, lead)
    _rewrite_list(seq, new)
    return True


@dataclasses.dataclass
class _ListItem:
    """An item of a list being edited: its node; its comment slots when it has a comment on
    its own line (which goes where the item goes); the lines below it; its place as read."""

    node: Any
    entry: list[Any] | None
    below: str
    position: Any = None


def _list_items(seq: CommentedSeq) -> list[_ListItem]:
    items = []
    for index, node in enumerate(seq):
        entry = seq.ca.items.get(index)
        token = entry[0] if entry else None
        eol, below = _split_tail(str(token.value) if token is not None else "")
        position = seq.lc.data.get(index) if seq.lc.data else None
        items.append(_ListItem(node, entry if eol.strip() else None, below, position))
    return items


def _places(old: Sequence[_ListItem], matched: Sequence[int | None]) -> tuple[list[str], str]:
    """(the lines below each place of an item that stays, in order, with those of the removed
    items after it; the lines below the removed items before the first that stays)."""
    stays = {index for index in matched if index is not None}
    gaps: list[str] = []
    lead = ""
    for index, item in enumerate(old):
        if index in stays:
            gaps.append(item.below)
        elif gaps:
            gaps[-1] = _join_lines(gaps[-1], item.below)
        else:
            lead = _join_lines(lead, item.below)
    return gaps, lead


def _arranged(
    old: Sequence[_ListItem],
    values: Sequence[str],
    matched: Sequence[int | None],
    gaps: Sequence[str],
    *,
    flow: bool,
) -> list[_ListItem]:
    """The items of the new list, in its order (see ``_edit_list`` for where lines go)."""
    places = iter(gaps)  # the k-th item that stays takes the lines below the k-th place
    new: list[_ListItem] = []
    for value, index in zip(values, matched, strict=True):
        if index is not None:
            kept = old[index]
            new.append(_ListItem(kept.node, kept.entry, next(places), kept.position))
            continue
        # Right after the item before it, which hands down the lines below it.
        below = new[-1].below if new else ""
        if new:
            new[-1].below = ""
        new.append(_ListItem(_flow_safe(value) if flow else value, None, below))
    return new


def _rewrite_list(seq: CommentedSeq, items: Sequence[_ListItem]) -> None:
    """Put ``items`` in ``seq``, each with its comment and the lines below it."""
    del seq[:]
    seq.ca.items.clear()
    seq.extend(item.node for item in items)
    for index, item in enumerate(items):
        if item.entry is not None:
            token = item.entry[0]
            token.value = _split_tail(str(token.value))[0] + item.below
            seq.ca.items[index] = item.entry
        elif item.below:
            seq.ca.items[index] = [CommentToken("\n" + item.below, CommentMark(0), None), None, None, None]
    if seq.lc.data is not None:  # the lines read, for messages about the items that stayed
        seq.lc.data = {i: item.position for i, item in enumerate(items) if item.position is not None}


def _anchored(node: CommentedSeq) -> bool:
    """Whether ``node`` has an anchor (``&name``) of its own: an alias may use it elsewhere."""
    anchor = node.yaml_anchor()  # an Anchor without a value once the tree has been dumped
    return anchor is not None and anchor.value is not None


def _match_items(old: Sequence[object], values: Sequence[str]) -> list[int | None]:
    """For each of ``values``, the index of the old item it keeps (the first unused one of
    that text), or None for a new item."""
    unused = [index for index, node in enumerate(old) if isinstance(node, str)]
    matched: list[int | None] = []
    for value in values:
        index = next((i for i in unused if old[i] == value), None)
        if index is not None:
            unused.remove(index)
        matched.append(index)
    return matched


def _join_lines(above: str, below: str) -> str:
    """Two runs of whole lines, one after the other, without doubling a blank line between."""
    last, first = above.splitlines()[-1:], below.splitlines()[:1]
    if last and first and not last[0].strip() and not first[0].strip():
        return above + below.partition("\n")[2]
    return above + below


def _add_leading(parent: CommentedMap, key: str, seq: CommentedSeq, text: str) -> None:
    """Add ``text`` (whole lines) below the lines between ``key:`` and the first item of ``seq``;
    its blank lines at the start are dropped (there was no gap above the first item)."""
    text = text.lstrip("\n")
    if not text:
        return
    entry = parent.ca.items.get(key)
    key_line = entry[2] if entry and len(entry) > 2 else None
    if key_line is not None:  # ruamel keeps those lines with the comment on the key's line
        key_line.value = _join_lines(str(key_line.value), text)
        return
    leading = _leading_tokens(parent, key)
    above = "".join(_indented(token) for token in leading) if leading else ""
    _set_leading(parent, key, seq, _join_lines(above, text))


def _item_line(seq: CommentedSeq, index: int) -> int | None:
    """The 0-based line ``seq[index]`` was read from; None for an item added since."""
    position = seq.lc.data.get(index) if seq.lc.data else None
    return int(position[0]) if position else None


def _written_length(value: object) -> int:
    """How many characters a scalar takes on its line (quotes included, escapes not counted)."""
    quoted = isinstance(value, SingleQuotedScalarString | DoubleQuotedScalarString)
    return len(_str(value)) + (2 if quoted else 0)


def _in_use_message(name: str, url: str, references: Sequence[FeedReference]) -> str:
    """Why a feed newsletters name is not removed, where they name it, and what to do."""
    places = [f"{r.newsletter!r} ({r.where}{', its only feed' if r.only else ''})" for r in references]
    which = (
        f"newsletter {places[0]} lists it"
        if len(places) == 1
        else f"newsletters {', '.join(places[:-1])} and {places[-1]} list it"
    )
    message = (
        f"{name}: cannot remove {url}: {which} under 'feeds:'; take it out of "
        f"{'that list' if len(places) == 1 else 'those lists'} first, then remove the feed"
    )
    if any(r.only for r in references):
        message += (
            " (a newsletter with an empty 'feeds:' gets every feed: where it is the only one, "
            "list another feed there, or remove the newsletter)"
        )
    return message


# -- what ruamel does not keep ---------------------------------------------------------------

_DOC_START = re.compile(r"---(?:[ \t]+#.*)?[ \t]*")  # a "---" line, maybe with a comment
_DOC_END = re.compile(r"\.\.\.(?:[ \t]+#.*)?[ \t]*")
_PREAMBLE = re.compile(r"[ \t]*(?:#.*)?|%.*")  # blank, comment or directive (%YAML)


def _document_frame(text: str) -> tuple[str, str]:
    """(head, foot): the text up to and including an explicit ``---`` line, and from a ``...``
    line to the end; empty when the file has none.  ruamel drops both and what they frame."""
    lines = text.splitlines(keepends=True)
    head_lines = 0
    for number, line in enumerate(lines):
        if _DOC_START.fullmatch(line.rstrip("\n")):
            head_lines = number + 1
            break
        if not _PREAMBLE.fullmatch(line.rstrip("\n")):
            break
    foot_from = len(lines)
    for number in range(len(lines) - 1, head_lines - 1, -1):
        line = lines[number].rstrip("\n")
        if _DOC_END.fullmatch(line):
            foot_from = number
            break
        if line.strip() and not line.lstrip().startswith("#"):
            break
    return "".join(lines[:head_lines]), "".join(lines[foot_from:])


def _drop_head_comments(data: CommentedMap, head_lines: int) -> None:
    """Remove from the tree the comments read from the head (a comment on the ``---`` line
    becomes the document's first comment): the head is written back verbatim instead."""
    comment = data.ca.comment
    if not head_lines or not comment or len(comment) < 2 or not comment[1]:
        return
    kept = []
    for token in comment[1]:
        line = getattr(token.start_mark, "line", None)  # None for a token made here, not read
        if line is not None and line < head_lines:
            below = str(token.value).partition("\n")[2]  # blank lines after the "---" line
            if below:
                kept.append(CommentToken(below, CommentMark(0), None))
            continue
        kept.append(token)
    comment[1] = kept or None


def _without_document_start(body: str) -> str:
    """A dump without the directives and ``---`` ruamel wrote itself (a ``%YAML`` it read)."""
    if not body.startswith(("%", "---")):
        return body
    lines = body.splitlines(keepends=True)
    for number, line in enumerate(lines):
        if line.startswith("---"):
            return "".join(lines[number + 1 :])
    return body


@dataclasses.dataclass(frozen=True)
class _TabFix:
    """Blanks holding a tab at ``start:end`` of the text, and the spaces written instead."""

    start: int
    end: int
    spaces: str
    where: str  # for the note: "at the end of", "before the comment on", "after the ':' on"


_BLANKS_WITH_A_TAB = re.compile(r"[ \t]*\t[ \t]*")
_TAB_NOTES = {
    "at the end of": "is removed",
    "before the comment on": "is written as spaces",
    "after the ':' on": "is written as a space",
}


def _unreadable_tabs(text: str) -> list[_TabFix]:
    """The blanks with a tab that the aggregator reads and ruamel's round-trip scanner refuses:
    at the end of a line (they become nothing), before a comment (spaces up to the ``#``'s
    column, tab stops every 8) and after ``key:`` (one space): what ruamel writes there anyway.
    Never blanks inside a value (quoted, ``|`` or ``>`` block, plain) or a comment, nor an
    indentation, which both loaders refuse."""
    values = _value_spans(text)
    starts = [start for start, _ in values]
    fixes: list[_TabFix] = []
    # One pass forward, each character looked at once: a document written as one flow line
    # (JSON-style) has thousands of tabs on a line, and rescanning the line up to each of them
    # took 26 s for 8,000 items.  ``text[line_start:scanned]`` has been searched for a '#'.
    line_start = scanned = 0
    in_comment = False
    for match in _BLANKS_WITH_A_TAB.finditer(text):
        start, end = match.span()
        newline = text.rfind("\n", scanned, start)
        if newline >= 0:
            line_start, scanned, in_comment = newline + 1, newline + 1, False
        in_comment = in_comment or _opens_a_comment(text, scanned, start, values, starts)
        scanned = start
        if start == line_start or _inside(values, starts, start):
            continue  # an indentation, or inside a value
        if in_comment:
            continue  # inside a comment
        after = text[end : end + 1]
        if after in ("", "\n"):
            fixes.append(_TabFix(start, end, "", "at the end of"))
        elif after == "#":  # once a line at most: the rest of it is that comment
            before = text[line_start:start]
            width = len((before + match.group()).expandtabs(8)) - len(before.expandtabs(8))
            fixes.append(_TabFix(start, end, " " * max(width, 1), "before the comment on"))
        elif text[start - 1] == ":":
            fixes.append(_TabFix(start, end, " ", "after the ':' on"))
    return fixes


def _value_spans(text: str) -> list[tuple[int, int]]:
    """Where each value (scalar or alias, with its anchor and tag) is in ``text``, as the
    aggregator's loader reads it: (start, end) offsets, in order."""
    events = YAML(typ="safe").parse(text)
    return [(e.start_mark.index, e.end_mark.index) for e in events if isinstance(e, ScalarEvent | AliasEvent)]


def _opens_a_comment(
    text: str, begin: int, end: int, values: list[tuple[int, int]], starts: list[int]
) -> bool:
    """Whether ``text[begin:end]`` holds a '#' outside the ``values``: one that opens a comment."""
    at = text.find("#", begin, end)
    while at >= 0:
        if not _inside(values, starts, at):
            return True
        at = text.find("#", at + 1, end)
    return False


def _inside(values: list[tuple[int, int]], starts: list[int], position: int) -> bool:
    """Whether ``position`` is inside one of ``values`` (``starts``: their starts, for bisect)."""
    index = bisect.bisect_right(starts, position) - 1
    return index >= 0 and position < values[index][1]


def _with_tabs_fixed(text: str, fixes: Sequence[_TabFix]) -> str:
    parts: list[str] = []
    done = 0
    for fix in fixes:
        parts += [text[done : fix.start], fix.spaces]
        done = fix.end
    return "".join(parts) + text[done:]


def _tab_notes(name: str, text: str, fixes: Sequence[_TabFix]) -> list[str]:
    """What the editor changed besides the edit, for the user: one note per kind of place."""
    lines: dict[str, dict[int, None]] = {where: {} for where in _TAB_NOTES}
    line, counted = 1, 0
    for fix in fixes:  # in order: each line end is counted once
        line += text.count("\n", counted, fix.start)
        counted = fix.start
        lines[fix.where][line] = None
    notes = []
    for where, done in _TAB_NOTES.items():
        numbers = list(lines[where])
        if numbers:
            listed = ", ".join(map(str, numbers[:10])) + (
                f" and {len(numbers) - 10} more" if numbers[10:] else ""
            )
            notes.append(f"{name}: the tab {where} line(s) {listed} {done} (the editor cannot keep it)")
    return notes


def _unreadable_message(
    path: Path, text: str, exc: MarkedYAMLError, fixes: Sequence[_TabFix], *, readable: bool
) -> str:
    """Why the editor cannot read ``text``, at the line and column of ``text`` (``exc`` may be
    about the text with ``fixes`` made), and for a tab what to do."""
    mark = exc.problem_mark or exc.context_mark
    problem = str(exc.problem or exc.context or exc)
    if mark is None:
        return f"cannot edit {path}: not valid YAML: {problem}"
    shift = 0  # back from the fixed text to the text as read
    for fix in fixes:
        if fix.start + shift >= mark.index:
            break
        shift += len(fix.spaces) - (fix.end - fix.start)
    position = mark.index - shift
    line = text.count("\n", 0, position) + 1
    column = position - text.rfind("\n", 0, position)  # 1-based
    where = f"{path}:{line}:{column}"
    if text[position : position + 1] != "\t":
        return f"cannot edit {where}: not valid YAML: {problem}"
    why = (
        "a tab the editor cannot read there (the aggregator can)" if readable else "a tab YAML refuses there"
    )
    return f"cannot edit {where}: {why}; replace the tab on line {line} with a space"


def _safe_load(text: str) -> tuple[bool, Any]:
    """(whether the aggregator's loader reads ``text``, the values it reads)."""
    try:
        return True, YAML(typ="safe").load(text)
    except Exception:  # whatever it is: not readable
        return False, None


def _merges(node: CommentedMap) -> list[Any]:
    """The mappings ``node`` merges with ``<<:``, first (winning) first."""
    return [m for m in getattr(node, merge_attrib, None) or () if isinstance(m, CommentedMap)]


def _takes_from(node: CommentedMap, source: CommentedMap, key: str, depth: int = 0) -> bool | None:
    """Whether ``node`` takes ``key`` from ``source`` through ``<<:`` (or would, once ``source``
    has it): True, False (it has its own, or another merge gives it), None (no merge gives it)."""
    if node is source:
        return True
    if key in dict(node.non_merged_items()) or depth > 100:  # an anchor merging itself
        return False
    for merged in _merges(node):
        found = _takes_from(merged, source, key, depth + 1)
        if found is not None:
            return found
    return None


def _merging(items: Sequence[CommentedMap], item: CommentedMap, key: str) -> list[CommentedMap]:
    """The other list items whose ``key`` a change of ``item``'s would change (``<<: *item``)."""
    return [other for other in items if other is not item and _takes_from(other, item, key)]


def _merge_spread_message(where: str, item: CommentedMap, key: str, what: str, takers: list[str]) -> str:
    anchor = item.yaml_anchor().value if item.yaml_anchor() is not None else "its anchor"
    return (
        f"{where}: cannot set {key!r} here: {what} {', '.join(takers)} take it from this one through "
        f"'<<: *{anchor}' and would change too; set it on each of them instead, "
        f"or edit the anchor &{anchor} by hand"
    )
