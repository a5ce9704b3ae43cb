"""What is wrong with a path a stage failed to write: ``OutputError`` from a bare ``OSError``.

In: the stage, the path it wrote (or read, or removed) and the ``OSError``.  Out: an
``OutputError`` saying which part of the path is wrong (a file where a folder should be, a
folder where a file should be, no permission, a read-only file system, a full disk) and what
to do.  It looks at the path (``stat`` only, never a write): the ``OSError`` names a
temporary file or the target, whichever call failed, while a person needs the part to fix.
Kept apart from ``aggregator.errors``, whose types have no side effects.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

from aggregator.errors import OutputError

__all__ = ["output_error"]


def output_error(stage: str, path: Path, exc: OSError, *, doing: str = "write") -> OutputError:
    """``exc``, raised while a stage did ``doing`` to ``path``, as an ``OutputError`` that
    says what is wrong with the path and what to do.

    It looks at the path (never writes): ``exc`` names a temporary file, or the target,
    whichever call failed, while a person needs to know which part of the path is wrong.
    The caller raises it ``from exc``.
    """
    reason, remedy = _what_is_wrong(path, exc, doing)
    return OutputError(stage, path, reason, remedy, doing=doing, code=exc.errno)


def _what_is_wrong(path: Path, exc: OSError, doing: str) -> tuple[str, str]:
    """(why ``exc`` happened while doing ``doing`` to ``path``, what to do about it)."""
    why = exc.strerror or str(exc)
    if wrong := _wrong_kind(path, exc):
        return wrong
    if exc.errno in (errno.EACCES, errno.EPERM):
        able = "readable" if doing == "read" else "writable"
        if exc.filename == str(path) and path.exists():
            return f"{path.name} is not {able}: {why}", "fix its permissions"
        return f"{path.parent}/ is not {able}: {why}", "fix the folder's permissions"
    if exc.errno == errno.EROFS:
        return f"{path.parent}/ is on a read-only file system", "make it writable"
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        return f"the disk of {path.parent}/ is full: {why}", "free some space on it"
    return why, "fix that"


def _wrong_kind(path: Path, exc: OSError) -> tuple[str, str] | None:
    """When a file stands where a folder should be, or the other way round: (why, what to do)."""
    if exc.errno in (errno.ENOTDIR, errno.EEXIST, errno.ENOENT) and (blocker := _not_a_folder(path)):
        what = "a file" if blocker.is_file() else "something else"
        return f"{blocker} is {what}, not a folder", f"move {blocker.name} away"
    if exc.errno == errno.EISDIR or (exc.errno == errno.EEXIST and path.is_dir()):
        return f"{path} is a folder, not a file", f"move {path.name} away"
    return None


def _not_a_folder(path: Path) -> Path | None:
    """The first of ``path``'s folders (from the top) that is there but not a folder."""
    for folder in reversed(path.parents):
        if os.path.lexists(folder) and not folder.is_dir():
            return folder
    return None
